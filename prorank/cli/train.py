"""``prorank train``: stage 1 (GRPO warmup), stage 2 (score learning), the pipeline, and the
held-out measurement of a warmup.

Every subcommand reads a YAML config (keys = the config dataclass's fields) and applies
``--key value`` / ``key=value`` overrides (dotted keys reach nested blocks, e.g. warmup's
``--grpo.max_steps 10``), then calls the part's ``main(cfg)``. Training modules are imported
only when the subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

# subcommand -> (module, config class, help, example overrides for its epilog)
COMMANDS = {
    "warmup": ("prorank.train.stage1_warmup", "WarmupConfig",
               "stage 1: GRPO prompt warmup (answer the prompt with exactly 0 or 1, correctly)",
               "--grpo.max_steps 20 --grpo.learning_rate 1e-5 --lora '{r: 8}'"),
    "score": ("prorank.train.stage2_score", "ScoreConfig",
              "stage 2: fine-grained score learning on logit('1') - logit('0')",
              "--max_steps 20 --learning_rate 1e-5 --lora '{r: 8}'"),
    "pipeline": ("prorank.train.pipeline", "PipelineConfig",
                 "warmup, then score learning, then evaluation",
                 "--warmup.grpo.max_steps 20 --score.max_steps 20 --evaluation.top_k 20"),
    "heldout": ("prorank.train.heldout", "HeldoutConfig",
                "held-out answer format/accuracy and nDCG@10 of models (e.g. before/after warmup)",
                "--max_queries 20 --reranker.batch_size 8 ranking_queries=0"),
}


def epilog(example: str) -> str:
    """The overrides paragraph under a subcommand's help, with an example that command accepts."""
    return ("overrides: --key value or key=value after the options, YAML-typed; dotted keys reach nested "
            f"blocks, e.g. {example}")


class _OverridesParser(argparse.ArgumentParser):
    """Collects every token it does not know, in order, into ``overrides``.

    (``nargs=REMAINDER`` cannot start with a ``--key`` token, and ``--grpo.max_steps 5`` must
    reach ``prorank.config.parse_overrides`` intact.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    config_class: tuple[str, str] | None = None  # (module, class) whose fields --help lists

    def format_help(self) -> str:
        text = super().format_help()
        if self.config_class is None:
            return text
        from prorank.config import describe_fields

        module_name, cls_name = self.config_class
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except ModuleNotFoundError as err:
            return f"{text}\n(config keys not listed: {err.name} is not installed; pip install 'prorank[train]')\n"
        lines = [f"\nconfig keys ({cls_name}; YAML key = override key):"]
        for name, default, description in describe_fields(cls):
            lines.append(f"  {name} = {default}" + (f"\n      {description}" if description else ""))
        return text + "\n".join(lines) + "\n"

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.overrides = list(getattr(namespace, "overrides", None) or []) + list(extras)
        return namespace, []


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a reranker (GRPO warmup, score learning, pipeline)",
        description="Train ProRank models from YAML configs (see configs/).",
    )
    tsub = parser.add_subparsers(dest="train_command", metavar="STAGE", parser_class=_OverridesParser)
    tsub.required = True
    for name, (module_name, cls_name, help_text, example) in COMMANDS.items():
        p = tsub.add_parser(name, help=help_text, description=f"{help_text}. Config: {cls_name}.",
                            epilog=epilog(example))
        p.add_argument("--config", default=None, help="YAML config file")
        if name == "heldout":
            p.add_argument("--warmup-config", default=None,
                           help="derive the measurement from a warmup config: its base model vs "
                           "OUTPUT_DIR/model, its heldout (and dev) block, output OUTPUT_DIR/heldout.json "
                           "(overrides then apply to the warmup config)")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.config_class = (module_name, cls_name)
        p.set_defaults(func=_run, train_command=name, overrides=[])


def _run(args: argparse.Namespace) -> int:
    from prorank.config import load_config, to_dict

    module_name, cls_name = COMMANDS[args.train_command][:2]
    if getattr(args, "warmup_config", None):
        from prorank.train.stage1_warmup import WarmupConfig
        from prorank.train.warmup_record import heldout_config, measure

        wcfg = load_config(WarmupConfig, args.warmup_config, args.overrides)
        if wcfg.heldout is None:
            wcfg.heldout = {}
        if args.print_config:
            print(json.dumps(to_dict(heldout_config(wcfg)), indent=2, default=str))
            return 0
        result = measure(wcfg)  # dev.json, heldout.json, then summary.json (+ the `summary` copy)
        print(json.dumps({name: _brief(r) for name, r in result.items() if r}, indent=2, default=str))
        return 0
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise RuntimeError(f"'prorank train {args.train_command}' is not part of this build "
                               f"({module_name} is missing)") from None
        raise
    cfg = load_config(getattr(module, cls_name), args.config, args.overrides)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2, default=str))
        return 0
    result = module.main(cfg)
    from prorank.train import is_main_process

    if isinstance(result, dict) and is_main_process():  # once under accelerate launch
        print(json.dumps(_brief(result), indent=2, default=str))
    return 0


def _brief(result: dict) -> dict:
    """The summary without bulky nested blocks (they are in the files the run wrote)."""
    drop = {"config", "provenance", "grpo"}
    return {k: v for k, v in result.items() if k not in drop}
