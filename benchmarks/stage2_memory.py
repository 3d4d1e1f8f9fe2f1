"""Stage 2's peak resident memory per process: the training data built inside the training process
or in a child process of its own (``isolate_data``, issue #30's memory target of <= 6 GB per process).

Each variant runs the shipped stage-2 recipe (``configs/score-cpu.yaml``: its data, teacher, LoRA,
micro-batches) for ``max_steps`` steps and a dev pass over ``dev_queries`` SciFact train queries, in
a fresh process (``prorank.train.isolated``), so every peak is that process's own (VmHWM):

- the training process (model, optimizer, groups, the dev pass's scoring batches);
- with ``isolate_data``, the child that built the groups and dev set (BM25's JVM, the teacher, the
  corpora) and ended before training began.

Step times come from each run's ``log.jsonl`` (median of the steps after the first).

    PRORANK_DATA_DIR=../shared/data python benchmarks/stage2_memory.py
    # -> benchmarks/results/stage2-memory.json
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from prorank.atomic import atomic_write_json  # noqa: E402
from prorank.evaluation.provenance import git_state, hardware, now_utc, versions  # noqa: E402


@dataclass
class MemoryConfig:
    config: str = "configs/score-cpu.yaml"  # the stage-2 recipe measured
    variants: list[bool] = field(default_factory=lambda: [True, False])  # isolate_data of each run, in order
    max_steps: int = 8
    dev_queries: int = 20  # SciFact train queries of the dev pass (the recipe holds out 100)
    num_threads: int = 1
    output: str = "runs/stage2-memory"
    out: str = "benchmarks/results/stage2-memory.json"


def run(cfg: MemoryConfig, isolate: bool) -> dict[str, Any]:
    """One short stage-2 run in a fresh process: its peaks and step times."""
    from prorank.config import load_config
    from prorank.train.isolated import run_isolated
    from prorank.train.stage2_score import ScoreConfig
    from prorank.train.stage2_score import main as score_main

    folder = Path(cfg.output) / ("isolated" if isolate else "in-process")
    shutil.rmtree(folder, ignore_errors=True)
    recipe = load_config(ScoreConfig, REPO / cfg.config)
    dev = [{"dataset": recipe.dev[0].dataset, "split": recipe.dev[0].split, "max_queries": cfg.dev_queries}]
    scfg = load_config(ScoreConfig, REPO / cfg.config, {
        "output_dir": str(folder), "max_steps": cfg.max_steps, "eval_every": cfg.max_steps, "restarts": [],
        "save_every": cfg.max_steps, "num_threads": cfg.num_threads, "isolate_data": isolate, "dev": dev,
        "resume": False})
    started = time.time()
    _, peak = run_isolated(score_main, scfg)
    data = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    steps = [json.loads(line) for line in (folder / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    seconds = [b["seconds"] - a["seconds"] for a, b in zip(steps, steps[1:]) if "loss" in a and "loss" in b]
    return {"isolate_data": isolate, "training_process_peak_rss_mb": peak,
            "data_process_peak_rss_mb": data["built_by"]["peak_rss_mb"] if isolate else None,
            "median_step_seconds": round(statistics.median(seconds), 2) if seconds else None,
            "seconds": round(time.time() - started, 1)}


def main(cfg: MemoryConfig) -> dict[str, Any]:
    rows = [run(cfg, isolate) for isolate in cfg.variants]
    report = {"command": " ".join(["python", "benchmarks/stage2_memory.py", *sys.argv[1:]]), "date": now_utc(),
              "git": git_state(REPO), "machine": hardware(), "versions": versions(), "config": vars(cfg),
              "runs": rows}
    atomic_write_json(REPO / cfg.out, report)
    print("| isolate_data | training process peak (MB) | data process peak (MB) | median step (s) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['isolate_data']} | {r['training_process_peak_rss_mb']:.0f} | "
              f"{r['data_process_peak_rss_mb'] or '-'} | {r['median_step_seconds']} |")
    return report


if __name__ == "__main__":
    from prorank.config import config_from_argv

    main(config_from_argv(MemoryConfig, sys.argv[1:]))
