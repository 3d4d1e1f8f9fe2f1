"""``prorank eval``: BM25 vs reranker on BEIR datasets (table, TREC runs, provenance JSON)."""

from __future__ import annotations

import argparse

from prorank.config import add_config_flags, flag_values
from prorank.options import add_option_flags, options_from_flags


def register(sub: argparse._SubParsersAction) -> None:
    from prorank.evaluation.job import EvalConfig

    parser = sub.add_parser(
        "eval",
        help="evaluate BM25 and a reranker on BEIR datasets",
        description="Retrieve BM25 candidates (k1=0.9, b=0.4), rerank the top-k with MODEL and "
        "report nDCG@10, Recall@100, MRR@10 and MAP (trec_eval semantics) for both, per dataset "
        "and averaged. Writes TREC runs, per-query metrics and summary.json (provenance) under "
        "--output. Scores are cached, so an interrupted run resumes and a repeated one is free. "
        "--model none evaluates BM25 alone. Every other flag is an EvalConfig field.",
    )
    parser.add_argument("--dataset", action="append", required=True, dest="datasets", metavar="PATH_OR_NAME",
                        help="BEIR folder or name (repeatable); names are looked up in --data-dir, "
                        "then downloaded with beir")
    parser.add_argument("--run", default=None, dest="run_file", metavar="TREC_RUN",
                        help="rerank the candidates of this TREC run file (one dataset) instead of BM25's; "
                        "BM25 is still reported beside it")
    fields = parser.add_argument_group("evaluation (EvalConfig fields)")
    add_config_flags(fields, EvalConfig, "eval.", skip=("datasets", "run_file", "reranker"))
    add_option_flags(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from prorank.config import from_dict
    from prorank.evaluation.job import EvalConfig, main

    data = {"datasets": args.datasets, "run_file": args.run_file,
            **flag_values(args, "eval."), "reranker": options_from_flags(args)}
    main(from_dict(EvalConfig, data, "prorank eval"))
    return 0
