"""Warmup data: BM25 negatives never include judged positives, and sampling is seeded."""

from __future__ import annotations

import json
import random

import pytest

from prorank.train.negatives import mine_negatives
from prorank.train.pairs import (
    Pair,
    beir_pairs,
    label_counts,
    load_beir,
    prompt_rows,
    read_jsonl_pairs,
    write_jsonl_pairs,
)


def _beir_folder(tmp_path, n_queries=12, n_docs=60):
    """A small BEIR folder: each query has 1-2 positives, one judged negative."""
    rng = random.Random(1)
    folder = tmp_path / "toy"
    (folder / "qrels").mkdir(parents=True)
    docs = [f"d{i}" for i in range(n_docs)]
    with open(folder / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d, "title": f"title {d}", "text": f"text of {d}"}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for q in range(n_queries):
            f.write(json.dumps({"_id": f"q{q}", "text": f"query {q}"}) + "\n")
    qrels = {}
    with open(folder / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in range(n_queries):
            judged = rng.sample(docs, 3)
            grades = [1, 2 if q % 2 else 0, 0]
            qrels[f"q{q}"] = dict(zip(judged, grades))
            for d, g in zip(judged, grades):
                f.write(f"q{q}\t{d}\t{g}\n")
    # a "BM25" run that ranks every judged document (positives included) near the top
    run = {}
    for q, judged in qrels.items():
        rest = [d for d in docs if d not in judged]
        random.Random(q).shuffle(rest)
        run[q] = list(judged) + rest
    return folder, qrels, run


def test_mined_negatives_exclude_positives_and_are_deterministic(tmp_path):
    _, qrels, run = _beir_folder(tmp_path)
    queries = {q: f"query {q}" for q in qrels}
    a = mine_negatives(run, queries, qrels, depth=20, per_query=10, seed=3, progress=False)
    b = mine_negatives(run, dict(reversed(list(queries.items()))), qrels, depth=20, per_query=10, seed=3,
                       progress=False)
    assert a == b  # same seed, any query order
    for q, negs in a.items():
        assert len(negs) == 10 and len(set(negs)) == 10
        assert not set(negs) & {d for d, g in qrels[q].items() if g > 0}
        assert set(negs) <= set(run[q][:20])
    c = mine_negatives(run, queries, qrels, depth=20, per_query=10, seed=4, progress=False)
    assert c != a


def test_window_and_exclude_judged(tmp_path):
    _, qrels, run = _beir_folder(tmp_path)
    queries = {q: "x" for q in qrels}
    got = mine_negatives(run, queries, qrels, depth=30, window=(5, 15), per_query=100, progress=False)
    for q, negs in got.items():
        assert set(negs) <= set(run[q][5:15])
        assert negs == [d for d in run[q][5:15] if qrels[q].get(d, 0) <= 0]  # all, in rank order
    judged = mine_negatives(run, queries, qrels, depth=30, per_query=100, exclude_judged=True, progress=False)
    for q, negs in judged.items():
        assert not set(negs) & set(qrels[q])
    with pytest.raises(ValueError, match="window"):
        mine_negatives(run, queries, qrels, depth=10, window=(0, 20), progress=False)


def test_searcher_objects_are_accepted(tmp_path):
    _, qrels, run = _beir_folder(tmp_path)

    class Hit:
        def __init__(self, docid):
            self.docid = docid

    class Searcher:  # the search(query, k) contract of prorank.retrieval.bm25.BM25Searcher
        def search(self, query, k):
            return [Hit(d) for d in run[query][:k]]

    queries = {q: q for q in qrels}
    assert mine_negatives(Searcher(), queries, qrels, depth=20, per_query=5, seed=0, progress=False) == \
        mine_negatives(run, queries, qrels, depth=20, per_query=5, seed=0, progress=False)


def test_beir_pairs_ratio_labels_and_seed(tmp_path):
    folder, qrels, run = _beir_folder(tmp_path)
    data = load_beir(folder, "train")
    pairs = beir_pairs(data, run, depth=30, negatives_per_positive=2, seed=0, progress=False)
    n_pos = sum(1 for q in qrels for g in qrels[q].values() if g > 0)
    assert label_counts(pairs) == {"1": n_pos, "0": 2 * n_pos}
    for p in pairs:
        grade = qrels[p.qid].get(p.docid, 0)
        assert (p.label == "1") == (grade > 0)
        assert p.document == data.corpus[p.docid]
    assert pairs == beir_pairs(data, run, depth=30, negatives_per_positive=2, seed=0, progress=False)
    assert pairs != beir_pairs(data, run, depth=30, negatives_per_positive=2, seed=1, progress=False)
    few = beir_pairs(data, run, depth=30, max_queries=3, seed=0, progress=False)
    assert len({p.qid for p in few}) == 3


def test_jsonl_roundtrip_and_validation(tmp_path):
    pairs = [Pair("q", "doc text", "1", "a", "b"), Pair("q2", {"title": "T", "text": "x"}, "0")]
    path = write_jsonl_pairs(pairs, tmp_path / "p.jsonl")
    assert read_jsonl_pairs(path) == pairs
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "document": "d"}) + "\n")
    with pytest.raises(ValueError, match="label"):
        read_jsonl_pairs(bad)
    bad.write_text(json.dumps({"query": "q", "document": "d", "label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_jsonl_pairs(bad)


def test_prompt_rows_use_the_shared_prompt(real_tokenizer):
    from prorank.prompt import PromptBuilder

    builder = PromptBuilder(real_tokenizer, 128)
    pairs = [Pair("what is x?", {"title": "X", "text": "x is a letter " * 100}, "1", "q", "d")]
    (row,) = prompt_rows(pairs, builder)
    assert row == {"prompt": builder.encode(pairs[0].query, pairs[0].document).text, "label": "1",
                   "qid": "q", "docid": "d"}
    # what TRL tokenizes is exactly what the reranker scores
    assert real_tokenizer(row["prompt"])["input_ids"] == builder.encode(pairs[0].query, pairs[0].document).input_ids
    assert len(real_tokenizer(row["prompt"])["input_ids"]) <= 128


@pytest.mark.slow
def test_real_bm25_negatives_on_scifact(data_dir):
    from prorank.train.pairs import bm25_searcher

    data = load_beir("scifact", "train", data_dir)
    pairs = beir_pairs(data, bm25_searcher(data.path), max_queries=20, seed=0, progress=False)
    assert label_counts(pairs)["0"] == label_counts(pairs)["1"] > 0
    for p in pairs:
        if p.label == "0":
            assert data.qrels[p.qid].get(p.docid, 0) <= 0
