"""A stage-2 checkpoint's fusion with BM25, re-tuned on its own dev queries at a chosen depth.

Training tunes the fusion weight it saves on the dev queries it held out (``dev`` in its config,
BM25 top-``dev_top_k``). This script rebuilds exactly those dev queries from the checkpoint's saved
config (same seeded hold-out), reranks their BM25 top-``top_k`` with the checkpoint, and prints
nDCG@10 for every fusion weight and method (``interpolate``, ``rrf``), over all dev queries and per
collection. It reads only dev queries (never test), writes nothing into the checkpoint.

    PRORANK_DATA_DIR=../shared/data python benchmarks/dev_fusion.py --top_k 20 \\
        --out benchmarks/results/dev-fusion-prorank-smollm2-135m.json

(``dev-fusion-prorank-smollm2-135m-dev30.json`` there is the previous shipped adapter's.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # the repository (this file: benchmarks/archive/)
sys.path.insert(0, str(REPO))
from prorank.atomic import atomic_write_json  # noqa: E402
from prorank.evaluation.provenance import git_state, hardware, now_utc, versions  # noqa: E402


def dev_fusion(model: str, top_k: int, data_dir: str | None = None, max_length: int | None = None) -> dict[str, Any]:
    """Fusion tables (weight -> dev nDCG@10) per method, over all dev queries and per collection."""
    from prorank.fusion import GRID, tune_weight
    from prorank.reranker import Reranker
    from prorank.train.devset import build_devset, score_lists
    from prorank.train.sources import DataSource, load_sources

    reranker = Reranker.from_pretrained(model, max_length=max_length)
    config = reranker.metadata.get("config") or {}
    if not config.get("dev"):
        raise ValueError(f"{model}: its prorank.json names no dev queries (config.dev); not a stage-2 checkpoint?")
    train = [DataSource(**d) for d in config.get("datasets", [])]
    dev_specs = [DataSource(**d) for d in config["dev"]]
    _, dev_sources = load_sources(train, dev_specs, data_dir or config.get("data_dir"), config.get("seed", 0))
    dev = build_devset(dev_sources, top_k)
    lists, qrels = score_lists(reranker, dev, config.get("instruction"))
    subsets = {"all": list(lists)} | {c.name: [f"{c.name}/{q}" for q in c.qids] for c in dev.collections}
    out: dict[str, Any] = {"queries": {k: len(v) for k, v in subsets.items()}, "saved_fusion": reranker.metadata.get("fusion")}
    for name, keys in subsets.items():
        sub, sub_qrels = {k: lists[k] for k in keys}, {k: qrels[k] for k in keys}
        out[name] = {"model_alone": round(tune_weight(sub, sub_qrels, "none", (0.0,))[1][0.0], 4)}
        for method in ("interpolate", "rrf"):
            best, table = tune_weight(sub, sub_qrels, method, GRID)
            out[name][method] = {"best_weight": best, "best_ndcg@10": round(table[best], 4),
                                 "ndcg@10_by_weight": {str(w): round(v, 4) for w, v in table.items()}}
        out[name]["bm25_alone"] = out[name]["interpolate"]["ndcg@10_by_weight"]["1.0"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="prorank-smollm2-135m", help="stage-2 checkpoint (alias or folder)")
    parser.add_argument("--top_k", type=int, default=20, help="BM25 candidates reranked per dev query")
    parser.add_argument("--max_length", type=int, default=None)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", default=None, help="JSON file (default: print only)")
    args = parser.parse_args(argv)
    result = dev_fusion(args.model, args.top_k, args.data_dir, args.max_length)
    print("| dev queries | model alone | BM25 | interpolate: best weight (nDCG@10) | rrf: best weight (nDCG@10) |")
    print("|---|---|---|---|---|")
    for name, n in result["queries"].items():
        r = result[name]
        print(f"| {name} ({n}) | {r['model_alone']} | {r['bm25_alone']} | {r['interpolate']['best_weight']} "
              f"({r['interpolate']['best_ndcg@10']}) | {r['rrf']['best_weight']} ({r['rrf']['best_ndcg@10']}) |")
    record = {"command": " ".join(["python", "benchmarks/dev_fusion.py", *(argv if argv is not None else sys.argv[1:])]),
              "date": now_utc(), "git": git_state(REPO), "machine": hardware(), "versions": versions(),
              "model": args.model, "top_k": args.top_k, **result}
    if args.out:
        atomic_write_json(args.out, record)
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
