"""How well probabilities match outcomes: pure functions over ``(probabilities, labels)``.

``labels`` are 0/1 (1 = judged relevant); ``probabilities`` lie in [0, 1]. Bins are equal-width
over [0, 1], ``bins`` of them; a probability of exactly 1.0 falls in the last bin.

>>> expected_calibration_error([0.1, 0.9], [0, 1], bins=10)
0.1
>>> brier_score([0.0, 1.0], [0, 1])
0.0
"""

from __future__ import annotations

import math
from typing import Any, Sequence

BINS = 10


def _check(probabilities: Sequence[float], labels: Sequence[int]) -> tuple[list[float], list[int]]:
    ps, ys = [float(p) for p in probabilities], [int(y) for y in labels]
    if len(ps) != len(ys):
        raise ValueError(f"{len(ps)} probabilities but {len(ys)} labels")
    if not ps:
        raise ValueError("no (probability, label) pairs")
    if any(not 0.0 <= p <= 1.0 for p in ps):
        raise ValueError("probabilities must lie in [0, 1]")
    if any(y not in (0, 1) for y in ys):
        raise ValueError("labels must be 0 or 1")
    return ps, ys


def reliability_table(probabilities: Sequence[float], labels: Sequence[int], bins: int = BINS) -> list[dict[str, Any]]:
    """Per bin: its range, pair count, mean probability and the share of relevant pairs (the
    points of a reliability diagram; empty bins have ``None`` means)."""
    ps, ys = _check(probabilities, labels)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, p in enumerate(ps):
        members[min(int(p * bins), bins - 1)].append(i)
    table = []
    for k, idx in enumerate(members):
        n = len(idx)
        table.append({"lower": k / bins, "upper": (k + 1) / bins, "count": n,
                      "mean_probability": sum(ps[i] for i in idx) / n if n else None,
                      "positive_rate": sum(ys[i] for i in idx) / n if n else None})
    return table


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[int], bins: int = BINS) -> float:
    """``sum_b n_b / N * |mean probability_b - positive rate_b|`` over equal-width bins."""
    table = reliability_table(probabilities, labels, bins)
    total = sum(row["count"] for row in table)
    return round(sum(row["count"] / total * abs(row["mean_probability"] - row["positive_rate"])
                     for row in table if row["count"]), 12)


def brier_score(probabilities: Sequence[float], labels: Sequence[int]) -> float:
    """Mean squared difference between probability and outcome."""
    ps, ys = _check(probabilities, labels)
    return sum((p - y) ** 2 for p, y in zip(ps, ys)) / len(ps)


def log_loss(probabilities: Sequence[float], labels: Sequence[int], eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the outcomes (probabilities clipped to ``[eps, 1 - eps]``)."""
    ps, ys = _check(probabilities, labels)
    clipped = [min(max(p, eps), 1.0 - eps) for p in ps]
    return -sum(math.log(p) if y else math.log(1.0 - p) for p, y in zip(clipped, ys)) / len(ps)


def threshold_counts(probabilities: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> dict[str, Any]:
    """What a client keeping the pairs with probability above ``threshold`` gets: kept, true and
    false positives, missed relevant pairs, precision (None when nothing is kept) and recall."""
    ps, ys = _check(probabilities, labels)
    tp = sum(1 for p, y in zip(ps, ys) if p > threshold and y)
    fp = sum(1 for p, y in zip(ps, ys) if p > threshold and not y)
    fn = sum(ys) - tp
    return {"threshold": threshold, "kept": tp + fp, "true_positives": tp, "false_positives": fp,
            "missed": fn, "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None}


def calibration_measures(probabilities: Sequence[float], labels: Sequence[int], bins: int = BINS) -> dict[str, Any]:
    """ECE, Brier score, log loss, mean probability and positive rate of one set of pairs."""
    ps, ys = _check(probabilities, labels)
    return {"pairs": len(ps), "positives": sum(ys), "positive_rate": sum(ys) / len(ys),
            "mean_probability": sum(ps) / len(ps), "ece": expected_calibration_error(ps, ys, bins),
            "brier": brier_score(ps, ys), "log_loss": log_loss(ps, ys)}
