"""Calibration: the probability that a document is relevant, from a reranker's raw score.

The raw score ``s = logit("1") - logit("0")`` ranks well, but its level means nothing: stage 2's
listwise and KL losses do not change when every score of a query moves by the same amount, so
``sigmoid(s)`` is not a probability (the shipped model gives an empty document 0.98). A
:class:`Calibration` is Platt scaling::

    P(relevant | s) = sigmoid(a * s + b),   a > 0

fitted by maximum likelihood on judged ``(score, label)`` pairs of dev queries (the checkpoint's
dev queries, BM25 top-20: the evaluation's depth). It is strictly increasing, so no ranking
changes. Platt was chosen over a temperature alone (``b = 0``: cannot move the level, which is
what is wrong) and isotonic regression (a step function: ties, and it overfits a few hundred
positives); ``benchmarks/calibration.py`` measures the three on dev queries (docs/calibration.md).

:func:`fit_calibration` is a plain function of ``(scores, labels)``: ``prorank calibrate`` and a
training stage that already has its dev scores call it the same way. A calibration is stored

* in a checkpoint's ``prorank.json`` under ``"calibration"`` (:func:`store_in_checkpoint`), where
  ``Reranker.from_pretrained`` finds it, or
* in a file of its own (:meth:`Calibration.save`), for a model whose folder is read-only or has no
  ``prorank.json`` (a base model, a hub model): ``Reranker.from_pretrained(m, calibration=FILE)``;
  such a file names the model fingerprint it was fitted for and is refused for another.

Both hold the same JSON object: ``format`` (``prorank-calibration-v1``), ``method``, ``a``,
``b``, ``fitted_on`` (the data), ``model`` and ``created``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from prorank.atomic import atomic_write_json

__all__ = ["CALIBRATION_FORMAT", "Calibration", "check_normalize", "fit_calibration", "fit_platt",
           "missing_calibration", "sigmoid", "store_in_checkpoint"]

CALIBRATION_FORMAT = "prorank-calibration-v1"
METHODS = ("platt",)
NORMALIZE_CHOICES = ('"calibrated"', '"sigmoid"', "false")


def sigmoid(x: float) -> float:
    """``1 / (1 + exp(-x))`` without overflow for any float."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def check_normalize(value: Any, where: str = "normalize") -> Any:
    """``value`` if it names a score scale: ``False`` (raw), ``"sigmoid"`` (``True`` means the same,
    as before there were calibrations) or ``"calibrated"``; else a ``ValueError`` naming ``where``."""
    if value is False or value is True or (isinstance(value, str) and value in ("sigmoid", "calibrated")):
        return value
    raise ValueError(f"{where} must be one of {', '.join(NORMALIZE_CHOICES)} (true means \"sigmoid\"), "
                     f"got {value!r}")


def missing_calibration(model: str) -> ValueError:
    """The error for ``normalize="calibrated"`` on a model that has no calibration."""
    return ValueError(
        f'normalize="calibrated": {model} has no calibration. Fit one on judged dev queries with '
        f"`prorank calibrate {model}` (a checkpoint: stored in its prorank.json; any other model: add "
        f"--dataset NAME:SPLIT --output FILE and load it with calibration=FILE), or use "
        f'normalize="sigmoid" or false'
    )


@dataclass(frozen=True)
class Calibration:
    """``P(relevant | s) = sigmoid(a * s + b)`` for a raw score ``s``; ``a > 0``."""

    a: float
    b: float
    method: str = "platt"
    fitted_on: dict[str, Any] = field(default_factory=dict)  # the data: collections, queries, pairs, positives
    model: dict[str, Any] = field(default_factory=dict)  # what scored it: name, fingerprint, max_length
    created: str = ""
    format: str = CALIBRATION_FORMAT

    def __post_init__(self) -> None:
        if self.format != CALIBRATION_FORMAT:
            raise ValueError(f"calibration format {self.format!r} is not {CALIBRATION_FORMAT!r}; "
                             "refit it with `prorank calibrate`")
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {list(METHODS)}, got {self.method!r}")
        for name in ("a", "b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"calibration {name} must be a finite number, got {value!r}")
        if self.a <= 0:
            raise ValueError(f"calibration slope a must be > 0 (a monotone map that keeps the ranking), got {self.a}")

    def probability(self, score: float) -> float:
        """P(relevant) of one raw score."""
        return sigmoid(self.a * float(score) + self.b)

    def probabilities(self, scores: Sequence[float]) -> list[float]:
        return [self.probability(s) for s in scores]

    @property
    def threshold_score(self) -> float:
        """The raw score whose probability is 0.5 (``-b / a``)."""
        return -self.b / self.a

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "method": self.method, "a": self.a, "b": self.b,
                "fitted_on": self.fitted_on, "model": self.model, "created": self.created}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "calibration") -> "Calibration":
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a calibration is a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown calibration key(s) {unknown}; known: {sorted(known)}")
        for key in ("a", "b"):
            if key not in data:
                raise ValueError(f"{source}: calibration needs {key!r}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None, source: str = "prorank.json") -> "Calibration | None":
        """The ``calibration`` block of a checkpoint's ``prorank.json``, or None when it has none."""
        block = (metadata or {}).get("calibration")
        return None if block is None else cls.from_dict(block, f"{source}: calibration")

    def save(self, path: str | Path) -> Path:
        """Write this calibration as a JSON file of its own (atomically)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        """A calibration file written by :meth:`save` (``prorank calibrate --output``)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"calibration file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err})") from None
        return cls.from_dict(data, str(path))


def _check_pairs(scores: Sequence[float], labels: Sequence[Any]) -> tuple[list[float], list[int]]:
    xs = [float(s) for s in scores]
    if len(xs) != len(labels):
        raise ValueError(f"calibration data: {len(xs)} scores but {len(labels)} labels")
    if not xs:
        raise ValueError("calibration data is empty: no (score, label) pairs")
    bad = next((i for i, x in enumerate(xs) if not math.isfinite(x)), None)
    if bad is not None:
        raise ValueError(f"calibration data: score {bad} is not finite ({xs[bad]})")
    ys = []
    for i, y in enumerate(labels):
        if y not in (0, 1):
            raise ValueError(f"calibration data: label {i} must be 0 or 1, got {y!r}")
        ys.append(int(y))
    positives = sum(ys)
    if positives == 0:
        raise ValueError(f"calibration data has no relevant pairs (0 of {len(ys)} labelled 1): a fit would "
                         "map every score to 0; use judged queries whose candidates include relevant documents")
    if positives == len(ys):
        raise ValueError(f"calibration data has no irrelevant pairs (all {len(ys)} labelled 1): a fit would "
                         "map every score to 1; score each query's whole candidate list, not its positives only")
    return xs, ys


def fit_platt(scores: Sequence[float], labels: Sequence[Any], max_iter: int = 100) -> tuple[float, float]:
    """``(a, b)`` of Platt scaling by Newton's method with backtracking (Lin, Lin & Weng 2007), on
    Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` (less overconfident
    than 0/1 on few positives). Raises ``ValueError`` on empty data, a mismatch, a non-finite score,
    or labels of one class only."""
    xs, ys = _check_pairs(scores, labels)
    pos = sum(ys)
    neg = len(ys) - pos
    hi, lo = (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0)
    targets = [hi if y else lo for y in ys]

    def loss(a: float, b: float) -> float:
        total = 0.0
        for x, t in zip(xs, targets):
            z = a * x + b  # -log likelihood, stable: log(1 + e^z) - t z
            total += (z if z > 0 else 0.0) + math.log1p(math.exp(-abs(z))) - t * z
        return total

    a, b = 0.0, math.log((pos + 1.0) / (neg + 1.0))
    current = loss(a, b)
    for _ in range(max_iter):
        g_a = g_b = h_aa = h_ab = h_bb = 0.0
        for x, t in zip(xs, targets):
            p = sigmoid(a * x + b)
            d, w = p - t, max(p * (1.0 - p), 1e-12)
            g_a += d * x
            g_b += d
            h_aa += w * x * x
            h_ab += w * x
            h_bb += w
        h_aa += 1e-12
        h_bb += 1e-12
        det = h_aa * h_bb - h_ab * h_ab
        if abs(g_a) < 1e-9 and abs(g_b) < 1e-9 or det <= 0:
            break
        step_a = (h_bb * g_a - h_ab * g_b) / det
        step_b = (h_aa * g_b - h_ab * g_a) / det
        size = 1.0
        while size > 1e-10:
            new_a, new_b = a - size * step_a, b - size * step_b
            new = loss(new_a, new_b)
            if new < current + 1e-4 * size * (g_a * -step_a + g_b * -step_b):
                break
            size /= 2.0
        else:
            break
        a, b, current = new_a, new_b, new
    return a, b


def fit_calibration(scores: Sequence[float], labels: Sequence[Any], *, fitted_on: Mapping[str, Any] | None = None,
                    model: Mapping[str, Any] | None = None) -> Calibration:
    """Platt scaling of raw ``scores`` to P(``labels`` == 1): every scored candidate of some dev
    queries (label 1 = judged relevant). ``fitted_on`` and ``model`` are recorded as given, with the
    pair and positive counts added. Raises ``ValueError`` for data it cannot fit (see
    :func:`fit_platt`) and when the scores fall as relevance rises (``a <= 0``: no monotone map
    keeps the ranking and fits the data)."""
    xs, ys = _check_pairs(scores, labels)
    a, b = fit_platt(xs, ys)
    if not a > 0:
        raise ValueError(f"calibration data: the scores do not rise with relevance (fitted slope a = {a:.4g}); "
                         "the model ranks these queries worse than chance, so no increasing map fits them")
    record = {**dict(fitted_on or {}), "pairs": len(ys), "positives": sum(ys)}
    return Calibration(a=a, b=b, fitted_on=record, model=dict(model or {}),
                       created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def store_in_checkpoint(folder: str | Path, calibration: Calibration) -> Path:
    """Put ``calibration`` into ``folder/prorank.json`` (rewritten atomically; the rest unchanged)."""
    from prorank.checkpoint import METADATA_FILE, read_metadata

    meta = read_metadata(folder)
    if meta is None:
        raise ValueError(f"{folder} has no {METADATA_FILE}: not a ProRank checkpoint; write the calibration "
                         "to a file of its own (prorank calibrate --output FILE)")
    return atomic_write_json(Path(folder) / METADATA_FILE, {**meta, "calibration": calibration.to_dict()})
