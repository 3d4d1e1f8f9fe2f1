"""Stage-1 levers side by side: what each GRPO warmup run's log says about collapse and relevance.

Reads the ``log.jsonl`` of finished (or stopped) ``prorank train warmup`` runs and summarises, per
run: steps, format rate, the share of sampled answers saying ``1`` (``label_one_rate``), the share
of prompts whose samples all got the same reward (``frac_reward_zero_std``), and the held-out probe
(score AUC and greedy label-1 share on fixed dev pairs, ``probe`` block) at the start, its best and
at the end, and -- when the run was measured (``heldout.json``) -- the held-out numbers the issue's
targets are stated in: format success, score AUC and the share of greedy answers saying ``1``.
Prints a Markdown table, writes JSON. ``--keep`` keeps the rows already in ``--out`` (runs whose
folders are gone, e.g. measured on another machine) and adds or replaces the named ones; the
record lists the earlier invocations it keeps rows from (``earlier``).

    python benchmarks/warmup_levers.py --run "group baseline=runs/warmup-cpu-v2" \\
        --run "batch baseline=runs/warmup-cpu-v3" --out benchmarks/results/warmup-levers.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # the repository (this file: benchmarks/archive/)
sys.path.insert(0, str(REPO))
from prorank.atomic import atomic_write_json  # noqa: E402
from prorank.evaluation.provenance import git_state, hardware, now_utc, portable_path, versions  # noqa: E402
from prorank.train.trainlog import read_log  # noqa: E402


def _mean(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return round(sum(values) / len(values), 4) if values else None


def summarise(run_dir: Path, tail: int = 10) -> dict[str, Any]:
    """One run's numbers from its log (``tail``: the last steps averaged for the end state)."""
    steps = [r for r in read_log(run_dir / "log.jsonl") if "reward" in r]
    if not steps:
        raise ValueError(f"{run_dir}/log.jsonl holds no logged GRPO step")
    probes = [r for r in steps if isinstance(r.get("probe_auc"), (int, float))]
    last = steps[-tail:]
    config = {}
    meta = run_dir / "model" / "prorank.json"
    if meta.exists():
        config = json.loads(meta.read_text(encoding="utf-8")).get("config", {})
    return {
        "run": portable_path(run_dir),
        "steps": steps[-1]["step"],
        "settings": {k: config.get(k) for k in ("balanced_batches", "baseline", "label_balance", "label_balance_answer") if k in config}
        | {k: config.get("grpo", {}).get(k) for k in ("num_generations", "per_device_train_batch_size",
                                                         "scale_rewards", "entropy_coef", "learning_rate",
                                                         "lr_scheduler_type", "warmup_steps")
           if k in config.get("grpo", {})},
        f"last{tail}": {k: _mean(last, k) for k in ("format_rate", "accuracy", "label_one_rate",
                                                     "frac_reward_zero_std", "entropy", "policy_label_one",
                                                     "answer_label_one")},
        "probe": None if not probes else {
            "start": {"step": probes[0]["step"], "auc": probes[0]["probe_auc"], "label_one": probes[0]["probe_label_one"]},
            "best_auc": max(p["probe_auc"] for p in probes),
            "end": {"step": probes[-1]["step"], "auc": probes[-1]["probe_auc"], "label_one": probes[-1]["probe_label_one"]},
            "series": [[p["step"], p["probe_auc"], p["probe_label_one"]] for p in probes],
        },
        "heldout": heldout(run_dir / "heldout.json"),
    }


def heldout(path: Path) -> dict[str, Any] | None:
    """The warmed-up model's held-out measurement (``prorank train heldout``), if the run has one."""
    if not path.exists():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    models = {m["name"]: m for m in report["models"]}
    if "warmup" not in models:
        raise ValueError(f"{path}: no 'warmup' model in the held-out report")
    m, answered = models["warmup"], models["warmup"]["answered"]
    pairs = sum(answered.values())

    def column(key: str) -> dict[str, float | None]:  # each model's value, rounded; None where absent
        return {name: None if r.get(key) is None else round(r[key], 4) for name, r in models.items()}

    aucs, stds = column("score_auc"), column("score_std")
    return {"pairs": pairs, "format_rate": m["format_rate"], "accuracy": m["accuracy"], "score_auc": aucs["warmup"],
            "label_one_share": round(answered.get("1", 0) / pairs, 4), "zero_shot_auc": aucs.get("zero-shot"),
            # the scores' spread across the pairs (absent from reports made before it was measured)
            "score_std": stds["warmup"], "zero_shot_score_std": stds.get("zero-shot")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (repeat)")
    parser.add_argument("--out", default="benchmarks/results/warmup-levers.json")
    parser.add_argument("--keep", action="store_true", help="keep the rows already in --out")
    args = parser.parse_args(argv)
    rows, earlier = [], []
    for item in args.run:
        name, sep, path = item.rpartition("=")  # the last "=": a name may hold an override (a=b)
        if not sep:
            parser.error(f"--run takes NAME=RUN_DIR, got {item!r}")
        rows.append({"name": name, **summarise(Path(path))})
    if args.keep and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text(encoding="utf-8"))
        names = {r["name"] for r in rows}
        rows = [r for r in old["runs"] if r["name"] not in names] + rows
        earlier = [*old.get("earlier", []), {k: old.get(k) for k in ("command", "date", "git")}]
    print("| run | steps | format | label-1 rate | zero-std prompts | probe AUC start -> best -> end | probe label-1 end "
          "| held-out format / AUC / greedy 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, p, h = r["last10"], r["probe"] or {}, r["heldout"]
        auc = f"{p['start']['auc']} -> {p['best_auc']} -> {p['end']['auc']}" if p else "-"
        held = f"{h['format_rate']} / {h['score_auc']} / {h['label_one_share']}" if h else "-"
        print(f"| {r['name']} | {r['steps']} | {t['format_rate']} | {t['label_one_rate']} | "
              f"{t['frac_reward_zero_std']} | {auc} | {p.get('end', {}).get('label_one', '-')} | {held} |")
    record = {"command": " ".join(["python", "benchmarks/warmup_levers.py", *(argv or sys.argv[1:])]),
              "date": now_utc(), "git": git_state(REPO), "machine": hardware(), "versions": versions(),
              "runs": rows, **({"earlier": earlier} if earlier else {})}
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
