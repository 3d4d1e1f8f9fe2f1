"""The record of a finished stage-1 warmup: its held-out measurement and its summary.

``measure(cfg)`` runs the held-out measurements of the ``dev`` block (the training split's queries
the run did not train on) and the ``heldout`` block (the base model vs the warmed-up
``output_dir/model``, :mod:`prorank.train.heldout`), then writes ``summary.json`` (``run_record``:
checkpoint metadata, curve ends, ``dev.json``, ``heldout.json``) and, with ``summary`` set,
``publish``es a copy of it and of the curves (e.g. ``benchmarks/results/warmup-cpu-smollm2.json``).
``prorank train heldout --warmup-config`` calls it on a finished run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prorank.atomic import atomic_write_bytes, atomic_write_json
from prorank.config import from_dict

if TYPE_CHECKING:
    from prorank.train.stage1_warmup import WarmupConfig

__all__ = ["measure", "run_record", "publish", "heldout_config", "MEASUREMENTS", "LOG_KEYS"]

MEASUREMENTS = ("dev", "heldout")  # WarmupConfig blocks, each measured into output_dir/<name>.json
# the logged values drawn into a run's curves.png and kept (first, last) in its record
LOG_KEYS = ("reward", "format_rate", "accuracy", "label_one_rate", "frac_reward_zero_std", "probe_auc",
            "probe_label_one", "probe_score_std", "policy_label_one", "label_mass", "exact_answer_mass", "label_balance",
            "answer_label_one", "loss", "completions/mean_length",
            "end_of_answer_bias")


def measure(cfg: WarmupConfig) -> dict[str, Any]:
    """Run the measurements whose blocks are set (``dev`` first, then ``heldout``) on a finished
    warmup, then write ``output_dir/summary.json`` and the ``summary`` copy. Returns
    ``{"dev": result or None, "heldout": result or None}``."""
    from prorank.train.heldout import main as heldout_main

    result = {name: heldout_main(heldout_config(cfg, name)) if getattr(cfg, name) is not None else None
              for name in MEASUREMENTS}
    out = Path(cfg.output_dir)
    atomic_write_json(out / "summary.json", run_record(out))
    if cfg.summary:
        publish(out, cfg.summary)
    return result


def run_record(output_dir: str | Path) -> dict[str, Any]:
    """One JSON record of a finished warmup run, from the files it wrote.

    Holds the checkpoint metadata (data, config, TRL settings, train metrics), the first and last
    logged training values (reward, format rate, accuracy) and ``heldout.json`` when present.
    """
    from prorank.checkpoint import read_metadata
    from prorank.train.trainlog import read_log

    out = Path(output_dir)
    meta = read_metadata(out / "model")
    if meta is None:
        raise FileNotFoundError(f"{out / 'model'} holds no prorank checkpoint (has the run finished?)")
    records = read_log(out / "log.jsonl") if (out / "log.jsonl").exists() else []
    steps = [r for r in records if "reward" in r]

    def pick(rec: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if rec is None else {k: rec.get(k) for k in ("step", *LOG_KEYS) if k in rec}

    measured = {name: json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
                if (out / f"{name}.json").exists() else None for name in MEASUREMENTS}
    return {
        "format": "prorank-warmup-run-v1",
        "stage": meta.get("stage"),
        "base_model": meta.get("base_model"),
        "prompt_version": meta.get("prompt_version"),
        "checkpoint": str(out / "model"),
        "data": meta.get("data"),
        "train": meta.get("train"),
        "training_curve": {"steps_logged": len(steps), "first": pick(steps[0] if steps else None),
                           "last": pick(steps[-1] if steps else None),
                           "last5_mean": {k: sum(r.get(k, 0.0) or 0.0 for r in steps[-5:]) / max(1, len(steps[-5:]))
                                          for k in ("reward", "format_rate", "accuracy")},
                           "log": str(out / "log.jsonl"), "plot": str(out / "curves.png")},
        **measured,
        "config": meta.get("config"),
        "grpo": meta.get("grpo"),
        "versions": meta.get("versions"),
    }


def publish(output_dir: str | Path, target: str | Path) -> Path:
    """Write ``run_record(output_dir)`` to ``target`` and copy the curves PNG beside it."""
    out, target = Path(output_dir), Path(target)
    atomic_write_json(target, run_record(out))
    if (out / "curves.png").exists():
        atomic_write_bytes(target.with_suffix(".png"), (out / "curves.png").read_bytes())
    return target


def heldout_config(cfg: WarmupConfig, name: str = "heldout") -> Any:
    """A measurement of this warmup (block ``name``: "heldout" or "dev"): base model vs ``output_dir/model``.

    Uses the block (``HeldoutConfig`` fields) with defaults from the warmup config: models, names
    ("zero-shot", "warmup"), reranker max_length, data_dir, output ``output_dir/<name>.json``; for
    ``dev`` also the first training dataset and split, ``exclude_queries_of: [output_dir/pairs.jsonl]``
    (the queries trained on) and no ranking effect (it would run on the split's first queries,
    trained on or not).
    """
    from prorank.train.heldout import HeldoutConfig

    if name not in MEASUREMENTS:
        raise ValueError(f"measurement must be one of {MEASUREMENTS}, got {name!r}")
    out = Path(cfg.output_dir)
    block = {"models": [cfg.model, str(out / "model")], "names": ["zero-shot", "warmup"],
             "output": str(out / f"{name}.json"), "data_dir": cfg.data_dir, "num_threads": cfg.num_threads,
             **(_dev_defaults(cfg) if name == "dev" else {}),
             **(getattr(cfg, name) or {})}
    if name == "dev" and not ({"dataset", "jsonl"} & block.keys()):
        raise ValueError("dev: the training pairs came from a JSONL file; name the dev pairs' dataset and split "
                         "(or jsonl) in the dev block")
    block["reranker"] = {"max_length": cfg.max_length, **block.get("reranker", {})}
    return from_dict(HeldoutConfig, block, f"warmup:{name}")


def _dev_defaults(cfg: WarmupConfig) -> dict[str, Any]:
    """The ``dev`` block's defaults: the first training source's unseen queries, no ranking effect."""
    first = cfg.datasets[0] if cfg.jsonl is None and cfg.datasets else None
    source = {"dataset": first.dataset, "split": first.split} if first is not None else {}
    return {**source, "exclude_queries_of": [str(Path(cfg.output_dir) / "pairs.jsonl")], "ranking_queries": 0}
