"""BM25 with pyserini's Anserini: JVM set-up, indexing, search, and the scifact reproduction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prorank.data import load_dataset
from prorank.evaluation import evaluate, mean_metrics
from prorank.retrieval import BM25Searcher, Hit, build_index, ensure_index, ensure_jvm, is_lucene_index
from prorank.retrieval.index import INDEX_INFO, corpus_dataset, index_cache_path, read_index_info


@pytest.fixture(scope="session")
def scifact(data_dir):
    return load_dataset("scifact", data_dir=data_dir)


@pytest.fixture(scope="session")
def scifact_index(tmp_path_factory, scifact) -> Path:
    """The scifact index, built once per test session (~10 s)."""
    return build_index(scifact, tmp_path_factory.mktemp("indexes") / "scifact", threads=2)


@pytest.fixture(scope="session")
def scifact_searcher(scifact_index):
    with BM25Searcher(scifact_index) as searcher:
        yield searcher


def test_jvm_is_java_21_and_idempotent():
    from prorank.retrieval.java import java_version

    ensure_jvm()
    ensure_jvm()
    assert java_version().split(".")[0] == "21"


def test_bm25_reproduces_pyserini_beir_flat_scifact(scifact, scifact_searcher):
    """pyserini's published BEIR (v1.0.0) flat BM25 figure for scifact test: nDCG@10 = 0.679."""
    qids = scifact.judged_query_ids()
    hits = scifact_searcher.batch_search({q: scifact.queries[q] for q in qids}, k=100, threads=2)
    run = {q: {h.docid: h.score for h in hits[q]} for q in qids}
    ndcg = mean_metrics(evaluate(scifact.qrels, run, qids))["nDCG@10"]
    assert ndcg == pytest.approx(0.679, abs=0.003)


def test_index_stores_every_document_with_title_and_text(scifact, scifact_index, scifact_searcher):
    assert is_lucene_index(scifact_index)
    assert scifact_searcher.num_docs == len(scifact.corpus) == 5183
    info = read_index_info(scifact_index)
    assert info["indexed_docs"] == 5183 and info["dataset"] == "scifact"
    assert info["corpus_sha256"] == "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6"
    for docid in ("4983", "10608397"):
        assert scifact_searcher.document(docid) == scifact.corpus[docid]
    with pytest.raises(KeyError):
        scifact_searcher.document("no-such-doc")


def test_title_is_searchable(scifact, scifact_searcher):
    docid = "10608397"
    title = scifact.corpus[docid]["title"]
    assert scifact_searcher.search(title, k=1)[0].docid == docid


def test_search_and_batch_search_agree(scifact, scifact_searcher):
    queries = {q: scifact.queries[q] for q in scifact.judged_query_ids(5)}
    batch = scifact_searcher.batch_search(queries, k=20, threads=2)
    assert list(batch) == list(queries)
    for qid, text in queries.items():
        single = scifact_searcher.search(text, k=20)
        assert single == batch[qid]
        assert len(single) == 20 and all(isinstance(h, Hit) for h in single)
        assert [h.score for h in single] == sorted((h.score for h in single), reverse=True)


def test_search_edge_cases(scifact_searcher):
    assert scifact_searcher.search("", k=5) == []
    assert scifact_searcher.search("the of and", k=5) == []  # stopwords only
    assert len(scifact_searcher.search('AND OR ( "unbalanced : quotes', k=5)) <= 5  # no query syntax
    assert scifact_searcher.batch_search({}, k=5) == {}
    assert scifact_searcher.batch_search({"x": ""}, k=5) == {"x": []}
    with pytest.raises(ValueError, match="k must be a positive integer"):
        scifact_searcher.search("cancer", k=0)
    with pytest.raises(TypeError, match="query must be a str"):
        scifact_searcher.search(None)  # type: ignore[arg-type]


def test_bm25_parameters_change_scores(scifact_index):
    with BM25Searcher(scifact_index) as default, BM25Searcher(scifact_index, k1=1.2, b=0.75) as other:
        q = "microRNA expression in cancer"
        assert [h.score for h in default.search(q, k=5)] != [h.score for h in other.search(q, k=5)]
    with pytest.raises(ValueError, match="b must be in"):
        BM25Searcher(scifact_index, b=1.5)


def test_searcher_rejects_paths_that_are_not_indexes(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Lucene index"):
        BM25Searcher(tmp_path)


def test_ensure_index_builds_once_atomically_and_caches(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))
    first = ensure_index("adi", data_dir=data_dir)
    dataset = load_dataset("adi", data_dir=data_dir)
    assert first == index_cache_path(dataset)
    assert first.parent == tmp_path / "home" / "indexes" and first.name.startswith("adi-d627f152ca41")
    stamp = (first / INDEX_INFO).stat().st_mtime_ns
    assert ensure_index(dataset) == first  # a BeirDataset, a name or a path give the same cache entry
    assert ensure_index(data_dir / "adi") == first
    assert ensure_index(first) == first  # an index folder is used as it is
    assert (first / INDEX_INFO).stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary folders left
    with BM25Searcher(first) as searcher:
        assert searcher.num_docs == 82


def test_build_index_refuses_to_overwrite_and_leaves_no_partial_index(tmp_path, data_dir):
    dataset = corpus_dataset(data_dir / "adi")
    out = build_index(dataset, tmp_path / "idx")
    with pytest.raises(FileExistsError):
        build_index(dataset, out)
    assert build_index(dataset, out, overwrite=True) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_index_cli(tmp_path, data_dir):
    from prorank.cli import main

    out = tmp_path / "cli-idx"
    assert main(["index", "--dataset", str(data_dir / "adi"), "--index", str(out)]) == 0
    assert is_lucene_index(out) and json.loads((out / INDEX_INFO).read_text())["indexed_docs"] == 82
    assert main(["index", "--dataset", str(data_dir / "adi"), "--index", str(out)]) == 2  # exists


def test_unknown_index_name_is_not_a_prebuilt_index():
    from prorank.retrieval.index import prebuilt_index

    assert prebuilt_index("not-a-prebuilt-index") is None  # checked against pyserini's list, no download
    with pytest.raises(FileNotFoundError, match="neither a Lucene index folder nor a pyserini prebuilt"):
        BM25Searcher("not-a-prebuilt-index")
