"""Choose the shipped model on dev queries only: the rule of benchmarks/results/pipeline/selection-rule.md.

Every candidate reranks the BM25 top-k of the same dev queries (a stage-2 run's ``dev.json``:
training queries held out of every candidate, plus the dev splits of training-only collections)
through ``prorank.train.devset.evaluate`` -- the function stage 2 evaluates itself with (here
through the evaluation's score cache, so a repeated run does no model work). A candidate whose stage-2 run evaluated this very ``dev.json`` at its saved step (its
``summary.json``) is read from there instead of being scored again. The first candidate is the
challenger: it ships iff its nDCG@10 alone, over all dev queries, is >= every other's (and, with a
``guard``, its nDCG@10 over the guard's collections is no more than the tolerance below any other's).

    PRORANK_DATA_DIR=../shared/data python benchmarks/selection.py \\
        --dev runs/pipeline-cpu/score/dev.json \\
        --candidates '{P: runs/pipeline-cpu/score/model, S: prorank-smollm2-135m}'

writes ``benchmarks/results/pipeline/selection-dev.json`` and prints the table. The second round
(candidate G, ``configs/pipeline-general-cpu.yaml``; rule ``selection-rule-g.md``)::

    PRORANK_DATA_DIR=../shared/data python benchmarks/selection.py \\
        --dev runs/pipeline-general-cpu/score/dev.json \\
        --candidates '{G: runs/pipeline-general-cpu/score/model, S: prorank-smollm2-135m}' \\
        --guard '{collections: [scifact:train, nfcorpus:train], tolerance: 0.01}' \\
        --rule benchmarks/results/pipeline/selection-rule-g.md --out benchmarks/results/pipeline/selection-dev-g.json
"""

from __future__ import annotations

import json
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
class SelectConfig:
    dev: str = "runs/pipeline-cpu/score/dev.json"  # the stage-2 run's dev set (prorank.train.devset.DevSet)
    # name -> checkpoint (alias or folder); the first is the challenger
    candidates: dict = field(default_factory=lambda: {"P": "runs/pipeline-cpu/score/model",
                                                       "S": "prorank-smollm2-135m"})
    out: str = "benchmarks/results/pipeline/selection-dev.json"
    rule: str = "benchmarks/results/pipeline/selection-rule.md"  # the committed rule this run applies
    # the challenger must also stay within `tolerance` of every other candidate on these dev
    # collections, their queries pooled: e.g. {collections: [scifact:train, nfcorpus:train], tolerance: 0.01}
    guard: dict | None = None
    cache: str | None = None  # score cache file (None: the evaluation's default; "none" disables)


def from_run(model: str, dev: Path) -> dict[str, Any] | None:
    """The dev result a stage-2 run recorded for ``dev`` at the step its ``model/`` holds, if any."""
    run = Path(model).parent
    summary = run / "summary.json"
    if not (Path(model).is_dir() and summary.is_file() and (run / "dev.json").resolve() == dev.resolve()):
        return None
    record = json.loads(summary.read_text(encoding="utf-8"))
    best = [h for h in record.get("dev_history", []) if h["step"] == record.get("best_step")]
    if not best:
        return None
    per = {k.split("/", 1)[1]: v for k, v in best[0].items() if k.startswith("dev_ndcg@10/")}
    return {"ndcg@10": best[0]["dev_ndcg@10"], "fused_ndcg@10": best[0]["dev_fused_ndcg@10"],
            "fusion_weight": best[0]["dev_fusion_weight"], "per_collection": per,
            "source": f"{summary} (step {record['best_step']})"}


def measure(model: str, dev: Any, cache: str | None = None) -> dict[str, Any]:
    """``model`` on ``dev`` through the score cache (``cache``: its file; None: the default one)."""
    from prorank.evaluation.cache import open_cache
    from prorank.reranker import Reranker
    from prorank.train.devset import evaluate

    reranker = Reranker.from_pretrained(model, normalize=False)  # raw scores, as stage 2 evaluates itself
    scores = open_cache(cache)
    try:
        result = evaluate(reranker, dev, cache=scores)
    finally:
        if scores is not None:
            scores.close()
    return {"ndcg@10": result.ndcg, "fused_ndcg@10": result.fused_ndcg, "fusion_weight": result.fusion_weight,
            "per_collection": result.per_collection, "source": "scored here"}


def pooled(row: dict[str, Any], counts: dict[str, int], collections: list[str]) -> float:
    """nDCG@10 over the queries of ``collections`` pooled (each query weighs the same).

    >>> round(pooled({"per_collection": {"a:dev": 0.8, "b:dev": 0.2, "c:dev": 0.0}},
    ...              {"a:dev": 3, "b:dev": 1, "c:dev": 5}, ["a:dev", "b:dev"]), 4)
    0.65
    """
    missing = [c for c in collections if c not in row["per_collection"] or c not in counts]
    if missing:
        raise ValueError(f"guard: collections {missing} are not in the dev set {sorted(counts)}")
    return sum(row["per_collection"][c] * counts[c] for c in collections) / sum(counts[c] for c in collections)


def decide(rows: dict[str, dict[str, Any]], challenger: str, counts: dict[str, int],
           guard: dict | None) -> dict[str, Any]:
    """The challenger ships iff its dev nDCG@10 alone is >= every other's and, with a ``guard``, its
    pooled nDCG@10 on the guard's collections is >= every other's minus the guard's tolerance."""
    others = [name for name in rows if name != challenger]
    ships = all(rows[challenger]["ndcg@10"] >= rows[o]["ndcg@10"] for o in others)
    decision: dict[str, Any] = {"challenger": challenger}
    if guard is not None:
        unknown = set(guard) - {"collections", "tolerance"}
        if unknown or "collections" not in guard:
            raise ValueError(f"guard: needs collections (and tolerance), got keys {sorted(guard)}")
        tolerance = float(guard.get("tolerance", 0.0))
        part = {name: pooled(r, counts, list(guard["collections"])) for name, r in rows.items()}
        held = all(part[challenger] >= part[o] - tolerance for o in others)
        decision["guard"] = {**guard, "ndcg@10": part, "held": held}
        ships = ships and held
    decision["ships"] = ships
    return decision


def main(cfg: SelectConfig) -> dict[str, Any]:
    from prorank.train.devset import DevSet

    started = time.time()
    dev_path = Path(cfg.dev)
    dev = DevSet.load(dev_path)
    rows = {name: from_run(model, dev_path) or measure(model, dev, cfg.cache) for name, model in cfg.candidates.items()}
    challenger, *others = list(cfg.candidates)
    described = dev.describe()
    counts = {f"{c['dataset']}:{c['split']}": c["queries"] for c in described["collections"]}
    decision = decide(rows, challenger, counts, cfg.guard)
    ships = decision["ships"]
    report = {
        "command": " ".join(["python", "benchmarks/selection.py", *sys.argv[1:]]), "date": now_utc(),
        "git": git_state(REPO), "machine": hardware(), "versions": versions(),
        "rule": cfg.rule, "dev": described, "candidates": cfg.candidates, "results": rows,
        "decision": {**decision, "shipped": cfg.candidates[challenger] if ships else cfg.candidates[others[0]]},
        "seconds": round(time.time() - started, 1),
    }
    atomic_write_json(cfg.out, report)
    cols = sorted({c for r in rows.values() for c in r["per_collection"]})
    print("| candidate | dev nDCG@10 alone | fused (dev-tuned weight) | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for name, r in rows.items():
        print(f"| {name} | {r['ndcg@10']:.4f} | {r['fused_ndcg@10']:.4f} ({r['fusion_weight']}) | "
              + " | ".join(f"{r['per_collection'].get(c, float('nan')):.4f}" for c in cols) + " |")
    if "guard" in decision:
        print(f"guard ({', '.join(cfg.guard['collections'])} pooled, tolerance {cfg.guard.get('tolerance', 0.0)}): "
              + ", ".join(f"{n} {v:.4f}" for n, v in decision["guard"]["ndcg@10"].items())
              + (" -> held" if decision["guard"]["held"] else " -> not held"))
    print(f"decision: {challenger} {'ships' if ships else 'does not ship'} -> {report['decision']['shipped']}")
    return report


if __name__ == "__main__":
    from prorank.config import config_from_argv

    main(config_from_argv(SelectConfig, sys.argv[1:]))
