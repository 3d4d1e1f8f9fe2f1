"""The ``prorank`` command: a thin layer over each part's ``main(cfg)``.

Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed namespace). Modules are imported lazily by
the handler, so ``prorank --help`` stays fast and an inference-only install never imports
pyserini, TRL or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# (module under prorank.cli, one-line help) in the order shown by --help
SUBCOMMANDS = (
    "models",
    "rank",
    "index",
    "eval",
    "train",
    "export",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prorank",
        description=(
            "ProRank: small language models as document rerankers. "
            "Pull a model, rank documents, index a corpus with BM25, evaluate on BEIR, "
            "train (GRPO prompt warmup, score learning), export and serve."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from prorank import __version__

    parser.add_argument("--version", action="version", version=f"prorank {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"prorank.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"prorank.cli.{name}":
                raise
            continue  # subcommand not part of this build
        module.register(sub)
    _add_debug_flags(parser)
    return parser


def _add_debug_flags(parser: argparse.ArgumentParser) -> None:
    """``--debug`` (tracebacks instead of one-line errors) on every command that has no subcommands."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        if "--debug" not in parser._option_string_actions:
            parser.add_argument("--debug", action="store_true", help="show tracebacks")
        return
    for action in actions:
        for child in set(action.choices.values()):
            _add_debug_flags(child)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line; a bare boolean flag never takes the next override as its value."""
    from prorank.config import bare_bool_flags

    parser = build_parser()
    return parser.parse_args(bare_bool_flags(sys.argv[1:] if argv is None else list(argv), parser))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"prorank {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
