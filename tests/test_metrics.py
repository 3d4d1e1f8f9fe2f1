"""Metrics (trec_eval semantics via pytrec_eval), cross-checked with ir_measures; TREC run files."""

from __future__ import annotations

import math
import random

import pytest

from prorank.evaluation import METRICS, evaluate, mean_metrics, read_run, trec_order, write_run
from prorank.evaluation.trec import format_run


def test_hand_computed_values():
    qrels = {"q": {"a": 2, "b": 1, "c": 0, "z": 1}}  # z is never retrieved
    run = {"q": {"c": 0.9, "a": 0.8, "x": 0.7, "b": 0.6}}
    got = evaluate(qrels, run)["q"]
    # trec_eval's nDCG: linear gain (the judgment itself), log2(rank + 1) discount
    dcg = 2 / math.log2(3) + 1 / math.log2(5)  # a at rank 2, b at rank 4
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["nDCG@10"] == pytest.approx(dcg / ideal)
    assert got["Recall@100"] == pytest.approx(2 / 3)
    assert got["MRR@10"] == pytest.approx(1 / 2)
    assert got["MAP"] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_mrr_is_cut_at_10():
    qrels = {"q": {"rel": 1}}
    run = {"q": {**{f"n{i}": 100.0 - i for i in range(10)}, "rel": 1.0}}  # rel at rank 11
    got = evaluate(qrels, run)["q"]
    assert got["MRR@10"] == 0.0
    assert got["MAP"] == pytest.approx(1 / 11)


def test_unjudged_queries_ignored_and_unanswered_judged_queries_score_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}, "unjudged": {"a": 1.0}}
    per_query = evaluate(qrels, run)
    assert set(per_query) == {"q1", "q2"}
    assert per_query["q2"] == {m: 0.0 for m in METRICS}
    assert mean_metrics(per_query)["nDCG@10"] == pytest.approx(0.5)
    assert evaluate(qrels, {}, ["q1"]) == {"q1": {m: 0.0 for m in METRICS}}
    with pytest.raises(KeyError, match="no judgments"):
        evaluate(qrels, run, ["unjudged"])


def test_ties_follow_trec_eval_docid_descending():
    scores = {"a": 1.0, "c": 1.0, "b": 2.0}
    assert trec_order(scores) == ["b", "c", "a"]
    qrels = {"q": {"a": 1}}
    run = {"q": {f"d{i:02d}": 1.0 for i in range(10)} | {"a": 1.0}}  # "a" sorts last among ties
    assert evaluate(qrels, run)["q"]["MRR@10"] == 0.0


def test_agrees_with_ir_measures_on_a_random_run(data_dir):
    """Two libraries, one answer: ir_measures (pytrec_eval + its own RR@10) on a synthetic run."""
    import ir_measures
    from ir_measures import AP, RR, R, nDCG

    from prorank.data import load_dataset

    ds = load_dataset("cranfield", data_dir=data_dir)  # graded judgments 1-4
    rng = random.Random(13)
    docids = sorted(ds.corpus)
    qids = ds.judged_query_ids(40)
    run = {}
    for qid in qids[:-2]:  # the last two judged queries get no result at all
        pool = rng.sample(docids, 120) + rng.sample(sorted(ds.qrels[qid]), min(5, len(ds.qrels[qid])))
        scores = rng.sample(range(1, 100_000), len(set(pool)))  # distinct: no ties
        run[qid] = {d: float(s) for d, s in zip(dict.fromkeys(pool), scores)}
    run["not-judged"] = {docids[0]: 1.0}
    ours = evaluate(ds.qrels, run, qids)
    qrels = {q: ds.qrels[q] for q in qids}
    names = {nDCG @ 10: "nDCG@10", R @ 100: "Recall@100", RR @ 10: "MRR@10", AP: "MAP"}
    theirs = {(m.query_id, names[m.measure]): m.value for m in ir_measures.iter_calc(list(names), qrels, run)}
    for qid in qids:
        for metric in METRICS:
            assert ours[qid][metric] == pytest.approx(theirs.get((qid, metric), 0.0), abs=1e-9), (qid, metric)
    aggregate = ir_measures.calc_aggregate(list(names), qrels, run)
    for measure, metric in names.items():
        assert mean_metrics(ours)[metric] == pytest.approx(aggregate[measure], abs=1e-9)


def test_trec_run_round_trip(tmp_path):
    run = {"q1": [("d1", 3.5), ("d2", 1.25), ("d3", 1.25)], "q2": [("d9", -0.1)]}
    path = write_run(tmp_path / "run.trec", run, tag="test")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d1 1 3.5 test"
    assert [line.split()[2:4] for line in lines[1:3]] == [["d2", "2"], ["d3", "3"]]  # ties keep input order
    assert read_run(path) == {"q1": {"d1": 3.5, "d2": 1.25, "d3": 1.25}, "q2": {"d9": -0.1}}
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]


def test_trec_run_scores_round_trip_exactly(tmp_path):
    rng = random.Random(0)
    run = {"q": [(f"d{i}", rng.uniform(-10, 10)) for i in range(50)]}
    back = read_run(write_run(tmp_path / "r.trec", run, tag="t"))
    assert back == {"q": dict(run["q"])}


def test_trec_run_errors(tmp_path):
    with pytest.raises(ValueError, match="not finite"):
        format_run({"q": [("d", float("nan"))]}, tag="t")
    with pytest.raises(ValueError, match="cannot hold spaces"):
        format_run({"q": [("d 1", 1.0)]}, tag="t")
    with pytest.raises(ValueError, match="tag"):
        format_run({"q": [("d", 1.0)]}, tag="has space")
    bad = tmp_path / "bad.trec"
    bad.write_text("q Q0 d 1 1.0 t\nq Q0 d2 2\n")
    with pytest.raises(ValueError, match=r"bad\.trec:2: expected 6 columns"):
        read_run(bad)


def test_paired_randomization_test():
    import doctest

    from prorank.evaluation import significance
    from prorank.evaluation.significance import paired_randomization_test

    assert doctest.testmod(significance).failed == 0
    a = [0.9, 0.8, 0.7, 0.95, 0.85, 0.6, 0.9, 0.75, 0.8, 0.7]
    b = [x - 0.2 for x in a]
    assert paired_randomization_test(a, b) < 0.01  # consistently better on every query
    mixed = [x + (0.1 if i % 2 else -0.1) for i, x in enumerate(a)]
    assert paired_randomization_test(mixed, a) > 0.5  # wins and losses cancel
    assert paired_randomization_test(a, b, seed=3) == paired_randomization_test(a, b, seed=3)
    with pytest.raises(ValueError, match="paired"):
        paired_randomization_test([1.0], [1.0, 2.0])
