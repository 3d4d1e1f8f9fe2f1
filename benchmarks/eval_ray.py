"""``prorank eval --engine local`` vs ``--engine ray``: the same metrics, and what Ray costs.

One command, one process: the same SciFact queries (the first ``max_queries`` judged test
queries, BM25 top-``top_k``) reranked by the same model through ``prorank eval``'s code, first
with the local engine, then on a local Ray with ``actors`` CPU actors, each with a fresh score
cache of its own (neither reads the other's scores). Run from the repository root::

    PRORANK_DATA_DIR=../shared/data OMP_WAIT_POLICY=PASSIVE python benchmarks/eval_ray.py
    python benchmarks/eval_ray.py --max_queries 30 --actors 2 --output benchmarks/results/eval-ray-scifact.json

writes ``benchmarks/results/eval-ray-scifact.json``: both summaries' metrics, the largest score
difference between the two runs, and pairs/s of each (over the whole reranking pass, which for
Ray includes starting the actors and loading the model in each, and over model time), with the
Ray engine's overhead relative to the local one. On a machine with as many cores as the local
engine already uses, no speed-up is expected: the numbers show correctness and overhead.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class EvalRayConfig:
    model: str = "prorank-smollm2-135m"  # the shipped reranker
    dataset: str = "scifact"
    max_queries: int = 10  # first N judged test queries (natural id order)
    top_k: int = 10  # BM25 candidates reranked per query
    actors: int = 2  # Ray actors (1 CPU each)
    repeats: int = 1  # runs of each engine, alternating (local, ray, local, ...); medians reported
    data_dir: str | None = None
    work: str = "runs/eval-ray"  # run folders and the two fresh score caches
    output: str = "benchmarks/results/eval-ray-scifact.json"


def _engine(cfg: EvalRayConfig, engine: str) -> dict[str, Any]:
    from prorank.evaluation.job import EvalConfig, main

    work = Path(cfg.work) / engine
    shutil.rmtree(work, ignore_errors=True)  # a fresh cache: every pair is scored by this engine
    extra = {"engine": "ray", "actors": cfg.actors} if engine == "ray" else {}
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    summary = main(EvalConfig(datasets=[cfg.dataset], model=cfg.model, top_k=cfg.top_k, depth=cfg.top_k,
                              max_queries=cfg.max_queries, data_dir=cfg.data_dir, output=str(work / "run"),
                              cache=str(work / "scores.sqlite"), **extra))
    seconds = time.perf_counter() - began
    rerank = summary["datasets"][Path(cfg.dataset).name]["rerank"]
    workers = rerank["workers"]
    return {
        "engine": engine,
        "metrics": {s: {m: round(v, 4) for m, v in summary["datasets"][Path(cfg.dataset).name]["metrics"][s].items()}
                    for s in ("bm25", "reranker", "fused") if s in summary["datasets"][Path(cfg.dataset).name]["metrics"]},
        "pairs": rerank["pairs"], "scored": rerank["scored"], "cached": rerank["cached"],
        "rerank_wall_seconds": rerank["wall_seconds"],
        "pairs_per_second_wall": rerank["wall_pairs_per_second"],
        # all workers together, each at its own model-time rate (they run side by side)
        "pairs_per_second_model": round(sum(w["pairs_per_second"] or 0.0 for w in workers.values()), 3),
        "workers": workers,
        "job_seconds": round(seconds, 3),  # model loading, BM25, reranking, metrics
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after (other work)
        "ray": summary["provenance"]["ray"],
        "model": {k: summary["model"][k] for k in ("name", "fingerprint", "device", "dtype", "batch_size",
                                                    "max_length")},
        "run": str(work / "run" / Path(cfg.dataset).name / "rerank.trec"),
    }


def _largest_difference(local_run: str, ray_run: str) -> float:
    from prorank.evaluation.trec import read_run

    a, b = read_run(local_run), read_run(ray_run)
    if a.keys() != b.keys() or any(a[q].keys() != b[q].keys() for q in a):
        raise RuntimeError("the two engines ranked different candidates")
    return max(abs(a[q][d] - b[q][d]) for q in a for d in a[q])


def main(cfg: EvalRayConfig) -> dict[str, Any]:
    from prorank.atomic import atomic_write_json
    from prorank.config import to_dict
    from prorank.evaluation import provenance

    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    difference = 0.0
    for _ in range(cfg.repeats):
        for engine in runs:
            runs[engine].append(_engine(cfg, engine))
        difference = max(difference, _largest_difference(runs["local"][-1].pop("run"), runs["ray"][-1].pop("run")))
    equal = all(r["metrics"] == runs["local"][0]["metrics"] for rows in runs.values() for r in rows)
    median = {engine: {key: statistics.median(r[key] for r in rows) for key in
                       ("pairs_per_second_wall", "pairs_per_second_model", "rerank_wall_seconds", "job_seconds")}
              for engine, rows in runs.items()}

    def overhead(key: str) -> float | None:
        local, ray = median["local"][key], median["ray"][key]
        return round(1 - ray / local, 4) if local and ray else None

    report = {
        "format": "prorank-eval-ray-v1",
        "command": " ".join([f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY",) if k in os.environ]
                            + ["python", *sys.argv]),
        "date": provenance.now_utc(),
        "git": provenance.git_state(),
        "machine": {**provenance.hardware("cpu"), "python": platform.python_version()},
        "versions": {**provenance.versions(), "ray": _version("ray"), "pyarrow": _version("pyarrow")},
        "config": to_dict(cfg),
        "metrics": runs["local"][0]["metrics"],
        "metrics_equal_to_4_decimals": equal,  # every run of both engines
        "largest_score_difference": difference,  # |local - ray| over every reranked pair, each repeat
        "median": median,
        "ray_overhead": {  # 1 - ray pairs/s / local pairs/s, medians (negative: Ray was faster)
            "wall": overhead("pairs_per_second_wall"), "model_time": overhead("pairs_per_second_model")},
        "runs": runs,
    }
    atomic_write_json(cfg.output, report)
    print(f"metrics equal to 4 decimals: {equal}; largest score difference {report['largest_score_difference']:.3g}")
    for engine, row in median.items():
        print(f"{engine:>5} (median of {cfg.repeats}): {row['pairs_per_second_wall']} pairs/s over the reranking "
              f"pass ({row['rerank_wall_seconds']} s), {row['pairs_per_second_model']} pairs/s over model time, "
              f"job {row['job_seconds']} s")
    print(f"ray overhead: {report['ray_overhead']}; written to {cfg.output}")
    return report


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    from prorank.config import config_from_argv

    main(config_from_argv(EvalRayConfig, sys.argv[1:]))
