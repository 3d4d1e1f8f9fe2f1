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
from typing import Iterator, Sequence

# (module under prorank.cli, one-line help) in the order shown by --help
SUBCOMMANDS = (
    "models",
    "rank",
    "index",
    "eval",
    "calibrate",
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


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):  # an alias names the same parser
                yield from _parsers(child)


def _add_debug_flags(parser: argparse.ArgumentParser) -> None:
    """``--debug`` (tracebacks instead of one-line errors) on every command that has no subcommands."""
    for node in _parsers(parser):
        leaf = not any(isinstance(a, argparse._SubParsersAction) for a in node._actions)
        if leaf and "--debug" not in node._option_string_actions:
            node.add_argument("--debug", action="store_true", help="show tracebacks")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line; a bare boolean flag never takes the next override as its value."""
    from prorank.config import bare_bool_flags

    parser = build_parser()
    actions = [action for node in _parsers(parser) for action in node._actions]
    return parser.parse_args(bare_bool_flags(sys.argv[1:] if argv is None else list(argv), actions))


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
