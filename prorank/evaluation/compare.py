"""Comparison tables of several systems on the same queries, with paired p-values.

Used by the benchmark scripts (``benchmarks/quality.py``, ``benchmarks/ablation.py``): each row
is ``{"system", "metrics": {nDCG@10, MRR@10, Recall@100, MAP}, ...}``; ``add_pvalues`` adds
``p_vs_<other>`` from the two-sided paired randomization test on per-query nDCG@10
(``prorank.evaluation.significance``) and ``markdown`` renders the table.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from prorank.evaluation.significance import paired_randomization_test

METRICS = ("nDCG@10", "MRR@10", "Recall@100", "MAP")
SIGNIFICANCE = "two-sided paired randomization test on per-query nDCG@10 (10,000 sign flips, seed 0)"


def read_per_query_metrics(eval_output: str | Path, dataset: str, system: str) -> dict[str, dict[str, float]]:
    """Per-query ``METRICS`` of ``system`` (``bm25``, ``reranker``, ``fused``) from a ``prorank eval``
    output folder's ``<dataset>/per_query.tsv``."""
    with open(Path(eval_output) / dataset / "per_query.tsv", encoding="utf-8", newline="") as f:
        return {r["qid"]: {m: float(r[m]) for m in METRICS} for r in csv.DictReader(f, delimiter="\t")
                if r["system"] == system}


def read_per_query(eval_output: str | Path, dataset: str, system: str) -> dict[str, float]:
    """Per-query nDCG@10 of ``system`` (see ``read_per_query_metrics``)."""
    return {q: m["nDCG@10"] for q, m in read_per_query_metrics(eval_output, dataset, system).items()}


def pvalue_key(system: str) -> str:
    return "p_vs_" + re.sub(r"[^a-z0-9]+", "_", system.lower()).strip("_")


def add_pvalues(rows: list[dict[str, Any]], per_query: Mapping[str, Mapping[str, float]],
                against: Sequence[str]) -> None:
    """Add ``p_vs_<other>`` to each row whose per-query scores are known, for each ``other``."""
    for row in rows:
        mine = per_query.get(row["system"])
        if mine is None:
            continue
        for other in against:
            theirs = per_query.get(other)
            if theirs is None or other == row["system"]:
                continue
            qids = sorted(mine)
            if set(qids) != set(theirs):
                raise ValueError(f"{row['system']} and {other} were not run on the same queries")
            row[pvalue_key(other)] = round(paired_randomization_test([mine[q] for q in qids],
                                                                     [theirs[q] for q in qids]), 4)


def markdown(title: str, rows: Sequence[Mapping[str, Any]], against: Sequence[str]) -> str:
    """A Markdown table: one row per system, the metrics, then a p-value column per ``against``."""
    lines = [title, "", "| system | " + " | ".join(METRICS) + "".join(f" | p vs {a}" for a in against) + " |",
             "|---|" + "---|" * (len(METRICS) + len(against))]
    for row in rows:
        if row.get("missing"):
            lines.append(f"| {row['system']} | " + " | ".join("n/a" for _ in METRICS) + " |" * (len(against) + 1))
            continue
        ps = [f"{row[pvalue_key(a)]:.4f}" if pvalue_key(a) in row else "—" for a in against]
        lines.append(f"| {row['system']} | " + " | ".join(f"{row['metrics'][m]:.4f}" for m in METRICS)
                     + "".join(f" | {p}" for p in ps) + " |")
    return "\n".join(lines)
