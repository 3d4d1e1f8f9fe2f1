"""Fusion of reranker and first-stage scores, and tuning its weight (pure functions)."""

from __future__ import annotations

import pytest

from prorank.fusion import Fusion, descending, interpolate, min_max, ranks, resolve, rrf, tune_weight


def test_min_max_and_interpolate() -> None:
    assert min_max([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert min_max([1.0, 1.0]) == [0.0, 0.0]
    assert min_max([]) == []
    # weight 0 = the reranker alone, 1 = the first stage alone (order-wise)
    rerank, first = [0.1, 0.9, 0.5], [30.0, 10.0, 20.0]
    assert descending(interpolate(rerank, first, 0.0)) == descending(rerank) == [1, 2, 0]
    assert descending(interpolate(rerank, first, 1.0)) == descending(first) == [0, 2, 1]
    assert interpolate([0.0, 2.0], [10.0, 5.0], 0.25) == [0.25, 0.75]


def test_rrf_and_ranks() -> None:
    assert ranks([0.2, 0.9, 0.2]) == [2, 1, 3]  # ties keep input order
    fused = rrf([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], 0.5, k=60)
    assert fused[0] == pytest.approx(fused[2]) and fused[1] == pytest.approx(1 / 62)
    assert descending(rrf([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], 0.0)) == [0, 1, 2]
    assert descending(rrf([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], 1.0)) == [2, 1, 0]


def test_fusion_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="fusion must be one of"):
        Fusion("sum", 0.5)
    for bad in (-0.1, 1.5, True, "0.3"):
        with pytest.raises(ValueError, match="fusion_weight"):
            Fusion("interpolate", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 documents"):
        Fusion("interpolate", 0.5).fuse([1.0, 2.0], [1.0])
    assert Fusion().fuse([1.0, 2.0], [5.0, 0.0]) == [1.0, 2.0]  # none: the model's scores


def test_resolve_takes_the_checkpoint_default_unless_told() -> None:
    meta = {"fusion": {"method": "interpolate", "weight": 0.35}}
    assert resolve(meta) == Fusion("interpolate", 0.35)
    assert resolve(meta, weight=0.1) == Fusion("interpolate", 0.1)
    assert resolve(meta, "none") == Fusion()
    assert resolve(meta, "rrf") == Fusion("rrf", 0.5)  # no tuned weight for rrf
    assert resolve({}) == Fusion() and resolve(None, "interpolate") == Fusion("interpolate", 0.5)


def test_tune_weight_finds_the_weight_that_ranks_best() -> None:
    # q1: the reranker is right, the first stage wrong; q2: both agree. Any weight < 0.5 keeps the
    # reranker's order on q1; the smallest weight wins ties.
    lists = {
        "q1": (["a", "b", "c"], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]),
        "q2": (["x", "y"], [2.0, 1.0], [2.0, 1.0]),
    }
    qrels = {"q1": {"a": 1}, "q2": {"x": 1}}
    weight, table = tune_weight(lists, qrels)
    assert weight == 0.0 and table[0.0] == pytest.approx(1.0) and table[1.0] < 1.0
    # flip the truth: now only the first stage is right on q1
    weight, table = tune_weight(lists, {"q1": {"c": 1}, "q2": {"x": 1}})
    assert weight >= 0.5 and table[0.0] < 1.0 and table[weight] == pytest.approx(1.0)
