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


def results_table(summary: Mapping[str, Any]) -> Table:
    """BM25 and the reranker side by side, with the difference, per dataset and averaged."""
    model = summary.get("model")
    label = (model or {}).get("name") or "reranker"
    title = f"BM25 vs {label} (top-{summary['top_k']})" if model else "BM25"
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
        table.add_row(name, queries, "BM25", *(f"{metrics['bm25'][m]:.4f}" for m in METRICS),
                      end_section=not model)
        if model:
            short = label if len(label) <= 28 else "…" + label[-27:]
            table.add_row("", "", short, *(f"{metrics['reranker'][m]:.4f}" for m in METRICS))
            table.add_row("", "", "Δ", *(_fmt_delta(metrics["delta"][m]) for m in METRICS),
                          end_section=index < len(rows) - 1)
    return table


def print_table(summary: Mapping[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(results_table(summary))
