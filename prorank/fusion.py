"""Fusing a reranker's scores with first-stage (BM25) scores, and tuning the fusion weight.

Pure functions over one query's candidate list (scores in candidate order):

``interpolate``
    ``w * minmax(first) + (1 - w) * minmax(rerank)`` -- both score lists min-max normalised over
    the candidates, ``w`` the weight of the first stage (0 = reranker alone, 1 = first stage alone).
``rrf``
    weighted reciprocal rank fusion: ``w / (k + rank_first) + (1 - w) / (k + rank_rerank)``
    (ranks from 1; Cormack et al. 2009 use ``k = 60``).

A :class:`Fusion` names the method and weight. ``tune_weight`` picks the weight with the best
mean nDCG@10 over a grid on *dev* queries; ProRank stores the result in a checkpoint's
``prorank.json`` (``fusion``) and uses it by default wherever that checkpoint is loaded. The same
``interpolate`` makes the stage-2 teacher (dense cosine fused with BM25).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

METHODS = ("none", "interpolate", "rrf")
RRF_K = 60
GRID = tuple(round(i / 20, 2) for i in range(21))  # 0.0, 0.05, ..., 1.0


@dataclass(frozen=True)
class Fusion:
    """How reranker and first-stage scores are combined; ``weight`` is the first stage's share."""

    method: str = "none"
    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"fusion must be one of {list(METHODS)}, got {self.method!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"fusion_weight must be a number in [0, 1], got {self.weight!r}")

    @property
    def active(self) -> bool:
        return self.method != "none"

    def fuse(self, rerank: Sequence[float], first_stage: Sequence[float]) -> list[float]:
        """Fused scores of one candidate list (higher is better), in input order."""
        if len(rerank) != len(first_stage):
            raise ValueError(f"first-stage scores: {len(first_stage)} values for {len(rerank)} documents")
        if self.method == "interpolate":
            return interpolate(rerank, first_stage, self.weight)
        if self.method == "rrf":
            return rrf(rerank, first_stage, self.weight)
        return [float(x) for x in rerank]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Fusion":
        data = data or {}
        return cls(method=data.get("method", "none"), weight=float(data.get("weight", 0.0)))


def resolve(metadata: Mapping[str, Any] | None, method: str | None = None, weight: float | None = None) -> Fusion:
    """The fusion to use: the checkpoint's (``prorank.json`` ``fusion``, tuned on dev queries)
    unless ``method``/``weight`` say otherwise; a method without a tuned weight gets 0.5."""
    saved = Fusion.from_dict((metadata or {}).get("fusion"))
    chosen = method if method is not None else saved.method
    if weight is None:
        weight = saved.weight if chosen == saved.method and saved.active else 0.5
    return Fusion(chosen, float(weight)) if chosen != "none" else Fusion()


def min_max(values: Sequence[float]) -> list[float]:
    """Scale to [0, 1] over the list; a constant list maps to zeros."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high <= low:
        return [0.0 for _ in values]
    return [(float(v) - low) / (high - low) for v in values]


def interpolate(rerank: Sequence[float], first_stage: Sequence[float], weight: float) -> list[float]:
    """``weight * minmax(first_stage) + (1 - weight) * minmax(rerank)``.

    >>> interpolate([0.0, 2.0], [10.0, 5.0], 0.25)
    [0.25, 0.75]
    """
    return [weight * f + (1.0 - weight) * r for r, f in zip(min_max(rerank), min_max(first_stage))]


def descending(values: Sequence[float]) -> list[int]:
    """Indices of ``values`` best first; ties keep input order (ProRank's one ranking order).

    >>> descending([0.5, 2.0, 0.5])
    [1, 0, 2]
    """
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def ranks(values: Sequence[float]) -> list[int]:
    """1-based rank of each value, highest first; ties keep input order."""
    out = [0] * len(values)
    for rank, i in enumerate(descending(values), start=1):
        out[i] = rank
    return out


def rrf(rerank: Sequence[float], first_stage: Sequence[float], weight: float, k: int = RRF_K) -> list[float]:
    """Weighted reciprocal rank fusion.

    >>> [round(x, 5) for x in rrf([1.0, 0.0], [0.0, 1.0], 0.5, k=1)]
    [0.41667, 0.41667]
    """
    return [weight / (k + f) + (1.0 - weight) / (k + r) for r, f in zip(ranks(rerank), ranks(first_stage))]


def tune_weight(
    lists: Mapping[str, tuple[Sequence[str], Sequence[float], Sequence[float]]],
    qrels: Mapping[str, Mapping[str, int]],
    method: str = "interpolate",
    grid: Sequence[float] = GRID,
) -> tuple[float, dict[float, float]]:
    """The weight of ``grid`` with the best mean nDCG@10 over ``lists`` (qid -> (docids, rerank
    scores, first-stage scores)), ties to the smaller weight; also every weight's nDCG@10."""
    from prorank.evaluation.metrics import evaluate, mean_metrics

    if not lists:
        raise ValueError("tune_weight needs at least one query")
    table: dict[float, float] = {}
    for weight in grid:
        fusion = Fusion(method, float(weight))
        run = {q: dict(zip(ids, fusion.fuse(r, f))) for q, (ids, r, f) in lists.items()}
        table[float(weight)] = mean_metrics(evaluate(qrels, run, list(lists)))["nDCG@10"]
    best = max(table, key=lambda w: (table[w], -w))
    return best, table
