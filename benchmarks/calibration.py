"""Calibration of a reranker's scores (issue #31): before (sigmoid of the raw score) and after.

Three parts, nothing fitted on test queries:

1. **Method choice, on dev only.** The checkpoint's own dev queries (``config.dev`` of its
   ``prorank.json``; BM25 top-20, every candidate labelled by the judgments) are split by query
   into ``--folds`` folds; Platt scaling, a temperature alone (``sigmoid(s / T)``) and isotonic
   regression are each fitted on the other folds and measured on the held-out one (ECE with 10
   bins, Brier score, log loss, pooled over the folds, and isotonic minus Platt with a bootstrap
   interval over queries). The same for the label rule not chosen (any judged grade relevant,
   NFCorpus's indirect links included; see ``prorank.evaluation.judged_pairs``). Also: whether
   refitting Platt on all dev pairs gives the stored calibration (``prorank calibrate``'s result).
2. **Held-out evidence.** The calibration the model carries (``prorank.json``, or ``--calibration
   FILE``) on every BM25 top-20 pair of each collection's judged test queries (``scifact:test``:
   300 queries; ``med:test``: 30 and ``cacm:test``: 52, out of domain): ECE, Brier, log loss, the reliability table, and
   what a client keeping ``relevance_score > t`` gets (precision and recall; t = 0.5 and others),
   before and after; and the ECE the map fitted with the other label rule would have had.
3. **Ranking unchanged.** nDCG@10 of the reranked top-20 sorted by raw and by calibrated scores
   (and the number of queries whose order differs: 0), beside the value the evaluation recorded.

Scores are raw and come through the score cache, as ``prorank eval`` scores them
(``prorank.evaluation.judged_pairs``), so a repeated run does no model work.

    PRORANK_DATA_DIR=../shared/data python benchmarks/calibration.py
    # -> benchmarks/results/calibration-prorank-smollm2-135m.json and .png (reliability diagram)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from prorank.atomic import atomic_write_json  # noqa: E402
from prorank.evaluation.provenance import git_state, hardware, now_utc, versions  # noqa: E402

TARGETS = {"scifact": 0.05}  # ECE targets of issue #31 (in domain); any other collection: OUT_OF_DOMAIN
OUT_OF_DOMAIN = 0.10
THRESHOLD = 0.5  # the threshold; the others show what a client choosing its own gets
THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.5)
Predictor = Callable[[Sequence[float]], list[float]]


# --------------------------------------------------------------------------- methods compared on dev
def fit_temperature(scores: Sequence[float], labels: Sequence[int]) -> Predictor:
    """``sigmoid(s / T)``: the temperature of least log loss (no bias term), by golden-section
    search over ``log(1 / T)`` in [-10, 3] (the loss is convex in ``1 / T``)."""
    from prorank.calibration import sigmoid
    from prorank.evaluation.reliability import log_loss

    def loss(log_a: float) -> float:
        return log_loss([sigmoid(math.exp(log_a) * s) for s in scores], labels)

    lo, hi = -10.0, 3.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        left, right = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, right) if loss(left) < loss(right) else (left, hi)
    a = math.exp((lo + hi) / 2)
    return lambda xs: [sigmoid(a * x) for x in xs]


def fit_isotonic(scores: Sequence[float], labels: Sequence[int]) -> Predictor:
    """Isotonic regression (pool adjacent violators) of the labels on the scores; new scores are
    interpolated linearly between the fitted points, clamped at both ends."""
    import numpy as np

    order = sorted(range(len(scores)), key=lambda i: scores[i])
    blocks: list[list[float]] = []  # [sum of labels, count, sum of scores]
    for i in order:
        blocks.append([float(labels[i]), 1.0, float(scores[i])])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            y, n, s = blocks.pop()
            blocks[-1] = [blocks[-1][0] + y, blocks[-1][1] + n, blocks[-1][2] + s]
    xs = np.array([s / n for _, n, s in blocks])
    ys = np.array([y / n for y, n, _ in blocks])
    return lambda new: [float(v) for v in np.interp(np.asarray(new, dtype=float), xs, ys)]


def fit_platt_predictor(scores: Sequence[float], labels: Sequence[int]) -> Predictor:
    from prorank.calibration import fit_calibration

    return fit_calibration(scores, labels).probabilities


METHODS: dict[str, Callable[[Sequence[float], Sequence[int]], Predictor]] = {
    "platt": fit_platt_predictor, "temperature": fit_temperature, "isotonic": fit_isotonic}


def cross_validate(pairs: Any, folds: int, seed: int = 0, versus: tuple[str, str] | None = None,
                   resamples: int = 1000) -> dict[str, Any]:
    """Out-of-fold ECE, Brier and log loss of each method, folds by query (pooled over folds),
    over all dev pairs and per dev collection (labels as ``pairs.min_grade`` says); with
    ``versus = (x, y)`` also the difference x - y of each measure with a 95% interval from a
    bootstrap over dev queries."""
    from prorank.calibration import sigmoid
    from prorank.evaluation.judged_pairs import labelled_scores
    from prorank.evaluation.reliability import calibration_measures

    keys = sorted(pairs.lists)
    random.Random(f"calibration-cv:{seed}").shuffle(keys)
    fold_of = {k: i % folds for i, k in enumerate(keys)}
    labels: list[int] = []
    collection: list[str] = []  # of each held-out pair
    query: list[str] = []
    predicted: dict[str, list[float]] = {name: [] for name in ["sigmoid (no fit)", *METHODS]}
    for fold in range(folds):
        train = {k: v for k, v in pairs.lists.items() if fold_of[k] != fold}
        held = {k: v for k, v in pairs.lists.items() if fold_of[k] == fold}
        train_scores, train_labels = labelled_scores(train, pairs.qrels, pairs.min_grade)
        held_scores, held_labels = labelled_scores(held, pairs.qrels, pairs.min_grade)
        labels += held_labels
        collection += [k.split("/", 1)[0] for k, (ids, _, _) in held.items() for _ in ids]
        query += [k for k, (ids, _, _) in held.items() for _ in ids]
        predicted["sigmoid (no fit)"] += [sigmoid(s) for s in held_scores]
        for name, fit in METHODS.items():
            predicted[name] += fit(train_scores, train_labels)(held_scores)
    out: dict[str, Any] = {}
    for name, probs in predicted.items():
        out[name] = {"all": _round(calibration_measures(probs, labels))}
        for col in sorted(set(collection)):
            idx = [i for i, c in enumerate(collection) if c == col]
            out[name][col] = _round(calibration_measures([probs[i] for i in idx], [labels[i] for i in idx]))
    if versus is not None:
        out[f"{versus[0]} - {versus[1]}"] = bootstrap_difference(
            predicted[versus[0]], predicted[versus[1]], labels, query, resamples, seed)
    return out


def bootstrap_difference(x: list[float], y: list[float], labels: list[int], query: list[str], resamples: int,
                         seed: int) -> dict[str, Any]:
    """ECE, Brier and log loss of predictions ``x`` minus those of ``y`` on the same pairs, and the
    2.5/97.5 percentiles of that difference over query resamples (with replacement)."""
    from prorank.evaluation.reliability import brier_score, expected_calibration_error, log_loss

    measures = {"ece": expected_calibration_error, "brier": brier_score, "log_loss": log_loss}
    by_query: dict[str, list[int]] = {}
    for i, q in enumerate(query):
        by_query.setdefault(q, []).append(i)
    queries = sorted(by_query)
    rng = random.Random(f"calibration-bootstrap:{seed}")
    samples: dict[str, list[float]] = {m: [] for m in measures}
    for _ in range(resamples):
        idx = [i for q in rng.choices(queries, k=len(queries)) for i in by_query[q]]
        for name, f in measures.items():
            ls = [labels[i] for i in idx]
            samples[name].append(f([x[i] for i in idx], ls) - f([y[i] for i in idx], ls))
    out: dict[str, Any] = {"resamples": resamples, "by": "query"}
    for name, f in measures.items():
        values = sorted(samples[name])
        out[name] = {"difference": round(f(x, labels) - f(y, labels), 6),
                     "ci95": [round(values[int(0.025 * resamples)], 6), round(values[int(0.975 * resamples) - 1], 6)]}
    return out


# --------------------------------------------------------------------------- held-out evidence
def ranking_check(pairs: Any, calibration: Any) -> dict[str, Any]:
    """nDCG@10 of each query's candidates sorted by raw and by calibrated score, and the queries
    whose order differs between the two."""
    from prorank.evaluation.metrics import evaluate, mean_metrics
    from prorank.fusion import descending

    runs: dict[str, dict[str, dict[str, float]]] = {"raw": {}, "calibrated": {}}
    differ = 0
    for key, (ids, raw, _) in pairs.lists.items():
        probs = calibration.probabilities(raw)
        differ += descending(raw) != descending(probs)
        runs["raw"][key] = dict(zip(ids, raw))
        runs["calibrated"][key] = dict(zip(ids, probs))
    ndcg = {name: round(mean_metrics(evaluate(pairs.qrels, run, list(pairs.lists)))["nDCG@10"], 6)
            for name, run in runs.items()}
    return {"ndcg@10": ndcg, "queries_whose_order_differs": differ, "equal": ndcg["raw"] == ndcg["calibrated"]}


def recorded_ndcg(dataset: str) -> float | None:
    """The shipped model's nDCG@10 in ``benchmarks/results/quality-<dataset>.json`` (same pairs)."""
    import json

    path = REPO / "benchmarks" / "results" / f"quality-{dataset}.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text()).get("rows", [])
    return next((r["metrics"]["nDCG@10"] for r in rows if r.get("system") == "shipped model"), None)


def evidence(pairs: Any, calibration: Any, name: str, alternative: Any) -> dict[str, Any]:
    from prorank.calibration import sigmoid
    from prorank.evaluation.reliability import calibration_measures, reliability_table, threshold_counts

    scores, labels = pairs.scores, pairs.labels
    scales = {"before": [sigmoid(s) for s in scores], "after": calibration.probabilities(scores)}
    relevant = [s for s, y in zip(scores, labels) if y]
    dataset = name.split(":")[0]
    target = TARGETS.get(dataset, OUT_OF_DOMAIN)
    result: dict[str, Any] = {
        "queries": len(pairs.lists), "pairs": len(scores), "positives": sum(labels),
        "raw_score_range": {"min": round(min(scores), 4), "max": round(max(scores), 4),
                            "min_of_relevant": round(min(relevant), 4)},
        "scored": pairs.scored, "cached": pairs.cached,
    }
    for scale, probs in scales.items():
        result[scale] = {**_round(calibration_measures(probs, labels)),
                         "thresholds": {str(t): _round(threshold_counts(probs, labels, t)) for t in THRESHOLDS},
                         "reliability": [_round(row) for row in reliability_table(probs, labels)]}
    result["after_with_the_alternative_label_rule"] = _round(
        calibration_measures(alternative.probabilities(scores), labels))  # for comparison only
    result["ece_target"] = {"target": target, "met": result["after"]["ece"] <= target}
    result["ranking"] = {**ranking_check(pairs, calibration), "recorded_ndcg@10": recorded_ndcg(dataset)}
    return result


def _round(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}


def plot(collections: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Reliability diagram: per collection, positive rate against mean probability per bin,
    before and after, with the pairs per bin (after) as bars on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(collections), figsize=(5.2 * len(collections), 4.8), squeeze=False)
    for ax, (name, data) in zip(axes[0], collections.items()):
        counts = ax.twinx()
        after = data["after"]["reliability"]
        counts.bar([(r["lower"] + r["upper"]) / 2 for r in after], [r["count"] for r in after], width=0.09,
                   color="0.88", zorder=0)
        counts.set_yscale("log")
        counts.set_ylabel("pairs per bin (calibrated)", color="0.5")
        ax.set_zorder(counts.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls=":", label="perfect")
        for scale, style in (("before", dict(color="tab:red", marker="s", label="sigmoid of raw score (before)")),
                             ("after", dict(color="tab:blue", marker="o", label="calibrated (after)"))):
            rows = [r for r in data[scale]["reliability"] if r["count"]]
            ax.plot([r["mean_probability"] for r in rows], [r["positive_rate"] for r in rows], lw=1.5, **style)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean predicted P(relevant) in bin")
        ax.set_ylabel("share of relevant pairs in bin")
        ax.set_title(f"{name}: {data['queries']} queries, {data['pairs']} pairs\n"
                     f"ECE {data['before']['ece']:.3f} -> {data['after']['ece']:.3f}, "
                     f"Brier {data['before']['brier']:.3f} -> {data['after']['brier']:.3f}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="prorank-smollm2-135m", help="checkpoint (alias or folder)")
    parser.add_argument("--calibration", default=None,
                        help="a calibration file to measure (default: the model's own, in its prorank.json)")
    parser.add_argument("--datasets", nargs="+", default=["scifact:test", "med:test", "cacm:test"],
                        help="held-out collections NAME:SPLIT (scored, never fitted on)")
    parser.add_argument("--top-k", type=int, default=20, help="BM25 candidates per query (the evaluation's depth)")
    parser.add_argument("--folds", type=int, default=5, help="folds of dev queries for the method comparison")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache", default=None, help="score cache (default: the shared one)")
    parser.add_argument("--out", default=None,
                        help="output prefix (default benchmarks/results/calibration-<model name>): .json and .png")
    args = parser.parse_args(argv)

    from prorank.calibration import fit_calibration
    from prorank.evaluation.cache import open_cache
    from prorank.evaluation.judged_pairs import score_devset
    from prorank.train.devset import checkpoint_dev, named_queries
    from prorank.reranker import Reranker

    began = time.time()
    reranker = Reranker.from_pretrained(args.model, calibration=args.calibration)
    calibration = reranker.calibration
    if calibration is None:
        raise SystemExit(f"{args.model} has no calibration: run `prorank calibrate {args.model}` first "
                         "(or give --calibration FILE)")
    cache = open_cache(args.cache)
    try:
        dev = score_devset(reranker, checkpoint_dev(reranker.metadata, args.top_k, args.data_dir), cache)
        held_out = {name: score_devset(reranker, named_queries([name], args.top_k, None, args.data_dir), cache)
                    for name in args.datasets}
    finally:
        if cache is not None:
            cache.close()
    refit = fit_calibration(dev.scores, dev.labels)
    any_grade = dataclasses.replace(dev, min_grade=1, _flat=None)
    alternative = fit_calibration(any_grade.scores, any_grade.labels)  # the label rule not chosen (on dev)
    selection = {"data": dev.describe(), "pairs": len(dev.scores), "positives": sum(dev.labels),
                 "folds": args.folds, "folds_by": "query (seeded shuffle)",
                 "out_of_fold": cross_validate(dev, args.folds, versus=("isotonic", "platt")),
                 "label_rule_alternative": {
                     "labels": any_grade.describe()["labels"], "positives": sum(any_grade.labels),
                     "out_of_fold": cross_validate(any_grade, args.folds),
                     "platt_on_all_dev_pairs": {"a": alternative.a, "b": alternative.b}},
                 "refit_on_all_dev_pairs": {"a": refit.a, "b": refit.b},
                 "stored_matches_refit": math.isclose(refit.a, calibration.a, rel_tol=1e-6)
                 and math.isclose(refit.b, calibration.b, rel_tol=1e-6, abs_tol=1e-9)}
    collections = {name: evidence(pairs, calibration, name, alternative) for name, pairs in held_out.items()}

    name = Path(args.model).name
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"calibration-{name}"
    record = {
        "format": "prorank-calibration-benchmark-v1",
        "command": " ".join(["python", "benchmarks/calibration.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": now_utc(), "git": git_state(REPO), "machine": hardware(str(reranker.device)), "versions": versions(),
        "model": {"name": args.model, "fingerprint": reranker.fingerprint, "max_length": reranker.max_length},
        "calibration": calibration.to_dict(),
        "calibration_source": args.calibration or "the model's prorank.json",
        "labels": "every BM25 top-20 candidate of each judged query; relevant = judged grade > 0, unjudged = 0",
        "method_selection_on_dev": selection,
        "held_out": collections,
        "seconds": round(time.time() - began, 1),
    }
    atomic_write_json(out.with_suffix(".json"), record)
    plot(collections, out.with_suffix(".png"), f"{args.model}: reliability on held-out test pairs (BM25 top-{args.top_k})")
    _print(record)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return record


def _print(record: dict[str, Any]) -> None:
    cal = record["calibration"]
    print(f"calibration: sigmoid({cal['a']:.4f} * score {cal['b']:+.4f}), fitted on "
          f"{cal['fitted_on'].get('queries')} dev queries ({cal['fitted_on'].get('pairs')} pairs)")
    sel = record["method_selection_on_dev"]
    print(f"\nmethod choice, dev queries, {sel['folds']}-fold out-of-fold ({sel['pairs']} pairs):")
    methods = {k: v for k, v in sel["out_of_fold"].items() if " - " not in k}
    subsets = list(next(iter(methods.values())))
    print("| method | " + " | ".join(f"{c}: ECE / Brier / log loss" for c in subsets) + " |")
    print("|---|" + "---|" * len(subsets))
    for method, by in methods.items():
        cells = [f"{by[c]['ece']:.4f} / {by[c]['brier']:.4f} / {by[c]['log_loss']:.4f}" for c in subsets]
        print(f"| {method} | " + " | ".join(cells) + " |")
    for pair, diff in sel["out_of_fold"].items():
        if " - " in pair:
            print(f"{pair} (bootstrap over dev queries, 95%): " + ", ".join(
                f"{m} {d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
                for m, d in diff.items() if isinstance(d, dict)))
    alt = sel["label_rule_alternative"]
    platt = alt["out_of_fold"]["platt"]
    print(f"(with '{alt['labels']}' instead: {alt['positives']} relevant pairs, Platt out-of-fold ECE "
          + ", ".join(f"{c} {platt[c]['ece']:.4f}" for c in subsets) + ")")
    print(f"stored calibration = Platt refit on all dev pairs: {sel['stored_matches_refit']}")
    print("\nheld-out test pairs (BM25 top-20), before = sigmoid(raw), after = calibrated:")
    print("| collection | pairs (relevant) | ECE before | ECE after | target | Brier before | Brier after | "
          "P / R at 0.5 before | P / R at 0.5 after | nDCG@10 raw / calibrated (recorded) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, c in record["held_out"].items():
        pr = {s: c[s]["thresholds"][str(THRESHOLD)] for s in ("before", "after")}
        fmt = {s: f"{_f(pr[s]['precision'])} / {_f(pr[s]['recall'])}" for s in pr}
        rank = c["ranking"]
        print(f"| {name} | {c['pairs']} ({c['positives']}) | {c['before']['ece']:.4f} | {c['after']['ece']:.4f} | "
              f"<= {c['ece_target']['target']} ({'met' if c['ece_target']['met'] else 'MISSED'}) | "
              f"{c['before']['brier']:.4f} | {c['after']['brier']:.4f} | {fmt['before']} | {fmt['after']} | "
              f"{rank['ndcg@10']['raw']:.4f} / {rank['ndcg@10']['calibrated']:.4f} ({rank['recorded_ndcg@10']}) |")
    print("\nprecision / recall (pairs kept) of relevance_score > t, calibrated:")
    for name, c in record["held_out"].items():
        print(f"  {name}: " + "; ".join(f"{t}: {_f(v['precision'])} / {_f(v['recall'])} ({v['kept']})"
                                       for t, v in c["after"]["thresholds"].items()))


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
