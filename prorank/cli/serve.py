"""``prorank serve``: run the reranking service (Ray Serve) until Ctrl-C."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from prorank.config import add_config_flags
    from prorank.options import add_option_flags
    from prorank.serve.config import ServeConfig

    p = subparsers.add_parser(
        "serve",
        help="serve a reranker over HTTP (Cohere/Jina rerank API, BM25 search) with Ray Serve",
        description=(
            "Start the reranking service and block until Ctrl-C. --config is a Ray Serve config file "
            "(configs/serve.yaml; the same file works with Ray's `serve run` / `serve deploy`) or a flat "
            "YAML of the fields below. Every field can be overridden: --port 9000, --index DIR, "
            "max_batch_size=32, autoscaling.max_replicas=4. Listens on 127.0.0.1:8000 unless told otherwise."
        ),
    )
    p.add_argument("--config", help="serve YAML (default: built-in defaults, model prorank-smollm2-135m)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    fields = p.add_argument_group("config fields (override the YAML)")
    add_config_flags(fields, ServeConfig, "field_", skip=("reranker",))  # its fields: the group below
    add_option_flags(p, dest_prefix="field_reranker.")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="more overrides as field=value")
    p.set_defaults(func=_run)


def config_from_namespace(args: argparse.Namespace):
    """The ``ServeConfig`` the parsed command line describes (YAML, then the overrides)."""
    from prorank.config import flag_values, parse_overrides
    from prorank.serve.config import load_serve_config

    return load_serve_config(args.config, {**flag_values(args, "field_"), **parse_overrides(args.overrides or [])})


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_namespace(args)
    from prorank.serve.app import main

    return main(cfg)
