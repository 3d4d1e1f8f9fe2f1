"""Training logs shared by both stages: one JSON object per line, and a PNG of the curves.

``TrainLog(path)`` appends records (``{"step": 3, "loss": 0.7, ...}``) and flushes each line, so a
crash loses nothing and a resumed run keeps appending to the same file. ``read_log`` reads it
back (a torn last line from a killed process is skipped). ``plot_curves`` draws one panel per key
against ``step`` with matplotlib's non-interactive Agg backend and writes the PNG atomically.
``trainer_callback`` connects both to a Hugging Face / TRL ``Trainer`` (every log -> JSONL, a PNG
on each save and at the end, optional wall-clock time box).
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from prorank.atomic import atomic_write_bytes

__all__ = ["TrainLog", "read_log", "plot_curves", "trainer_callback"]


def _clean(value: Any) -> Any:
    """JSON-safe scalar: tensors/numpy become floats, NaN/inf become None."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return str(value)


class TrainLog:
    """Append-only JSONL log. ``log(step, **values)`` writes ``{"step", "time", **values}``."""

    def __init__(self, path: str | Path, *, truncate: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate and self.path.exists():
            self.path.unlink()

    def log(self, step: int, **values: Any) -> dict[str, Any]:
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in values.items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        return record

    def records(self) -> list[dict[str, Any]]:
        return read_log(self.path)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a JSONL log (an unparsable line, e.g. a torn last one, is skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"training log not found: {path}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _series(records: Iterable[Mapping[str, Any]], key: str, x_key: str) -> tuple[list, list]:
    xs, ys = [], []
    for rec in records:
        value = rec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and x_key in rec:
            xs.append(rec[x_key])
            ys.append(value)
    return xs, ys


def plot_curves(
    jsonl_path: str | Path,
    png_path: str | Path,
    keys: Sequence[str],
    *,
    title: str | None = None,
    x_key: str = "step",
    smooth: int = 1,
) -> Path:
    """Plot ``keys`` from a JSONL log against ``x_key``, one panel per key, into ``png_path``.

    Keys absent from every record are drawn as empty panels labelled "no data" (never an error:
    a run may not have reached its first evaluation yet). ``smooth > 1`` overlays a trailing
    moving average of that many points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not keys:
        raise ValueError("plot_curves: keys must name at least one logged value")
    records = read_log(jsonl_path)
    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // cols][i % cols]
        xs, ys = _series(records, key, x_key)
        if xs:
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None, linewidth=1, alpha=0.6 if smooth > 1 else 1)
            if smooth > 1 and len(ys) >= smooth:
                avg = [sum(ys[max(0, j - smooth + 1): j + 1]) / len(ys[max(0, j - smooth + 1): j + 1]) for j in range(len(ys))]
                ax.plot(xs, avg, linewidth=2, label=f"mean of {smooth}")
                ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for j in range(len(keys), rows * cols):
        axes[j // cols][j % cols].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(png_path, buf.getvalue())


class _LogCallback:
    """Trainer callback: every ``on_log`` -> JSONL; on save and at the end -> PNG; time box."""

    def __init__(self, log_path: Path, png_path: Path, keys: Sequence[str], title: str | None,
                 aliases: Mapping[str, str], plot_every_save: bool, deadline: float | None,
                 truncate: bool) -> None:
        self.log = TrainLog(log_path, truncate=truncate)
        self.png, self.keys, self.title = Path(png_path), list(keys), title
        self.aliases, self.plot_every_save, self.deadline = dict(aliases), plot_every_save, deadline

    def _plot(self) -> None:
        if self.log.path.exists():
            plot_curves(self.log.path, self.png, self.keys, title=self.title, smooth=5)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        values = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        if "train_loss" in values and "loss" not in values:
            return  # the end-of-training summary, not a step
        for alias, key in self.aliases.items():
            if key in values:
                values[alias] = values[key]
        values.setdefault("epoch", state.epoch)
        self.log.log(state.global_step, **values)

    def on_step_end(self, args, state, control, **kwargs):
        if self.deadline is not None and time.time() >= self.deadline:
            control.should_training_stop = True  # time box reached: save and finish normally
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.plot_every_save:
            self._plot()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._plot()


def trainer_callback(
    log_path: str | Path,
    png_path: str | Path,
    keys: Sequence[str],
    *,
    title: str | None = None,
    aliases: Mapping[str, str] | None = None,
    plot_every_save: bool = True,
    deadline: float | None = None,
    truncate: bool = False,
) -> Any:
    """A ``transformers.TrainerCallback`` writing logs to ``log_path`` and curves to ``png_path``.

    ``aliases`` adds short names for logged metrics (``{"accuracy": "rewards/correctness_reward/mean"}``);
    ``deadline`` (a ``time.time()`` value) stops training, with a final save, once passed.
    ``truncate`` starts a fresh log (a new run); leave it off when resuming, to keep appending.
    """
    from transformers import TrainerCallback

    cls = type("ProRankLogCallback", (_LogCallback, TrainerCallback), {})
    return cls(Path(log_path), Path(png_path), keys, title, aliases or {}, plot_every_save, deadline, truncate)
