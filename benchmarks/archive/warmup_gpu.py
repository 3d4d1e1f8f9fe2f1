"""Stage-1 levers on a GPU machine without Java: the pairs are recorded here, the runs happen there.

The warmup's data, probe and held-out pairs come from BM25 (Lucene, so Java). A GPU machine with
no Java and no network can still train and measure the very same warmup from recorded pairs:

``prepare OUT`` (here, with Lucene): writes the training pairs of the warmup config (each with the
stage-2 teacher's score, for ``graded_correctness``), its probe pairs and its held-out pairs as JSONL
(``prorank.train.pairs.write_jsonl_pairs``) into ``OUT``.

``run PAIRS RESULTS`` (there): trains every lever of ``LEVERS`` at once, each a ``prorank train
warmup`` process on the warmup config + the common GPU overrides (pairs from ``PAIRS``, a time box,
probe every 25 steps, no trainer checkpoints) + its own overrides, then writes
``RESULTS/warmup-gpu-levers.json``: per lever the row of ``benchmarks/warmup_levers.py`` (steps,
last-10-step means, the probe curve every 25 steps, the held-out format / score AUC / greedy label
shares), with provenance. Each run's ``log.jsonl`` is copied beside it.

    python benchmarks/warmup_gpu.py prepare .gpu/pairs                       # here
    python benchmarks/warmup_gpu.py run .gpu/pairs $OUT --minutes 5          # on the GPU machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: benchmarks/archive/)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # warmup_levers, beside this file
CONFIG = "configs/warmup-cpu-levers.yaml"  # the base the CPU levers overrode (issue #13)
TEACHER = "all-minilm-l6-v2"
# name -> overrides on top of the recipe (each one lever of issue #13, at GPU step counts)
LEVERS = {
    "recipe": [],  # the levers' base recipe (lr 3e-6, 2 prompts x 4 samples a step, correctness reward)
    "graded": ["reward_weights={format: 1.0, graded_correctness: 1.0}"],  # teacher score as the reward
    "wide": ["grpo.per_device_train_batch_size=64", "grpo.num_generations=8"],  # 8 prompts x 8 samples
    "kl": ["grpo.beta=0.04"],  # KL to the base model anchors both labels
    "balance": ["label_balance=1.0", "grpo.learning_rate=1e-5"],  # restoring term on the label bias only
}


def prepare(out: Path, config: str) -> None:
    from prorank.atomic import atomic_write_json
    from prorank.config import load_config
    from prorank.train.heldout import heldout_pairs
    from prorank.train.pairs import write_jsonl_pairs
    from prorank.train.probe import probe_pairs
    from prorank.train.stage1_warmup import WarmupConfig, build_pairs
    from prorank.train.warmup_record import heldout_config

    cfg = load_config(WarmupConfig, config, [f"teacher={TEACHER}"])
    pairs, info = build_pairs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_pairs(pairs, out / "train.jsonl")
    write_jsonl_pairs(probe_pairs(cfg.probe, cfg.data_dir, cfg.seed), out / "probe.jsonl")
    write_jsonl_pairs(heldout_pairs(heldout_config(cfg)), out / "heldout.jsonl")
    atomic_write_json(out / "source.json", {"config": config, "data": info})
    print(f"wrote {out}: {info['pairs']} training pairs {info['labels']}")


def common_overrides(pairs: Path, minutes: float) -> list[str]:
    return [f"jsonl={pairs / 'train.jsonl'}", f"probe.jsonl={pairs / 'probe.jsonl'}", "probe.every=25",
            f"heldout.jsonl={pairs / 'heldout.jsonl'}", "heldout.ranking_queries=0", "num_threads=null",
            f"max_minutes={minutes}", "grpo.max_steps=100000", "grpo.use_cpu=false",
            "grpo.save_strategy='no'"]


def run(pairs: Path, results: Path, minutes: float, levers: list[str], config: str,
        extra: list[str] = (), runs: Path = ROOT / "runs" / "warmup-gpu") -> dict:
    from warmup_levers import summarise

    from prorank.atomic import atomic_write_json
    from prorank.evaluation import provenance

    pairs, results = pairs.resolve(), results.resolve()
    runs = Path(runs).resolve()
    results.mkdir(parents=True, exist_ok=True)
    started, began = provenance.now_utc(), time.time()
    procs = {}
    for name in levers:
        cmd = [sys.executable, "-m", "prorank.cli", "train", "warmup", "--config", config,
               f"output_dir={runs / name}", *common_overrides(pairs, minutes), *LEVERS[name], *extra]
        (runs / name).mkdir(parents=True, exist_ok=True)
        log = open(runs / f"{name}.out", "w")
        procs[name] = (cmd, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log)
    rows = []
    for name, (cmd, proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        row: dict = {"lever": name, "overrides": LEVERS[name], "returncode": rc,
                     "command": " ".join(cmd[1:])}
        out = runs / name
        if rc == 0:  # the CPU levers' summary (warmup_levers.summarise): steps, last-10 means, probe, held-out
            row.update(summarise(out))
            shutil.copy(out / "log.jsonl", results / f"log-{name}.jsonl")
        else:
            row["tail"] = (runs / f"{name}.out").read_text(errors="replace")[-3000:]
        rows.append(row)
    result = {"format": "prorank-warmup-gpu-levers-v1", "config": config,
              "common": [*common_overrides(pairs, minutes), *extra],
              "levers": rows,
              "provenance": {"git": provenance.git_state(), "versions": provenance.versions(),
                             "hardware": provenance.hardware("cuda"), "started": started,
                             "finished": provenance.now_utc(), "seconds": round(time.time() - began, 1)}}
    atomic_write_json(results / "warmup-gpu-levers.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="record the warmup's pairs (needs Lucene)")
    p.add_argument("out", type=Path)
    p.add_argument("--config", default=CONFIG)
    r = sub.add_parser("run", help="train and measure the levers in parallel (needs a GPU)")
    r.add_argument("pairs", type=Path)
    r.add_argument("results", type=Path)
    r.add_argument("--minutes", type=float, default=5.0, help="training time box of each lever")
    r.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    r.add_argument("--config", default=CONFIG)
    r.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="more overrides for every lever")
    r.add_argument("--runs", type=Path, default=ROOT / "runs" / "warmup-gpu", help="the levers' output_dirs")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out, args.config)
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run(args.pairs, args.results, args.minutes, args.levers, args.config, args.set, args.runs)
    for row in result["levers"]:
        print(row["lever"], row["returncode"], row.get("steps"), row.get("heldout"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
