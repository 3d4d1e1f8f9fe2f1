"""Stage 2 on one process vs two under ``accelerate launch``: the same run, to float rounding.

Trains stage 2 (``prorank train score``) twice from the same config: one process with
``groups_per_batch`` 2B, and two processes with B each (``accelerate launch --multi_gpu
--num_processes 2``; on a machine without GPUs that starts two torchrun workers on the CPU that
talk over gloo, the same code path as several GPUs with NCCL). Process ``r`` trains on slice ``r``
of the one-process batch and DDP averages the gradients, so both runs should log the same loss
(the mean over all 2B groups) at every step and end with the same weights. Both runs build their
data (BM25 negatives, dev set) and are timed end to end, launcher start-up included. The model is
by default a seeded random 4-layer, 128-wide Qwen2 (``benchmarks/tiny-qwen2-config.json``) over
SmolLM2's tokenizer, trained fully; ``--random_init null`` trains SmolLM2-135M-Instruct itself.

    PRORANK_DATA_DIR=../shared/data python benchmarks/ddp.py

writes ``benchmarks/results/ddp-cpu.json``: the largest loss and weight differences, each run's
seconds and loss curve, the command, git commit, machine and library versions.
``tests/test_ddp.py`` uses the launch helpers below.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

LAUNCH_FLAGS = ("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")


def free_port() -> int:
    """A TCP port nobody listens on now (for ``--main_process_port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(args: Sequence[str], processes: int, port: int | None = None) -> list[str]:
    """``accelerate launch`` of ``args`` (``-m module ...`` or ``script.py ...``) on ``processes``
    processes of this machine; two or more use the torchrun launcher (``--multi_gpu``), which runs
    on CPUs (gloo) as well as GPUs."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), *LAUNCH_FLAGS]
    if processes > 1:
        cmd += ["--multi_gpu", "--main_process_port", str(port or free_port())]
    return [*cmd, *args]


def launch(args: Sequence[str], processes: int, *, timeout: float = 600, cwd: str | Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``launch_command(args, processes)`` to its end (one CPU thread per process unless
    ``OMP_NUM_THREADS`` says otherwise). The workers import the installed ``prorank``.

    Raises ``RuntimeError`` with the tail of stderr when it fails or outlives ``timeout`` seconds
    (then the launcher and its workers are killed).
    """
    env = {**os.environ, **(env or {})}
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = launch_command(args, processes)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n--- stderr (tail) ---\n{err[-6000:]}")
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}: {' '.join(cmd)}\n--- stdout (tail) ---\n{out[-2000:]}"
                           f"\n--- stderr (tail) ---\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def losses(run_dir: str | Path) -> dict[int, float]:
    """Step -> logged training loss of a stage-2 run (``log.jsonl``)."""
    from prorank.train.trainlog import read_log

    return {r["step"]: r["loss"] for r in read_log(Path(run_dir) / "log.jsonl") if "loss" in r}


def final_weights(run_dir: str | Path) -> dict[str, Any]:
    """The weights a stage-2 run ended with: its resume state's model (``model/`` holds the best
    dev checkpoint, which need not be the last)."""
    import torch

    return torch.load(Path(run_dir) / "state" / "pytorch_model.bin", map_location="cpu", weights_only=True)


def max_weight_difference(run_a: str | Path, run_b: str | Path) -> float:
    """Largest absolute difference between the final weights of two stage-2 runs."""
    a, b = final_weights(run_a), final_weights(run_b)
    if a.keys() != b.keys():
        raise ValueError(f"{run_a} and {run_b} hold different tensors")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def compare(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """Loss curves and final weights of two stage-2 runs."""
    la, lb = losses(run_a), losses(run_b)
    if la.keys() != lb.keys() or not la:
        raise ValueError(f"the runs logged different steps: {sorted(la)} vs {sorted(lb)}")
    return {"steps": len(la), "max_loss_difference": max(abs(la[s] - lb[s]) for s in la),
            "max_weight_difference": max_weight_difference(run_a, run_b)}


@dataclass
class DDPConfig:
    model: str = "smollm2-135m-instruct"  # trained fully (every weight compared); its tokenizer always
    # seeded random weights of this architecture over the model's tokenizer (benchmarks/random_model.py);
    # null trains the model's own weights
    random_init: str | None = "benchmarks/tiny-qwen2-config.json"
    dataset: str = "scifact"  # training queries (train split), BM25 negatives
    queries: int = 8
    dev_queries: int = 4  # dev queries (held out of the training queries), BM25 top-5, evaluated at the end
    groups_per_process: int = 2  # B: the one-process run reads 2B groups per step
    steps: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    max_length: int = 128
    processes: int = 2
    output: str = "runs/ddp-cpu"
    result: str = "benchmarks/results/ddp-cpu.json"
    data_dir: str | None = None
    timeout: float = 3000  # seconds per launch
    score: dict = field(default_factory=dict)  # more ScoreConfig fields for both runs


def score_yaml(cfg: DDPConfig, model: str, output_dir: Path, groups_per_batch: int) -> dict[str, Any]:
    return {"model": model, "output_dir": str(output_dir), "data_dir": cfg.data_dir,
            "datasets": [{"dataset": cfg.dataset, "max_queries": cfg.queries}],
            "dev": [{"dataset": cfg.dataset, "split": "train", "max_queries": cfg.dev_queries}], "dev_top_k": 5,
            "max_steps": cfg.steps, "eval_every": cfg.steps, "save_every": cfg.steps, "eval_at_start": False,
            "groups_per_batch": groups_per_batch, "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate, "warmup_ratio": 0.1, "max_length": cfg.max_length,
            "num_threads": 1, "cpu": True, "resume": False, **cfg.score}


def main(cfg: DDPConfig) -> dict[str, Any]:
    import yaml
    from importlib import metadata

    from prorank.atomic import atomic_write_json
    from prorank.config import to_dict
    from prorank.evaluation.provenance import git_state, hardware, now_utc, versions
    from prorank.registry import resolve_model

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    started = now_utc()
    model = resolve_model(cfg.model)
    if cfg.random_init is not None:
        from random_model import random_model_dir

        model = str(random_model_dir(REPO / cfg.random_init, model, seed=0, dtype="float32"))
    runs: dict[str, Any] = {}
    for name, processes in (("one_process", 1), (f"{cfg.processes}_processes", cfg.processes)):
        batch = cfg.groups_per_process * (cfg.processes if processes == 1 else 1)
        config = out / f"{name}.yaml"
        config.write_text(yaml.safe_dump(score_yaml(cfg, model, out / name, batch)))
        tic = time.time()
        launch(["-m", "prorank.cli", "train", "score", "--config", str(config)], processes, timeout=cfg.timeout)
        summary = json.loads((out / name / "summary.json").read_text(encoding="utf-8"))
        runs[name] = {"processes": summary["processes"], "groups_per_batch": batch,
                      "seconds": round(time.time() - tic, 1), "losses": list(losses(out / name).values()),
                      "dev_ndcg@10": summary["best_dev_ndcg@10"]}
        print(f"{name}: {runs[name]['seconds']} s, losses {[round(x, 5) for x in runs[name]['losses']]}")
    names = list(runs)
    diff = compare(out / names[0], out / names[1])
    groups = [(out / n / "groups.jsonl").read_bytes() for n in names]
    result = {
        "format": "prorank-ddp-v1",
        "question": f"does stage 2 on {cfg.processes} processes x B groups equal 1 process x {cfg.processes}B groups?",
        **diff, "same_training_groups": groups[0] == groups[1], "runs": runs,
        "command": " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith("ddp.py") else None,
        "config": to_dict(cfg),
        "provenance": {"git": git_state(REPO), "started": started, "finished": now_utc(),
                       "versions": {**versions(), **{k: metadata.version(k) for k in ("accelerate", "trl")}},
                       "hardware": hardware("cpu"), "launcher": "accelerate launch --multi_gpu (torchrun, gloo)"},
    }
    atomic_write_json(cfg.result, result)
    print(json.dumps({k: result[k] for k in ("steps", "max_loss_difference", "max_weight_difference",
                                             "same_training_groups")}, indent=2))
    return result


if __name__ == "__main__":
    from prorank.config import config_from_argv

    main(config_from_argv(DDPConfig, sys.argv[1:]))
