"""The dense encoder (real all-MiniLM-L6-v2), its vector cache, the hybrid teacher and the
hybrid first stage (pyserini FaissSearcher + HybridSearcher over real Lucene and faiss indexes)."""

from __future__ import annotations

import numpy as np
import pytest

from prorank.dense import DenseEncoder
from prorank.teacher import HybridTeacher, bm25_list

CORPUS = {
    "d1": {"title": "Rain", "text": "Rain forms when water droplets in clouds grow heavy and fall."},
    "d2": {"title": "Bananas", "text": "Bananas are rich in potassium and easy to digest."},
    "d3": {"title": "Storms", "text": "Thunderstorms bring heavy rain, lightning and strong winds."},
    "d4": {"title": "Tax law", "text": "Income tax rates depend on the bracket of the taxpayer."},
}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from prorank.registry import TEACHER_MODEL, pull

    pull(TEACHER_MODEL, quiet=True)
    return DenseEncoder.load(TEACHER_MODEL)


def test_vectors_are_normalised_cached_and_searchable(encoder, tmp_path) -> None:
    first = encoder.corpus_vectors(CORPUS, cache_dir=tmp_path, progress=False)
    assert first.docids == sorted(CORPUS) and first.matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(first.matrix, axis=1), 1.0, atol=1e-5)
    (cached,) = list(tmp_path.glob("*.npz"))
    again = encoder.corpus_vectors(CORPUS, cache_dir=tmp_path, progress=False)
    assert again.docids == first.docids and np.array_equal(again.matrix, first.matrix)
    changed = encoder.corpus_vectors({**CORPUS, "d5": "new"}, cache_dir=tmp_path, progress=False)
    assert len(changed.docids) == 5 and len(list(tmp_path.glob("*.npz"))) == 2  # another corpus, another file
    hits = encoder.search({"q": "why does it rain"}, first, k=2)["q"]
    assert [h.docid for h in hits][0] in ("d1", "d3") and hits[0].score >= hits[1].score
    assert {h.docid for h in hits} == {"d1", "d3"}


def test_teacher_fuses_dense_and_bm25_per_query(encoder, tmp_path) -> None:
    vectors = encoder.corpus_vectors(CORPUS, cache_dir=tmp_path, progress=False)
    teacher = HybridTeacher(encoder, vectors, bm25_weight=0.0)
    ids = ["d1", "d2", "d3", "d4"]
    bm25 = {"d2": 9.0, "d4": 7.0}  # BM25 prefers the wrong documents; d1, d3 not retrieved
    dense_only = teacher.score_many({"q": "how does rain form"}, {"q": ids}, {"q": bm25})["q"]
    assert max(dense_only, key=dense_only.get) == "d1" and min(dense_only.values()) == 0.0
    teacher.bm25_weight = 1.0
    bm25_only = teacher.score_many({"q": "how does rain form"}, {"q": ids}, {"q": bm25})["q"]
    assert bm25_only == {"d1": 0.0, "d2": 1.0, "d3": 0.0, "d4": 0.0}
    assert bm25_list(["a", "b"], {"a": 3.0, "c": 1.0}) == [3.0, 1.0]
    # tuning on judged queries picks the weight that ranks the relevant document first
    table = teacher.tune({"q": "how does rain form"}, {"q": ids}, {"q": bm25}, {"q": {"d1": 1}})
    assert teacher.bm25_weight < 0.5 and table[teacher.bm25_weight] == pytest.approx(1.0) and table[1.0] < 1.0


def test_a_teacher_not_pulled_names_the_pull_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="prorank models pull all-minilm-l6-v2"):
        DenseEncoder.load("all-minilm-l6-v2")


@pytest.mark.slow
def test_hybrid_first_stage_raises_recall_over_bm25_on_real_data(encoder, data_dir) -> None:
    """adi (82 documents, 35 queries): pyserini's hybrid of BM25 and MiniLM vs BM25 alone."""
    from prorank.data import load_dataset
    from prorank.evaluation.metrics import evaluate, mean_metrics
    from prorank.retrieval import BM25Searcher, ensure_index
    from prorank.retrieval.hybrid import HybridRetriever

    data = load_dataset(data_dir / "adi", split="test")
    queries = {q: data.queries[q] for q in data.qrels}
    with BM25Searcher(ensure_index(data)) as bm25:
        sparse = bm25.batch_search(queries, k=10)
        with HybridRetriever(data, encoder, bm25=BM25Searcher(ensure_index(data))) as hybrid:
            fused = hybrid.batch_search(queries, k=10)
    for qid in queries:
        assert len(fused[qid]) == 10 and [h.score for h in fused[qid]] == sorted((h.score for h in fused[qid]), reverse=True)
    recall = {name: mean_metrics(evaluate(data.qrels, {q: {h.docid: h.score for h in hits[q]} for q in queries}))
              for name, hits in (("bm25", sparse), ("hybrid", fused))}
    assert recall["hybrid"]["nDCG@10"] > recall["bm25"]["nDCG@10"]
