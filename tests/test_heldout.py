"""Held-out measurement of the warmup: answer metrics and greedy generation on the shared prompt."""

from __future__ import annotations

import doctest
import statistics
from pathlib import Path

import pytest

from prorank.train import heldout
from prorank.train.heldout import HeldoutConfig, answer_metrics, generate_answers, roc_auc
from prorank.train.pairs import Pair


def test_doctests_pass():
    assert doctest.testmod(heldout).failed == 0


def test_answer_metrics_by_hand():
    completions = ["1", "0", "1.", "Relevance:", " 0 ", "1"]
    firsts = ["1", "0", "1", "Rele", "0", "1"]
    labels = ["1", "1", "1", "0", "0", "0"]
    scores = [2.0, -1.0, 1.0, 0.5, -3.0, 0.0]
    m = answer_metrics(completions, scores, labels, firsts)
    assert m["pairs"] == 6
    assert m["format_rate"] == pytest.approx(4 / 6)  # "1.", "Relevance:" malformed
    assert m["accuracy"] == pytest.approx(2 / 6)  # "1" on a positive, " 0 " on a negative
    assert m["accuracy_when_formatted"] == pytest.approx(2 / 4)
    assert m["answer_token_format_rate"] == pytest.approx(5 / 6)
    assert m["answer_token_accuracy"] == pytest.approx(3 / 6)
    assert m["answered"] == {"1": 2, "0": 2, "malformed": 2}
    # positives 2, -1, 1 vs negatives 0.5, -3, 0: 7 of 9 pairs ordered right
    assert m["score_auc"] == pytest.approx(7 / 9)
    assert m["score_std"] == pytest.approx(statistics.pstdev(scores))  # mean -0.0833
    assert answer_metrics(completions, [0.7] * 6, labels)["score_std"] == pytest.approx(0.0, abs=1e-12)  # one answer for all


def test_roc_auc_edge_cases():
    assert roc_auc([1.0, 2.0], ["1", "1"]) is None
    assert roc_auc([1.0, 1.0], ["1", "0"]) == 0.5


def test_generation_scores_equal_the_reranker_score(tiny_reranker):
    pairs = [Pair("what is x?", "x is a letter", "1"), Pair("a much longer question about y", "y", "0"),
             Pair("z", {"title": "Z", "text": "about z " * 20}, "0")]
    texts, firsts, scores = generate_answers(tiny_reranker, pairs, max_new_tokens=3, batch_size=2, progress=False)
    assert len(texts) == len(firsts) == len(scores) == 3
    expected = tiny_reranker.score_pairs([(p.query, p.document) for p in pairs])
    assert scores == pytest.approx(expected, abs=1e-4)


def test_config_needs_models():
    with pytest.raises(ValueError, match="models"):
        HeldoutConfig()
    with pytest.raises(ValueError, match="names"):
        HeldoutConfig(models=["a", "b"], names=["x"])


def test_recorded_pairs_replay_the_bm25_pairs(data_dir, tmp_path):
    """Held-out and probe pairs written to JSONL (on a machine with Lucene) come back the same from
    ``jsonl`` (on one without Java): same queries, documents, labels, order."""
    from prorank.train.heldout import heldout_pairs
    from prorank.train.pairs import write_jsonl_pairs
    from prorank.train.probe import ProbeConfig, probe_pairs

    cfg = HeldoutConfig(models=["m"], dataset="scifact", split="test", data_dir=str(data_dir), max_queries=4,
                        max_pairs=6)
    live = heldout_pairs(cfg)
    write_jsonl_pairs(live, tmp_path / "heldout.jsonl")
    replayed = heldout_pairs(HeldoutConfig(models=["m"], jsonl=str(tmp_path / "heldout.jsonl"), max_pairs=6))
    key = [(p.qid, p.docid, p.query, p.document, p.label) for p in live]
    assert len(live) == 6 and {p.label for p in live} == {"0", "1"}
    assert [(p.qid, p.docid, p.query, p.document, p.label) for p in replayed] == key
    assert len(heldout_pairs(HeldoutConfig(models=["m"], jsonl=str(tmp_path / "heldout.jsonl"), max_pairs=3))) == 3

    pcfg = ProbeConfig(dataset="scifact", split="test", max_queries=4, max_pairs=6)
    live = probe_pairs(pcfg, str(data_dir), seed=0)
    write_jsonl_pairs(live, tmp_path / "probe.jsonl")
    replayed = probe_pairs(ProbeConfig(jsonl=str(tmp_path / "probe.jsonl"), max_pairs=6), None, seed=0)
    assert sorted((p.qid, p.docid, p.label) for p in replayed) == sorted((p.qid, p.docid, p.label) for p in live)
    write_jsonl_pairs([p for p in live if p.label == "1"], tmp_path / "ones.jsonl")
    with pytest.raises(ValueError, match="ones.jsonl gave pairs of one label"):
        probe_pairs(ProbeConfig(jsonl=str(tmp_path / "ones.jsonl")), None, seed=0)


def test_heldout_leaves_out_the_queries_a_run_trained_on(data_dir, tmp_path):
    """``exclude_queries_of`` a run's pairs.jsonl: held-out pairs from the training split come only
    from queries the run never saw, and a sample of all the rest when asked for more than remain."""
    from prorank.train.heldout import heldout_pairs
    from prorank.train.pairs import beir_pairs, bm25_searcher, load_beir, write_jsonl_pairs

    data = load_beir("scifact", "train", str(data_dir))
    trained = beir_pairs(data, bm25_searcher(Path(data.path).resolve()), max_queries=400, seed=0, progress=False)
    write_jsonl_pairs(trained, tmp_path / "pairs.jsonl")
    seen = {p.qid for p in trained}
    assert len(seen) == 400
    cfg = HeldoutConfig(models=["m"], dataset="scifact", split="train", data_dir=str(data_dir), max_queries=None,
                        max_pairs=None, exclude_queries_of=[str(tmp_path / "pairs.jsonl")], ranking_queries=0)
    rest = heldout_pairs(cfg)
    assert {p.qid for p in rest}.isdisjoint(seen)
    assert len({p.qid for p in rest}) == len(data.judged_query_ids()) - 400  # every other judged query
    assert {p.label for p in rest} == {"0", "1"}
    with pytest.raises(ValueError, match="no held-out pairs"):  # a run's own pairs less its queries: none
        heldout_pairs(HeldoutConfig(models=["m"], jsonl=str(tmp_path / "pairs.jsonl"), max_pairs=None,
                                    exclude_queries_of=[str(tmp_path / "pairs.jsonl")], ranking_queries=0))
    write_jsonl_pairs([Pair(p.query, p.document, p.label) for p in trained[:2]], tmp_path / "no-qid.jsonl")
    with pytest.raises(ValueError, match="exclude_queries_of: .*no-qid.jsonl has rows without a qid"):
        heldout_pairs(HeldoutConfig(models=["m"], jsonl=str(tmp_path / "pairs.jsonl"), ranking_queries=0,
                                    exclude_queries_of=[str(tmp_path / "no-qid.jsonl")]))


def test_provenance_needs_no_java_when_lucene_never_ran():
    """A GPU machine without pyserini records versions: the Anserini jar is looked up only when the
    JVM ran in the process (here pyserini is made unfindable after the Java module is imported)."""
    import subprocess
    import sys

    code = ("import sys, prorank.retrieval.java\n"
            "sys.modules['pyserini'] = None\n"
            "from prorank.evaluation.provenance import versions\n"
            "v = versions()\n"
            "assert 'anserini' not in v and v['python'], v\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
