"""Degenerate documents: nothing for the model to read, so a defined score instead of the model's.

A document is *degenerate* when the text the model would read (title and text, or the fields a
request names) holds no letter and no digit in any script: empty, whitespace only, or only
punctuation and symbols (``""``, ``"   "``, ``"..."``, ``"-- ** --"``). A language model still
gives such a prompt a score, and not a low one: the shipped reranker scores an empty document
4.15 against "what is the capital of France", above "The stock market fell sharply on Tuesday."

So these documents are never sent to the model. Their score is the bottom of every scale:

* raw (``normalize=False``, ``raw_scores: true``): :data:`DEGENERATE_SCORE` (-100.0, a logit
  difference no real document comes near: the shipped model's raw scores of every BM25 top-20
  candidate of its dev queries, SciFact test and MED lie between -0.4 and 16.7,
  ``benchmarks/results/calibration-prorank-smollm2-135m.json``);
* ``"sigmoid"`` and ``"calibrated"``: exactly 0.0;
* fused with first-stage scores: 0.0, and the fusion's min-max runs over the other documents only.

and they rank after every other document (among themselves in input order), whatever the scale.
This module imports neither torch nor the model: the service's ingress uses it too.
"""

from __future__ import annotations

from typing import Sequence

from prorank.fusion import Fusion, descending

DEGENERATE_SCORE = -100.0  # the raw score of a degenerate document


def is_degenerate(text: str) -> bool:
    """Whether ``text`` has no letter or digit (``str.isalnum`` over every script)."""
    return not any(ch.isalnum() for ch in text)


def ranking(scores: Sequence[float], degenerate: Sequence[bool]) -> list[int]:
    """Indices best first: the other documents by ``scores`` (ties in input order), then the
    degenerate ones in input order."""
    order = descending(scores)
    return [i for i in order if not degenerate[i]] + [i for i in order if degenerate[i]]


def fuse(fusion: Fusion, scores: Sequence[float], first_stage: Sequence[float],
         degenerate: Sequence[bool]) -> list[float]:
    """``fusion`` of the model's raw ``scores`` with ``first_stage`` over the documents that are
    not degenerate (so a degenerate one does not stretch the min-max); degenerate ones get 0.0."""
    real = [i for i, flag in enumerate(degenerate) if not flag]
    fused = [0.0] * len(scores)
    for i, value in zip(real, fusion.fuse([scores[i] for i in real], [first_stage[i] for i in real])):
        fused[i] = value
    return fused


def ranked(raw: Sequence[float], shown: Sequence[float], degenerate: Sequence[bool],
           fusion: Fusion | None = None, first_stage: Sequence[float] | None = None) -> tuple[list[float], list[int]]:
    """The scores a ranking reports and its order (indices, best first). With an active
    ``fusion`` and ``first_stage`` scores: the fusion of the ``raw`` model scores (as its weight
    was tuned), in fused order; else ``shown`` (the raw scores on the caller's scale) in the order
    of the raw ones, so every scale ranks alike. Degenerate documents come last either way."""
    if fusion is not None and fusion.active and first_stage is not None:
        fused = fuse(fusion, raw, first_stage, degenerate)
        return fused, ranking(fused, degenerate)
    return list(shown), ranking(raw, degenerate)
