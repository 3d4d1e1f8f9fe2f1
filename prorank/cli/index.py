"""``prorank index``: build a BM25 (Lucene) index of a BEIR corpus."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "index",
        help="build a BM25 (Lucene) index of a BEIR corpus",
        description="Index corpus.jsonl of a BEIR folder with Anserini (title and text in one "
        "'contents' field, raw documents stored), as pyserini's BEIR 'flat' indexes. Without "
        "--index the index is cached under $PRORANK_HOME/indexes/<name>-<corpus sha256>; a "
        "pyserini prebuilt index name (e.g. beir-v1.0.0-scifact.flat) is downloaded instead.",
    )
    parser.add_argument("--dataset", required=True, help="BEIR folder, dataset name or prebuilt index name")
    parser.add_argument("--index", default=None, help="output folder (default: the index cache)")
    parser.add_argument("--threads", type=int, default=2, help="indexing threads (default 2)")
    parser.add_argument("--data-dir", default=None, help="folder holding datasets by name (default $PRORANK_DATA_DIR)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --index folder")
    parser.add_argument("--verbose", action="store_true", help="show Anserini's log")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prorank.config import from_dict
    from prorank.retrieval.index import IndexConfig, main

    cfg = from_dict(IndexConfig, {
        "dataset": args.dataset, "index": args.index, "threads": args.threads, "data_dir": args.data_dir,
        "overwrite": args.overwrite, "verbose": args.verbose,
    })
    console = Console(stderr=True)
    try:
        with console.status(f"indexing {cfg.dataset} ..."):
            path = main(cfg)
    except FileExistsError as err:
        raise ValueError(f"{err}; use --overwrite to replace it") from None
    print(path)
    return 0
