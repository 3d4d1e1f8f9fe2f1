"""The ProRank ablation: BM25 | zero-shot | stage 1 only | stage 2 only | stage 1 + stage 2.

Every system reranks the same BM25 candidates of the same queries (the first ``max_queries``
judged scifact test queries in natural id order, BM25 top-``top_k``) with the same prompt and
``max_length``, through ``prorank eval``'s code (``prorank.evaluation.job.main``, whose
score cache makes a repeated run free). The final model (stage 1 + stage 2) and the zero-shot
model are then run unchanged on out-of-domain collections.

The shipped recipe's ablation (issue #30): stage 2 alone (the shipped `prorank-smollm2-135m`, which selection kept; trained by
``configs/score-cpu.yaml`` from the base model) against the same stage 2 from stage 1's checkpoint
(``prorank train pipeline --config configs/pipeline-cpu.yaml``), all SciFact test queries and four
other collections, alone and fused, into ``benchmarks/results/pipeline/``::

    PRORANK_DATA_DIR=../shared/data python benchmarks/ablation.py --base null --warmup null \
        --score_only prorank-smollm2-135m --full runs/pipeline-cpu/score/model \
        --max_queries null --max_length 256 --ood '[nfcorpus:dev, cranfield, cacm, med]' \
        --ood_max_queries null --ood_systems '[stage2, stage1+stage2]' --results benchmarks/results/pipeline

The small-recipe ablation at 128 tokens (``benchmarks/results/ablation-128/``) ran with
``--warmup runs/warmup-cpu/model --score_only runs/score-cpu-small-base/model --full
runs/score-cpu-small/model --max_length 128`` (stage 2 there is ``configs/score-cpu-small.yaml``).

Each run writes ``ablation-<dataset>.json`` (in domain) and ``ablation-ood.json`` into ``--results``
and prints the tables as Markdown; p-values are paired randomization tests over the same queries
(against BM25, the zero-shot model and stage 2 alone). Systems whose checkpoint is missing are reported as such, never silently dropped.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from prorank.evaluation.compare import METRICS, SIGNIFICANCE  # noqa: E402


AGAINST = ("BM25", "zero-shot", "stage2", "stage2 fused")  # the p-value columns


@dataclass
class AblationConfig:
    """Which checkpoints fill the rows, and the evaluation protocol shared by all of them."""

    base: str | None = "smollm2-135m-instruct"  # zero-shot row (null: not run)
    warmup: str | None = "runs/warmup-cpu/model"  # stage 1 only
    score_only: str | None = "runs/score-cpu-small-base/model"  # stage 2 from the base model
    full: str | None = "runs/score-cpu-small/model"  # stage 2 from the stage-1 checkpoint
    dataset: str = "scifact"
    split: str = "test"
    max_queries: int | None = 50  # null: all judged queries
    top_k: int = 20
    max_length: int = 256
    batch_size: int | None = None  # pairs per forward pass; None: the device default
    # other collections ("name" or "name:split", split test by default), the chosen systems unchanged
    ood: list[str] = field(default_factory=lambda: ["med"])
    ood_max_queries: int | None = 50
    ood_systems: list[str] = field(default_factory=lambda: ["zero-shot", "stage1+stage2"])
    fusion: str | None = None  # none | interpolate | rrf; None: each checkpoint's dev-tuned fusion
    output: str = "runs/ablation"
    results: str = "benchmarks/results"
    device: str | None = None
    cache: str | None = None  # default: the shared score cache


def _eval(cfg: AblationConfig, dataset: str, model: str, name: str, max_queries: int | None,
          split: str | None = None) -> dict[str, Any]:
    from prorank.evaluation.job import EvalConfig, main

    ecfg = EvalConfig(datasets=[dataset], model=model, top_k=cfg.top_k, split=split or cfg.split, max_queries=max_queries,
                      output=str(Path(cfg.output) / f"{Path(dataset).name}-{name}"), cache=cfg.cache,
                      reranker={"batch_size": cfg.batch_size, "max_length": cfg.max_length, "device": cfg.device,
                                "fusion": cfg.fusion})
    return main(ecfg)


def _row(summary: dict[str, Any], system: str, model: str | None, which: str) -> dict[str, Any]:
    (ds,) = summary["datasets"].values()
    info = summary.get("model") or {}
    meta = info.get("metadata") or {}
    return {
        "system": system,
        "model": model,
        "fingerprint": info.get("fingerprint"),
        "stage": meta.get("stage"),
        "parent": meta.get("parent"),
        "metrics": {m: round(ds["metrics"][which][m], 4) for m in METRICS},
        "rerank": ds.get("rerank") if which == "reranker" else None,
        "fusion": info.get("fusion") if which == "fused" else None,
        "run": which,
        "summary": summary.get("output"),
    }


def run_dataset(cfg: AblationConfig, dataset: str, systems: dict[str, str | None], max_queries: int | None,
                split: str | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for system, model in systems.items():
        if model is None or not (Path(model).exists() or not model.startswith(("runs/", "/", "."))):
            rows.append({"system": system, "model": model, "missing": True})
            continue
        summary = _eval(cfg, dataset, model, system, max_queries, split)
        (ds,) = summary["datasets"].values()
        if not any(r["system"] == "BM25" for r in rows):
            rows.insert(0, _row(summary, "BM25", None, "bm25"))
            info = {"path": ds["path"], "split": ds["split"], "queries": ds["queries"], "files": ds["files"],
                    "index": ds["index"], "provenance": summary["provenance"]}
        rows.append(_row(summary, system, model, "reranker"))
        if "fused" in ds["metrics"]:  # the checkpoint's dev-tuned fusion with BM25
            rows.append(_row(summary, f"{system} fused", model, "fused"))
    if not any(r["system"] == "BM25" for r in rows):  # every checkpoint missing: BM25 alone
        rows.insert(0, _row(_eval(cfg, dataset, "none", "bm25", max_queries, split), "BM25", None, "bm25"))
    significance(rows, Path(dataset).name)
    return {"dataset": dataset, **info, "top_k": cfg.top_k, "max_length": cfg.max_length, "rows": rows,
            "significance": SIGNIFICANCE}


def significance(rows: list[dict[str, Any]], dataset: str) -> None:
    """Add ``p_vs_bm25``, ``p_vs_zero_shot``, ``p_vs_stage2`` and ``p_vs_stage2_fused`` (nDCG@10, paired
    over the same queries) to ``rows``: the last two answer whether stage 1 adds anything to stage 2,
    alone and fused with BM25."""
    from prorank.evaluation.compare import add_pvalues, read_per_query

    per_query = {r["system"]: read_per_query(r["summary"], dataset, r["run"]) for r in rows if r.get("summary")}
    add_pvalues(rows, per_query, AGAINST)


def markdown(table: dict[str, Any]) -> str:
    from prorank.evaluation.compare import markdown as render

    return render(f"{table['dataset']} ({table.get('split')}, {table.get('queries')} queries, BM25 top-{table['top_k']} "
                  f"reranked, max_length {table['max_length']})", table["rows"], AGAINST)


def main(cfg: AblationConfig) -> dict[str, Any]:
    from prorank.atomic import atomic_write_json
    from prorank.config import to_dict

    started = time.time()
    systems = {"zero-shot": cfg.base, "stage1": cfg.warmup, "stage2": cfg.score_only, "stage1+stage2": cfg.full}
    in_domain = run_dataset(cfg, cfg.dataset, systems, cfg.max_queries)
    results = Path(cfg.results)
    name = Path(cfg.dataset).name
    report = {"format": "prorank-ablation-v1", "config": to_dict(cfg), "in_domain": in_domain,
              "seconds": round(time.time() - started, 1)}
    atomic_write_json(results / f"ablation-{name}.json", report)
    print(markdown(in_domain))
    ood = {}
    for spec in cfg.ood:
        dataset, _, split = spec.partition(":")
        chosen = {s: m for s, m in systems.items() if s in cfg.ood_systems}
        ood[spec] = run_dataset(cfg, dataset, chosen, cfg.ood_max_queries, split or "test")
        atomic_write_json(results / "ablation-ood.json", {"format": "prorank-ablation-v1", "config": to_dict(cfg),
                                                         "trained_on": name, "datasets": ood})
        print()
        print(markdown(ood[spec]))
    report["ood"] = ood
    return report


if __name__ == "__main__":
    from prorank.config import config_from_argv

    main(config_from_argv(AblationConfig, sys.argv[1:]))
