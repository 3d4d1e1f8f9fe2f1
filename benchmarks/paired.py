"""Two rerankers (or any systems) on the same queries: mean metrics and paired p-values.

Each system is ``NAME=EVAL_OUTPUT:SYSTEM``: a ``prorank eval`` / ``benchmarks/quality.py`` output
folder (holding ``<dataset>/per_query.tsv``) and the system inside it (``bm25``, ``reranker``,
``fused``). Rows keep the quality JSON's shape (``prorank.evaluation.compare``), every row with
``p_vs_<other>`` against every other row (two-sided paired randomization test on nDCG@10).

    python benchmarks/paired.py --dataset nfcorpus --out benchmarks/results/dev100/selection-nfcorpus-dev.json \\
        BM25=runs/quality-old/nfcorpus-dev-shipped:bm25 \\
        old=runs/quality-old/nfcorpus-dev-shipped:reranker new=runs/quality-new/nfcorpus-dev-shipped:reranker
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prorank.atomic import atomic_write_json
from prorank.evaluation import provenance
from prorank.evaluation.compare import SIGNIFICANCE, add_pvalues, markdown, read_per_query_metrics
from prorank.evaluation.metrics import mean_metrics


def read_system(output: str, dataset: str, system: str) -> dict[str, dict[str, float]]:
    """Per-query metrics (all of ``METRICS``) of ``system`` in an eval output folder."""
    path = Path(output) / dataset / "per_query.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (an eval output folder holds <dataset>/per_query.tsv)")
    rows = read_per_query_metrics(output, dataset, system)
    if not rows:
        raise ValueError(f"{path} holds no rows of system {system!r}")
    return rows


def compare(dataset: str, systems: dict[str, tuple[str, str]]) -> dict:
    per_query = {name: read_system(out, dataset, system) for name, (out, system) in systems.items()}
    rows = [{"system": name, "source": f"{out}:{system}",
             "metrics": {m: round(v, 4) for m, v in mean_metrics(per_query[name]).items()}}
            for name, (out, system) in systems.items()]
    add_pvalues(rows, {n: {q: v["nDCG@10"] for q, v in pq.items()} for n, pq in per_query.items()}, list(systems))
    return {"format": "prorank-paired-v1", "dataset": dataset, "queries": len(next(iter(per_query.values()))),
            "rows": rows, "significance": SIGNIFICANCE, "command": "python " + " ".join(sys.argv),
            "provenance": {"git": provenance.git_state(), "versions": provenance.versions()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="the dataset folder name inside each eval output")
    parser.add_argument("--out", help="JSON file to write")
    parser.add_argument("systems", nargs="+", metavar="NAME=EVAL_OUTPUT:SYSTEM")
    args = parser.parse_args(argv)
    systems = {}
    for spec in args.systems:
        name, sep, rest = spec.partition("=")
        out, sep2, system = rest.rpartition(":")
        if not (sep and sep2 and name and out and system):
            parser.error(f"{spec!r}: expected NAME=EVAL_OUTPUT:SYSTEM")
        systems[name] = (out, system)
    result = compare(args.dataset, systems)
    print(markdown(f"{args.dataset} ({result['queries']} queries)", result["rows"], list(systems)))
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
