"""Given candidates (candidates/<split>.tsv) as negatives in both training stages, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prorank.data import DatasetError, load_dataset
from prorank.data.candidates import dataset_candidates


def _folder(tmp_path: Path, candidates: str) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    (root / "candidates").mkdir()
    docs = [{"_id": f"d{i}", "title": "", "text": f"text {i}"} for i in range(6)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td3\t1\n")
    (root / "candidates" / "train.tsv").write_text("query-id\tcorpus-id\tlabel\n" + candidates)
    return root


def test_real_candidate_files_load_and_count_queries_without_positive(data_dir):
    data = load_dataset("msmarco-sample", split="train", data_dir=data_dir, download=False)
    cand = dataset_candidates(data)
    assert len(cand.lists) == 500 and sum(len(v) for v in cand.lists.values()) == 10_000
    assert len(cand.without_positive(data.qrels)) == 47  # the rank-21-80 queries (shared/data/README)
    wiki = load_dataset("wikiqa", split="dev", data_dir=data_dir, download=False)
    negs = dataset_candidates(wiki).negatives()
    assert sum(len(v) for v in negs.values()) == 1130 - 140 and all(
        d not in wiki.qrels.get(q, {}) or wiki.qrels[q][d] <= 0 for q, ds in negs.items() for d in ds)


@pytest.mark.parametrize("line, message", [
    ("q0\td9\t0\n", r"candidates/train.tsv:2: document id 'd9' is not in the corpus"),
    ("q7\td1\t0\n", r"candidates/train.tsv:2: query id 'q7' is not in the queries file"),
    ("q0\td1\t0\nq0\td1\t1\n", r"candidates/train.tsv:3: \(q0, d1\) listed twice with different labels"),
    ("q0\td1\tno\n", r"candidates/train.tsv:2: score 'no' is not an integer"),
])
def test_bad_candidate_files_name_file_line_and_id(tmp_path, line, message):
    data = load_dataset(_folder(tmp_path, line), split="train", download=False)
    with pytest.raises(DatasetError, match=message):
        dataset_candidates(data)


def test_both_stages_take_negatives_from_candidates_and_count_skipped_queries(tmp_path):
    from prorank.train.score_data import training_groups
    from prorank.train.sources import DataSource, describe, load_sources
    from prorank.train.stage1_warmup import WarmupConfig, build_pairs

    # q0: positive d0, given negatives d1, d2 (BM25 would rank others); q1: d3 + d4; q2: no positive
    root = _folder(tmp_path, "q0\td1\t0\nq0\td0\t1\nq0\td2\t0\nq1\td4\t0\nq1\td3\t1\nq2\td5\t0\n")
    spec = DataSource(str(root), "train", negatives_from="candidates")
    train, _ = load_sources([spec], [])
    groups, _ = training_groups(train, n_negatives=2, pool=8, depth=100, window=[0, 100], exclude_judged=False,
                                seed=0, progress=False)
    assert sorted((g.qid, g.docids) for g in groups) == [("tiny/q0", ("d0", "d1", "d2")), ("tiny/q1", ("d3", "d4"))]
    assert describe(train)[0]["skipped_no_positive"] == 1 and describe(train)[0]["negatives_from"] == "candidates"

    pairs, info = build_pairs(WarmupConfig(datasets=[spec], output_dir=str(tmp_path / "w")), progress=False)
    got = sorted((p.qid, p.docid, p.label) for p in pairs)  # one given negative per positive
    assert got in ([("q0", "d0", "1"), ("q0", d, "0"), ("q1", "d3", "1"), ("q1", "d4", "0")] for d in ("d1", "d2"))
    assert info["datasets"][0]["skipped_no_positive"] == 1


def test_a_bad_candidates_file_fails_when_sources_load(tmp_path):
    from prorank.train.sources import DataSource, load_sources

    root = _folder(tmp_path, "q0\tnope\t0\n")
    with pytest.raises(DatasetError, match="nope"):
        load_sources([DataSource(str(root), "train", negatives_from="candidates")], [])
    with pytest.raises(ValueError, match="negatives_from"):
        DataSource(str(root), "train", negatives_from="bm26")


def test_stage1_holds_out_the_dev_queries_stage2_samples(data_dir, tmp_path):
    """The pipeline gives stage 1 stage 2's dev list: those very queries (same seeded sample) are
    never stage-1 training pairs, so the dev numbers that choose the final model stay unseen."""
    from prorank.train.sources import DataSource, load_sources
    from prorank.train.stage1_warmup import WarmupConfig, build_pairs

    dev = [DataSource("scifact", "train", max_queries=100)]
    held = set(load_sources([], dev, str(data_dir))[1][0].qids)
    cfg = WarmupConfig(datasets=[DataSource("scifact", "train", max_queries=400)], hold_out=dev,
                       output_dir=str(tmp_path), data_dir=str(data_dir))
    pairs, info = build_pairs(cfg, progress=False)
    assert len(held) == 100 and not held & {p.qid for p in pairs}
    assert info["datasets"][0]["held_out_queries"] == 100 and info["datasets"][0]["queries"] == 400
    without, _ = build_pairs(WarmupConfig(datasets=cfg.datasets, output_dir=str(tmp_path), data_dir=str(data_dir)),
                             progress=False)
    assert held & {p.qid for p in without}  # without the hold-out, a 400-query sample meets them
