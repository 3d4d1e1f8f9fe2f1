"""``prorank eval``: BM25 vs reranker on BEIR datasets (table, TREC runs, provenance JSON)."""

from __future__ import annotations

import argparse

from prorank.options import add_option_flags, options_from_flags
from prorank.registry import DEFAULT_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="evaluate BM25 and a reranker on BEIR datasets",
        description="Retrieve BM25 candidates (k1=0.9, b=0.4), rerank the top-k with MODEL and "
        "report nDCG@10, Recall@100, MRR@10 and MAP (trec_eval semantics) for both, per dataset "
        "and averaged. Writes TREC runs, per-query metrics and summary.json (provenance) under "
        "--output. Scores are cached, so an interrupted run resumes and a repeated one is free. "
        "--model none evaluates BM25 alone.",
    )
    parser.add_argument("--dataset", action="append", required=True, dest="datasets", metavar="PATH_OR_NAME",
                        help="BEIR folder or name (repeatable); names are looked up in --data-dir, "
                        "then downloaded with beir")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias, hub id, folder, checkpoint, or 'none' for BM25 alone (default {DEFAULT_MODEL}, "
                        "the shipped reranker)")
    parser.add_argument("--top-k", type=int, default=100, help="BM25 candidates to rerank (default 100)")
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates retrieved (default 100)")
    parser.add_argument("--split", default="test", help="qrels split (default test)")
    parser.add_argument("--max-queries", type=int, default=None,
                        help="evaluate the first N judged queries (natural id order)")
    parser.add_argument("--output", default=None, help="output folder (default runs/eval-<time>-<model>)")
    parser.add_argument("--summary", default=None, help="also write summary.json to this path")
    parser.add_argument("--data-dir", default=None, help="folder holding datasets by name (default $PRORANK_DATA_DIR)")
    parser.add_argument("--instruction", default=None, help="optional task instruction line")
    parser.add_argument("--first-stage", default="bm25", choices=["bm25", "hybrid"],
                        help="candidates: BM25 alone, or BM25 fused with a dense bi-encoder (pyserini's "
                        "HybridSearcher over all-minilm-l6-v2 vectors) (default bm25)")
    parser.add_argument("--run", default=None, dest="run_file", metavar="TREC_RUN",
                        help="rerank the candidates of this TREC run file (one dataset) instead of BM25's; "
                        "BM25 is still reported beside it")
    parser.add_argument("--k1", type=float, default=0.9)
    parser.add_argument("--b", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=2, help="BM25 threads (default 2)")
    parser.add_argument("--cache", default=None,
                        help="score cache file (default $PRORANK_HOME/cache/scores.sqlite; 'none' disables)")
    parser.add_argument("--exclude-self", action="store_true",
                        help="drop retrieved documents whose id equals the query id")
    parser.add_argument("--strict", action="store_true",
                        help="fail on judgments naming unknown queries or documents")
    parser.add_argument("--engine", default="local", choices=["local", "ray"],
                        help="where pairs are scored: this process, or a Ray Data actor pool of rerankers "
                        "(first stage, score cache and metrics stay here) (default local)")
    parser.add_argument("--address", default=None,
                        help="ray: the cluster to join ('auto': the one `ray start` runs on this machine; "
                        "default: start a local Ray)")
    parser.add_argument("--actors", type=int, default=None, help="ray: reranker actors (default 1)")
    parser.add_argument("--cpus-per-actor", type=int, default=None,
                        help="ray: CPUs reserved per actor, also its torch threads (default 1)")
    parser.add_argument("--gpus-per-actor", type=float, default=None,
                        help="ray: GPUs reserved per actor (0.5: two actors share a GPU; default: CPU actors)")
    add_option_flags(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from prorank.config import from_dict
    from prorank.evaluation.job import EvalConfig, main

    fields = ("datasets", "model", "top_k", "depth", "split", "max_queries", "output", "summary", "data_dir",
              "instruction", "first_stage", "run_file", "k1", "b", "threads", "cache",
              "exclude_self", "strict", "engine", "address", "actors", "cpus_per_actor", "gpus_per_actor")
    main(from_dict(EvalConfig, {**{name: getattr(args, name) for name in fields},
                                "reranker": options_from_flags(args)}, "prorank eval"))
    return 0
