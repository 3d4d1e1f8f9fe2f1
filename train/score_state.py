"""Stage 2's run state: what a resumed run restores, and the learning-rate schedule it resumes on.

``out/state/`` holds accelerate's state (model, optimizer, scheduler, RNG) and ``trainer.json``
(step, best dev score, history, the config it ran with); it is replaced atomically, so a crash
leaves the previous state (or ``state.old`` mid-swap). A resumed run must keep the fields in
``RESUME_KEYS``; it may raise ``max_steps``, and the schedule then continues piecewise
(``restarts``) from the step it reached.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prorank.atomic import atomic_write_json, atomic_write_text
from prorank.config import to_dict
from prorank.train.trainlog import read_log

if TYPE_CHECKING:
    from prorank.train.stage2_score import ScoreConfig

__all__ = ["STATE_DIR", "TRAINER_FILE", "RESUME_KEYS", "RunState", "state_dir", "check_resumable", "save_state",
           "restarts_after_resume", "restore_state", "schedule", "sync_learning_rate"]

STATE_DIR = "state"
TRAINER_FILE = "trainer.json"
RESUME_KEYS = (  # config fields that must not change when a run is resumed
    "model", "datasets", "dev", "jsonl", "loss", "negatives", "groups_per_batch", "teacher", "train_answer_rows",
    "teacher_scale", "gradient_accumulation_steps", "lora", "train_layers", "seed", "max_length")


@dataclass
class RunState:
    step: int = 0
    best: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


def state_dir(out: Path) -> Path | None:
    for name in (STATE_DIR, f"{STATE_DIR}.old"):  # .old only exists after a crash mid-swap
        if (out / name / TRAINER_FILE).is_file():
            return out / name
    return None


def check_resumable(saved: dict[str, Any], cfg: ScoreConfig) -> None:
    now = to_dict(cfg)
    changed = [k for k in RESUME_KEYS if saved.get("config", {}).get(k) != now.get(k)]
    if changed:
        raise ValueError(f"cannot resume {cfg.output_dir}: {changed} changed since the saved state; "
                         "use another output_dir or set resume: false")


def save_state(accelerator: Any, out: Path, state: RunState, cfg: ScoreConfig) -> None:
    """Replace ``out/state`` atomically (a crash leaves the previous state or ``state.old``)."""
    tmp, final, old = out / f"{STATE_DIR}.tmp", out / STATE_DIR, out / f"{STATE_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)
    if accelerator.is_main_process:
        atomic_write_json(tmp / TRAINER_FILE, {"step": state.step, "best": state.best, "best_step": state.best_step,
                                              "history": state.history, "config": to_dict(cfg), "time": time.time()})
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def restarts_after_resume(saved: dict[str, Any], step: int, cfg: ScoreConfig) -> list[int]:
    """The schedule's pieces as trained so far (the saved run's, and its end if it had finished
    and ``max_steps`` grew), then ``cfg``'s pieces still ahead."""
    past = [r for r in saved.get("restarts", []) if r <= step]
    old_end = saved.get("max_steps", cfg.max_steps)
    if step >= old_end and old_end < cfg.max_steps:
        past.append(old_end)
    return sorted(set(past + [r for r in cfg.restarts if r > step]))


def restore_state(accelerator: Any, out: Path, cfg: ScoreConfig) -> RunState:
    """The saved state (model/optimizer/scheduler restored into ``accelerator``), or a fresh one;
    log records written after the saved step are dropped so the log matches the state."""
    from prorank.checkpoint import read_metadata

    folder = state_dir(out) if cfg.resume else None
    state = RunState()
    if folder is not None:
        saved = json.loads((folder / TRAINER_FILE).read_text(encoding="utf-8"))
        accelerator.load_state(str(folder))
        state = RunState(saved["step"], saved.get("best"), saved.get("best_step"), saved.get("history", []),
                         resumed_from=saved["step"])
        written = (read_metadata(out / "model") or {}).get("train") or {}
        if written.get("dev_ndcg@10") is not None and (state.best is None or written["dev_ndcg@10"] > state.best):
            state.best, state.best_step = written["dev_ndcg@10"], written.get("step")  # saved after the state
    if accelerator.is_main_process and (out / "log.jsonl").exists():
        kept = [r for r in read_log(out / "log.jsonl") if r.get("step", 0) <= state.step] if state.step else []
        atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
    return state


def schedule(cfg: ScoreConfig, optimizer: Any, num_processes: int) -> Any:
    """The learning-rate schedule: ``lr_scheduler`` over ``max_steps``, or piecewise over
    ``restarts`` (each piece the schedule of its own length, read at the step count)."""
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(cfg.lr_scheduler, cfg.lr_scheduler)
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    curves: dict[int, Any] = {}

    def curve(length: int) -> Any:
        # accelerate steps a prepared scheduler num_processes times per optimizer step; both counts are
        # whole optimizer steps times that, so every process count follows the same learning-rate curve
        if length not in curves:
            warmup = math.ceil(cfg.warmup_ratio * length) * num_processes
            curves[length] = get_scheduler(name, probe, num_warmup_steps=warmup,
                                           num_training_steps=length * num_processes).lr_lambdas[0]
        return curves[length]

    def factor(count: int) -> float:
        length = next((n for n in cfg.restarts if count < n * num_processes), cfg.max_steps)
        return curve(length)(count)

    return LambdaLR(optimizer, factor)


def sync_learning_rate(scheduler: Any) -> None:
    """Set the optimizer's rate to the schedule's at its (restored) step count: a restored optimizer
    holds the rate its last step left (0 at the end of a finished run), which is stale once
    ``max_steps`` grew."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper
    for group, base, factor in zip(inner.optimizer.param_groups, inner.base_lrs, inner.lr_lambdas):
        group["lr"] = base * factor(inner.last_epoch)
