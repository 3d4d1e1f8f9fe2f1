"""Offline aliases: unknown names fail at once, the teacher wheel is verified, paths pass through."""

from __future__ import annotations

import json
import time

import pytest

from prorank.paths import sha256_file
from prorank.registry import REGISTRY, TEACHER_MODEL, ZipWheel, is_pulled, model_dir, resolve_model


def test_unknown_alias_fails_at_once_listing_the_aliases() -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="smollm2-135m-instruct") as err:
        resolve_model("smollm2-135m")  # a typo, not a hub id: no network retries
    assert "not an alias" in str(err.value) and time.monotonic() - started < 5


def test_paths_and_hub_ids_pass_through(tmp_path) -> None:
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))


@pytest.fixture(scope="session")
def teacher_dir():
    from prorank.registry import pull

    return pull(TEACHER_MODEL, quiet=True)


def test_teacher_wheel_is_verified_and_unpacked(teacher_dir) -> None:
    spec = REGISTRY[TEACHER_MODEL]
    assert isinstance(spec, ZipWheel) and is_pulled(TEACHER_MODEL) and teacher_dir == model_dir(TEACHER_MODEL)
    # the weights inside equal the upstream sentence-transformers/all-MiniLM-L6-v2 file
    assert sha256_file(teacher_dir / "model.safetensors") == \
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    source = json.loads((teacher_dir / "source.json").read_text())
    assert source["zip_sha256"] == spec.member_sha256 and source["license"] == "Apache-2.0"
    assert (teacher_dir / "modules.json").is_file() and (teacher_dir / "1_Pooling" / "config.json").is_file()


SHIPPED = "prorank-smollm2-135m"


def test_shipped_reranker_is_pinned_and_portable() -> None:
    from prorank.registry import BASE_MODEL, DEFAULT_MODEL, PACKAGE_WEIGHTS, BundledAdapter

    spec = REGISTRY[SHIPPED]
    assert isinstance(spec, BundledAdapter) and spec.base == BASE_MODEL and DEFAULT_MODEL == SHIPPED
    folder = PACKAGE_WEIGHTS / spec.folder
    for name, digest in spec.files_sha256.items():
        assert sha256_file(folder / name) == digest, name
    assert (folder / "adapter_model.safetensors").stat().st_size < 30_000_000
    config = json.loads((folder / "adapter_config.json").read_text())
    meta = json.loads((folder / "prorank.json").read_text())
    assert config["base_model_name_or_path"] == BASE_MODEL == meta["base_model"]  # no local paths
    assert meta["fusion"]["method"] in ("interpolate", "rrf") and 0.0 <= meta["fusion"]["weight"] <= 1.0
    assert meta["max_length"] == 256 and meta["prompt_version"] == "prorank-prompt-v1"
    text = (folder / "prorank.json").read_text() + (folder / "adapter_config.json").read_text()
    assert "/root" not in text and "/home" not in text and "/work" not in text


def test_a_tampered_bundle_is_refused(tmp_path, monkeypatch) -> None:
    import shutil

    import prorank.registry as registry

    spec = REGISTRY[SHIPPED]
    copy = tmp_path / spec.folder
    shutil.copytree(registry.PACKAGE_WEIGHTS / spec.folder, copy)
    with open(copy / "adapter_model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\x00\x01")
    monkeypatch.setattr(registry, "PACKAGE_WEIGHTS", tmp_path)
    monkeypatch.setattr(registry, "_VERIFIED", set())
    with pytest.raises(RuntimeError, match="sha256"):
        registry.bundled_path(spec)


@pytest.mark.slow
def test_shipped_reranker_ranks_relevant_scifact_documents_first(data_dir) -> None:
    """The real adapter over the real base: on the first 20 scifact test queries (never trained
    on), a judged-relevant abstract outscores a BM25 negative of the same query most of the time
    (chance: 50%)."""
    from prorank import Reranker
    from prorank.data import load_dataset
    from prorank.fusion import Fusion
    from prorank.retrieval import BM25Searcher, ensure_index

    reranker = Reranker.from_pretrained(SHIPPED, device="cpu")
    assert reranker.max_length == 256 and reranker.fusion.active and isinstance(reranker.fusion, Fusion)
    data = load_dataset(data_dir / "scifact", split="test")
    qids = data.judged_query_ids(20)
    with BM25Searcher(ensure_index(data)) as bm25:
        hits = bm25.batch_search({q: data.queries[q] for q in qids}, k=10)
    wins = 0
    for qid in qids:
        positive = next(d for d, g in data.qrels[qid].items() if g > 0)
        negative = next(h.docid for h in hits[qid] if h.docid not in data.qrels[qid])
        pos, neg = reranker.score(data.queries[qid], [data.corpus[positive], data.corpus[negative]])
        wins += pos > neg
    assert wins >= 14, wins
