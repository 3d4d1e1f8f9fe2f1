"""The full ProRank recipe in one command: stage 1 warmup -> stage 2 score learning -> evaluation.

``PipelineConfig`` points at (or embeds) the configs of the parts:

- ``warmup_config`` + ``warmup`` (a mapping of ``WarmupConfig`` overrides), or ``warmup: null``
  to skip stage 1 and score-train the base model;
- ``score_config`` + ``score`` (``ScoreConfig`` overrides); its ``model`` is set to the stage-1
  checkpoint when stage 1 runs;
- ``evaluation`` (``EvalConfig`` fields; ``model`` and ``output`` are filled in) and
  ``evaluate``: which models to evaluate, any of ``base``, ``warmup``, ``score``.

Each stage writes under ``output_dir`` (``warmup/``, ``score/``, ``eval-<model>/``) unless its
config names another folder. A stage whose checkpoint already exists is not run again, an
interrupted stage 1 resumes from its last trainer checkpoint, stage 2 from its saved state and the
evaluation from its score cache, so re-running an interrupted pipeline continues where it stopped.
Stage 1 holds out stage 2's dev queries (``WarmupConfig.hold_out``). ``pipeline.json`` records each
stage's time and peak resident memory. Stage 1 trains in a child process of its own
(``isolate_stages``; not under ``accelerate launch``), so its JVM and trainer are gone when stage 2
starts (which builds its own data in a child process, ``ScoreConfig.isolate_data``).
``output_dir/pipeline.json`` summarises the stages and the evaluation table. Under ``accelerate
launch`` both stages train on every process; the main process alone writes ``pipeline.json`` and
runs the evaluation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from prorank.config import load_config, option, read_yaml, to_dict
from prorank.train import is_main_process

__all__ = ["PipelineConfig", "flatten", "main", "stage_configs"]

MODELS = ("base", "warmup", "score")


@dataclass
class PipelineConfig:
    """Stages of ``prorank train pipeline``; see the module doc."""

    output_dir: str = option("runs/pipeline", "run folder: warmup/, score/, eval-<model>/ and pipeline.json")
    warmup_config: str | None = option(None, "YAML of stage 1's WarmupConfig (default: its defaults)")
    warmup: dict | None = option({}, "WarmupConfig overrides laid over warmup_config; null skips stage 1")
    score_config: str | None = option(None, "YAML of stage 2's ScoreConfig (default: its defaults)")
    score: dict = option({}, "ScoreConfig overrides laid over score_config (its model is stage 1's checkpoint)")
    evaluation: dict | None = option({"datasets": ["scifact"]}, "EvalConfig fields of the final evaluation "
                                     "(model and output are filled in); null skips it")
    evaluate: list[str] = option(["base", "warmup", "score"], "which models to evaluate: base, warmup, score")
    force: bool = option(False, "re-run stage 1 even when its checkpoint exists")
    isolate_stages: bool = option(True, "train stage 1 in a child process of its own (not under accelerate "
                                  "launch): what it loaded (its JVM, its trainer) leaves with it before stage 2, "
                                  "and its peak memory is its own process's")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.evaluate) - set(MODELS))
        if unknown:
            raise ValueError(f"evaluate: unknown model(s) {unknown}; choose from {list(MODELS)}")
        if self.warmup is None and "warmup" in self.evaluate:
            self.evaluate = [m for m in self.evaluate if m != "warmup"]


def flatten(block: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"grpo": {"max_steps": 5}}`` -> ``{"grpo.max_steps": 5}`` (merge into a file, not replace)."""
    out: dict[str, Any] = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _stage_config(cls: type, path: str | None, overrides: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    """Load ``cls`` from ``path`` + ``overrides``; ``defaults`` fill keys neither of them sets."""
    in_file = set(read_yaml(path)) if path is not None else set()
    merged = {k: v for k, v in defaults.items() if k not in in_file and k not in overrides}
    merged.update(flatten(overrides))
    return load_config(cls, path, merged)


def stage_configs(cfg: PipelineConfig) -> tuple[Any, Any]:
    """``(WarmupConfig or None, ScoreConfig)`` as the pipeline runs them: stage 2 starts from stage
    1's checkpoint, and stage 1 holds out stage 2's dev queries (they choose and tune the final
    model, so neither stage may train on them)."""
    from prorank.train.stage2_score import ScoreConfig

    out = Path(cfg.output_dir)
    score_defaults: dict[str, Any] = {"output_dir": str(out / "score")}
    if cfg.warmup is None:
        return None, _stage_config(ScoreConfig, cfg.score_config, cfg.score, score_defaults)
    from prorank.train.stage1_warmup import WarmupConfig

    dev = [to_dict(s) for s in _stage_config(ScoreConfig, cfg.score_config, cfg.score, score_defaults).dev]
    wcfg = _stage_config(WarmupConfig, cfg.warmup_config, cfg.warmup,
                         {"output_dir": str(out / "warmup"), "hold_out": dev})
    overrides = {**cfg.score, "model": str(Path(wcfg.output_dir) / "model")}
    return wcfg, _stage_config(ScoreConfig, cfg.score_config, overrides, score_defaults)


def main(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the stages in order; return (and write) ``output_dir/pipeline.json``."""
    from prorank.atomic import atomic_write_json
    from prorank.checkpoint import read_metadata
    from prorank.train.stage2_score import main as score_main

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"config": to_dict(cfg), "stages": {}, "evaluation": {}}
    started = time.time()
    wcfg, scfg = stage_configs(cfg)

    # 1. stage 1 (skipped when its checkpoint exists)
    warm_ckpt = None if wcfg is None else Path(wcfg.output_dir) / "model"
    if wcfg is not None:
        from prorank.train.stage1_warmup import main as warmup_main

        if read_metadata(warm_ckpt) is not None and not cfg.force:
            # the record of the run that trained it (time, peak memory, summary) is kept
            earlier = _earlier_stage(out / "pipeline.json", "warmup")
            report["stages"]["warmup"] = {**earlier, "checkpoint": str(warm_ckpt), "skipped": "checkpoint exists"}
        else:
            if wcfg.resume_from_checkpoint is None and not cfg.force and _has_checkpoint(wcfg):
                wcfg.resume_from_checkpoint = True  # an interrupted stage 1 continues from its last save
            t0 = time.time()
            result, peak, process = _run_stage(cfg, warmup_main, wcfg)
            report["stages"]["warmup"] = {"checkpoint": str(warm_ckpt), "seconds": round(time.time() - t0, 1),
                                          "peak_rss_mb": peak, "process": process, "summary": _jsonable(result)}
        if is_main_process():
            atomic_write_json(out / "pipeline.json", report)

    # 2. stage 2 from stage 1's checkpoint (resumes from its saved state)
    t0 = time.time()
    result, peak, process = _run_stage(cfg, score_main, scfg, isolate=False)  # stage 2 isolates its own data
    report["stages"]["score"] = {"checkpoint": str(Path(scfg.output_dir) / "model"),
                                 "seconds": round(time.time() - t0, 1), "peak_rss_mb": peak, "process": process,
                                 "summary": _jsonable(result)}
    if not is_main_process():  # under accelerate launch: one process evaluates and writes
        return report
    atomic_write_json(out / "pipeline.json", report)

    # 3. evaluation of the chosen models
    if cfg.evaluation is not None:
        models = {"base": wcfg.model if wcfg is not None else scfg.model,
                  "warmup": None if warm_ckpt is None else str(warm_ckpt),
                  "score": str(Path(scfg.output_dir) / "model")}
        for name in cfg.evaluate:
            if models.get(name) is not None:
                report["evaluation"][name] = _evaluate(cfg, name, models[name], scfg.max_length)
                atomic_write_json(out / "pipeline.json", report)
    report["seconds"] = round(time.time() - started, 1)
    atomic_write_json(out / "pipeline.json", report)
    return report


def _run_stage(cfg: PipelineConfig, stage: Any, stage_cfg: Any, isolate: bool = True) -> tuple[Any, float, str]:
    """``stage(stage_cfg)``, the peak resident memory (MB) of the process that ran it and which that
    was: a ``child`` of its own with ``isolate`` and ``isolate_stages`` outside ``accelerate launch``,
    else this ``pipeline`` process."""
    import os

    from prorank.train.memory import peak_rss_mb, reset_peak_rss

    if isolate and cfg.isolate_stages and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        from prorank.train.isolated import run_isolated

        return (*run_isolated(stage, stage_cfg), "child")
    reset_peak_rss()
    return stage(stage_cfg), peak_rss_mb(), "pipeline"


def _evaluate(cfg: PipelineConfig, name: str, model: str, max_length: int) -> dict[str, Any]:
    """``prorank eval`` of one model with the pipeline's ``evaluation`` block, into ``eval-<name>/``."""
    from prorank.config import from_dict
    from prorank.evaluation.job import EvalConfig
    from prorank.evaluation.job import main as eval_main

    out = Path(cfg.output_dir) / f"eval-{name}"
    block = {**cfg.evaluation, "model": model, "output": str(out)}
    block["reranker"] = {"max_length": max_length, **(cfg.evaluation.get("reranker") or {})}
    summary = eval_main(from_dict(EvalConfig, block, "pipeline:evaluation"))
    return {"model": model, "average": summary["average"],
            "datasets": {k: v["metrics"] for k, v in summary["datasets"].items()},
            "summary": str(out / "summary.json")}


def _earlier_stage(path: Path, stage: str) -> dict[str, Any]:
    """A stage's entry in an earlier ``pipeline.json`` of this output folder (``{}`` when none)."""
    import json

    if not path.is_file():
        return {}
    entry = json.loads(path.read_text(encoding="utf-8")).get("stages", {}).get(stage) or {}
    return {k: v for k, v in entry.items() if k != "skipped"}


def _has_checkpoint(wcfg: Any) -> bool:
    """Whether stage 1's trainer folder holds a ``checkpoint-N`` to resume from."""
    trainer = Path(wcfg.grpo.get("output_dir") or Path(wcfg.output_dir) / "trainer")
    return trainer.is_dir() and any(p.name.startswith("checkpoint-") for p in trainer.iterdir())


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
