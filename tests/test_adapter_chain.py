"""Stage 1's LoRA then stage 2's LoRA, written as one adapter over the public base: exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import build_tiny_model


def _randomise(model, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "trainable_tokens" in name:
                param.add_(0.05 * torch.randn(param.shape, generator=gen))


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def test_two_adapters_chain_into_one_exact_adapter(tiny_model_dir, real_tokenizer, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from prorank.adapter_chain import chain_adapters
    from prorank.loading import load_model

    ids = torch.tensor([real_tokenizer("is the sky blue? answer 0 or 1")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    first = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    _randomise(first, 1)
    first.peft_config["default"].base_model_name_or_path = str(tiny_model_dir)
    first.save_pretrained(tmp_path / "first")
    merged = first.merge_and_unload()
    second = get_peft_model(merged, LoraConfig(r=2, lora_alpha=16, target_modules="all-linear",
                                               trainable_token_indices=[32, 33]))
    _randomise(second, 2)
    second.save_pretrained(tmp_path / "second")
    expected = _logits(second, ids)

    out = chain_adapters(tmp_path / "first", tmp_path / "second", tmp_path / "chained")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["lora_alpha"] == 6
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    assert config["trainable_token_indices"] == [32, 33]
    chained = load_model(out).model  # over the base named in the adapter, merged
    assert torch.allclose(_logits(chained, ids), expected, atol=1e-4)
    # the second adapter alone over the plain base is a different model (the chain is not a no-op)
    alone = PeftModel.from_pretrained(build_tiny_model(real_tokenizer), tmp_path / "second").merge_and_unload()
    assert not torch.allclose(_logits(alone, ids), expected, atol=1e-3)


def test_chaining_refuses_what_it_cannot_represent(tmp_path):
    from prorank.adapter_chain import chain_adapters

    for name, extra in (("a", {"use_dora": True}), ("b", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 2, **extra}))
        (tmp_path / name / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="use_dora"):
        chain_adapters(tmp_path / "a", tmp_path / "b", tmp_path / "out")
    with pytest.raises(ValueError, match="not a LoRA adapter folder"):
        chain_adapters(tmp_path / "missing", tmp_path / "b", tmp_path / "out")
