"""The throughput benchmark's own machinery: random-weight models of a given architecture, and a
small end-to-end run (real scifact pairs, real tokenizer, ProRank paths vs the plain loop)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

TINY_ARCH = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 50000, "max_position_embeddings": 4096,
    "rope_theta": 12345.0, "tie_word_embeddings": True, "initializer_range": 0.2,
}


@pytest.fixture()
def tiny_arch(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))
    path = tmp_path / "tiny-arch.json"
    path.write_text(json.dumps(TINY_ARCH))
    return path


def test_random_model_is_seeded_and_carries_the_keys_transformers_4_reads(tiny_arch, smollm2_dir):
    from random_model import random_model_dir

    from prorank import Reranker

    out = random_model_dir(tiny_arch, smollm2_dir, dtype="float32")
    assert out == random_model_dir(tiny_arch, smollm2_dir, dtype="float32")  # cached by content
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 12345.0  # the key transformers 4.x reads
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] != "TokenizersBackend"
    again = random_model_dir(tiny_arch, smollm2_dir, seed=1, dtype="float32")
    assert again != out
    pair = ("what do cells need", "Cells need energy from glucose.")
    a = Reranker.from_pretrained(out, device="cpu", max_length=128).score_pairs([pair])
    b = Reranker.from_pretrained(again, device="cpu", max_length=128).score_pairs([pair])
    assert a != b  # the seed sets the weights
    assert a == Reranker.from_pretrained(out, device="cpu", max_length=128).score_pairs([pair])


def test_throughput_run_agrees_with_plain_loop(tiny_arch, smollm2_dir, data_dir, tmp_path):
    from throughput import ThroughputConfig, main

    cfg = ThroughputConfig(model=str(smollm2_dir), random_init=str(tiny_arch), data_dir=str(data_dir),
                           queries=2, docs_per_query=3, doc_tokens=60, max_length=128, repeats=2,
                           device="cpu", methods=["prorank", "prorank-unshared", "transformers"],
                           output=str(tmp_path / "out.json"))
    result = main(cfg)
    assert json.loads((tmp_path / "out.json").read_text())["pairs"] == result["pairs"] == 6
    methods = result["methods"]
    assert set(methods) == {"prorank", "prorank-unshared", "transformers"}
    assert methods["prorank-unshared"]["forward_per_prompt_token"] == 1.0
    assert methods["prorank"]["forward_per_prompt_token"] < 0.95  # CPU default: prefixes run once
    for name in ("prorank", "prorank-unshared"):
        check = result["agreement"][f"{name} vs transformers (same prompts)"]
        assert check["ok"], check
        assert len(methods[name]["seconds"]) == 2 and methods[name]["speedup_vs_transformers"] > 0
    with pytest.raises(ValueError, match="methods"):
        main(ThroughputConfig(methods=["prorank", "fastest"]))
