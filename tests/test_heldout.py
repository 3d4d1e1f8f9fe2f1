"""Held-out measurement of the warmup: answer metrics and greedy generation on the shared prompt."""

from __future__ import annotations

import doctest

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
