"""Stage-1 rewards: exact-label format and correctness, with TRL's reward signature."""

from __future__ import annotations

import doctest

import pytest

from prorank.train import rewards
from prorank.train.rewards import (
    correctness_reward,
    format_reward,
    normalize_label,
    parse_label,
)

MALFORMED = ["", "1 because the document matches", "yes", "10", "Relevance:", "1.", "0 1", "one"]


def test_doctests_pass():
    result = doctest.testmod(rewards)
    assert result.attempted >= 6 and result.failed == 0


@pytest.mark.parametrize("completion", ["0", "1", " 1", "0\n", "\n1 \n"])
def test_well_formed_answers_get_format_reward(completion):
    assert format_reward(prompts=["p"], completions=[completion]) == [1.0]


@pytest.mark.parametrize("completion", MALFORMED)
def test_malformed_answers_get_no_reward(completion):
    assert format_reward(prompts=["p"], completions=[completion]) == [0.0]
    # never correct either, whatever the gold label
    assert correctness_reward(prompts=["p", "p"], completions=[completion] * 2, label=["0", "1"]) == [0.0, 0.0]


def test_correctness_compares_with_gold_column():
    out = correctness_reward(prompts=["p"] * 4, completions=["1", "0", "1", "0"], label=["1", "1", "0", "0"])
    assert out == [1.0, 0.0, 0.0, 1.0]


def test_correctness_needs_the_label_column():
    with pytest.raises(ValueError, match="label"):
        correctness_reward(prompts=["p"], completions=["1"])
    with pytest.raises(ValueError, match="labels"):
        correctness_reward(prompts=["p"], completions=["1"], label=["1", "0"])


def test_conversational_completions_are_read():
    conv = [[{"role": "assistant", "content": " 1"}], [{"role": "assistant", "content": "no"}]]
    assert format_reward(prompts=["p", "p"], completions=conv) == [1.0, 0.0]
    assert correctness_reward(prompts=["p", "p"], completions=conv, label=[1, 0]) == [1.0, 0.0]


def test_extra_trl_kwargs_are_accepted():
    kwargs = {"completion_ids": [[1]], "trainer_state": None, "log_extra": None, "qid": ["q"]}
    assert format_reward(prompts=["p"], completions=["1"], **kwargs) == [1.0]
    assert correctness_reward(prompts=["p"], completions=["1"], label=["1"], **kwargs) == [1.0]


def test_label_normalization():
    assert [normalize_label(v) for v in ("1", "0", 1, 0, 2, True, False, "2")] == list("10101101")
    with pytest.raises(ValueError, match="label"):
        normalize_label("maybe")
    assert parse_label("  0 ") == "0" and parse_label("yes") is None
