"""Human- and machine-readable outputs of an evaluation: the rich table and per-query files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.table import Table

from prorank.atomic import atomic_write_text
from prorank.evaluation.metrics import METRICS


def write_per_query(path: str | os.PathLike, systems: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Path:
    """TSV ``qid system metric...`` with one row per (query, system), written atomically."""
    lines = ["\t".join(("qid", "system", *METRICS))]
    for system, per_query in systems.items():
        for qid, values in per_query.items():
            lines.append("\t".join((qid, system, *(f"{values[m]:.6f}" for m in METRICS))))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {m: after[m] - before[m] for m in METRICS}


def _fmt_delta(value: float) -> str:
    colour = "green" if value > 0 else "red" if value < 0 else "white"
    return f"[{colour}]{value:+.4f}[/{colour}]"


def system_label(system: str, model: Mapping[str, Any] | None) -> str:
    if system == "reranker":
        label = (model or {}).get("name") or "reranker"
        return label if len(label) <= 28 else "…" + label[-27:]
    if system == "fused":
        fusion = (model or {}).get("fusion") or {}
        return f"fused ({fusion.get('method')}, w={fusion.get('weight')})"
    return {"bm25": "BM25", "hybrid": "hybrid (BM25 + dense)", "run": "first-stage run file"}.get(system, system)


SYSTEMS = ("bm25", "hybrid", "run", "reranker", "fused")


def results_table(summary: Mapping[str, Any]) -> Table:
    """Every system side by side, each with its difference to BM25, per dataset and averaged."""
    model = summary.get("model")
    title = f"BM25 vs {(model or {}).get('name') or 'reranker'} (top-{summary['top_k']})" if model else "BM25"
    table = Table(title=title, show_lines=False)
    table.add_column("dataset")
    table.add_column("queries", justify="right")
    table.add_column("system")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    rows: list[tuple[str, str, Mapping[str, Any]]] = [
        (name, str(entry["queries"]), entry["metrics"]) for name, entry in summary["datasets"].items()
    ]
    if len(rows) > 1:
        rows.append(("average", "", summary["average"]))
    for index, (name, queries, metrics) in enumerate(rows):
        systems = [s for s in SYSTEMS if s in metrics]
        for k, system in enumerate(systems):
            cells = [f"{metrics[system][m]:.4f}" for m in METRICS]
            if system != "bm25":
                cells = [f"{c} {_fmt_delta(metrics[system][m] - metrics['bm25'][m])}" for c, m in zip(cells, METRICS)]
            table.add_row(name if k == 0 else "", queries if k == 0 else "", system_label(system, model), *cells,
                          end_section=k == len(systems) - 1 and index < len(rows) - 1)
    return table


def print_table(summary: Mapping[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(results_table(summary))


def print_throughput(summary: Mapping[str, Any], console: Console) -> None:
    """One line per scoring worker (the local process, or each Ray actor) and dataset."""
    for name, entry in summary["datasets"].items():
        stats = entry.get("rerank") or {}
        for worker, numbers in (stats.get("workers") or {}).items():
            rate = numbers["pairs_per_second"]
            console.print(f"{name}: {worker}: {numbers['pairs']} pairs in {numbers['model_seconds']:.1f} s of model "
                          f"time ({'-' if rate is None else f'{rate:.1f}'} pairs/s)")
        if stats:
            console.print(f"{name}: {stats['scored']} pairs scored, {stats['cached']} from the cache, "
                          f"{stats['wall_seconds']:.1f} s reranking ({stats['engine']} engine)")
