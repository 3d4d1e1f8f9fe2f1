"""Verifiable rewards for the stage-1 GRPO warmup, with TRL's reward-function signature.

TRL calls each reward as ``f(prompts=..., completions=..., completion_ids=..., **columns)`` where
``columns`` are the dataset's extra columns (here ``label``, the gold answer ``"0"`` or ``"1"``)
and returns one float per completion. Completions are the decoded generated text (special tokens
such as the end-of-turn token already removed), or chat messages for conversational datasets.

* ``format_reward``: 1.0 when the stripped completion is exactly one allowed label, else 0.0.
* ``correctness_reward``: 1.0 when the stripped completion equals the gold label, else 0.0
  (a malformed answer is never correct, so the model cannot earn it with "1 because ...").

* ``label_one_reward`` (a diagnostic, never trained on): 1.0 when the answer is ``1``. The warmup
  always passes it with weight 0, so TRL logs the share of sampled answers that say ``1``
  (``rewards/label_one_reward/mean``: a collapse onto one label shows as 0 or 1).

Their weights live in the warmup config (``reward_weights``) and are handed to TRL's
``GRPOConfig.reward_weights``.
"""

from __future__ import annotations

from typing import Any, Sequence

from prorank.prompt import LABELS

__all__ = ["completion_text", "parse_label", "format_reward", "correctness_reward", "label_one_reward",
           "normalize_label", "REWARDS"]


def completion_text(completion: Any) -> str:
    """Text of one completion: a string, or the last message's ``content`` of a conversation.

    >>> completion_text(" 1\\n")
    ' 1\\n'
    >>> completion_text([{"role": "assistant", "content": "0"}])
    '0'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    if isinstance(completion, dict):
        content = completion.get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def parse_label(completion: Any, labels: Sequence[str] = LABELS) -> str | None:
    """The answer label if the stripped completion is exactly one of ``labels``, else ``None``.

    >>> parse_label("1"), parse_label(" 0\\n"), parse_label("")
    ('1', '0', None)
    >>> parse_label("1 because the document matches"), parse_label("yes"), parse_label("10")
    (None, None, None)
    """
    text = completion_text(completion).strip()
    return text if text in labels else None


def format_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for each completion that is, stripped, exactly one allowed label; 0.0 otherwise.

    >>> format_reward(prompts=[""] * 6, completions=["1", " 0 ", "", "1 because...", "yes", "10"])
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    return [1.0 if parse_label(c) is not None else 0.0 for c in completions]


def correctness_reward(
    prompts: Sequence[Any], completions: Sequence[Any], label: Sequence[Any] | None = None, **kwargs: Any
) -> list[float]:
    """1.0 for each completion whose parsed label equals the gold ``label`` column; 0.0 otherwise.

    Gold labels may be given as ``"0"``/``"1"``, ints or bools.

    >>> correctness_reward(prompts=[""] * 6, completions=["1", "0", "1 because...", "", "yes", "10"],
    ...                    label=["1", "1", "1", "0", "1", "1"])
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    >>> correctness_reward(prompts=["", ""], completions=["0", "1"], label=[0, True])
    [1.0, 1.0]
    """
    if label is None:
        raise ValueError("correctness_reward needs the gold answers in a dataset column named 'label'")
    if len(label) != len(completions):
        raise ValueError(f"correctness_reward: {len(completions)} completions but {len(label)} labels")
    gold = [normalize_label(g) for g in label]
    return [1.0 if parse_label(c) == g else 0.0 for c, g in zip(completions, gold)]


def label_one_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 for each completion that answers exactly ``1``, else 0.0 (a diagnostic: weight 0).

    >>> label_one_reward(prompts=[""] * 4, completions=["1", " 0", "1 because", ""])
    [1.0, 0.0, 0.0, 0.0]
    """
    return [1.0 if parse_label(c) == "1" else 0.0 for c in completions]


def normalize_label(value: Any) -> str:
    """Gold label as ``"0"`` or ``"1"`` (accepts ints, bools and graded relevance > 0 as ``"1"``).

    >>> normalize_label(2), normalize_label("0"), normalize_label(False)
    ('1', '0', '0')
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return "1" if value > 0 else "0"
    if isinstance(value, str) and value.strip() in LABELS:
        return value.strip()
    if isinstance(value, str):
        try:
            return "1" if float(value) > 0 else "0"
        except ValueError:
            pass
    raise ValueError(f"label must be 0/1 (or a relevance grade), got {value!r}")


# name -> function; the warmup config's reward_weights keys must be among these
REWARDS = {"format": format_reward, "correctness": correctness_reward, "label_one": label_one_reward}
