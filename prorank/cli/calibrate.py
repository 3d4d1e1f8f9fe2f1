"""``prorank calibrate MODEL``: fit the map from raw score to P(relevant) and store it.

The data: the checkpoint's own dev queries (``config.dev`` of its ``prorank.json``), or the
judged queries of ``--dataset NAME:SPLIT`` (any model, a base model too); each query's BM25
top-20, every candidate labelled by the judgments (``prorank.evaluation.judged_pairs``), scored
raw through the score cache (a repeated run does no model work). The fit:
``prorank.calibration.fit_calibration`` (Platt scaling). Where it goes:

* a checkpoint folder (has ``prorank.json``): into that file, under ``calibration``;
* ``--output FILE``: a file of its own, for any model (``calibration=FILE`` when loading, ``--calibration
  FILE`` on the command line, ``reranker.calibration`` in a serve config).

A registry alias is never written in place: a bundled reranker's files are sha256-pinned in
``prorank/registry.py`` (name its folder to refit it, then update the pin this command prints),
and a pulled base model's folder belongs to the cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prorank.options import add_option_flags, options_from_flags

SKIPPED_OPTIONS = ("normalize", "calibration", "fusion", "fusion_weight", "compile")  # no effect on raw scores


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="fit and store the map from raw score to P(relevant) (scores in [0, 1] a threshold can use)",
        description="Score every BM25 top-20 candidate of judged dev queries with MODEL (through the score "
        "cache), fit P(relevant) = sigmoid(a * score + b) (Platt scaling) to their labels and store it: in "
        "MODEL's prorank.json when MODEL is a checkpoint folder, else in --output FILE. Without --dataset "
        "the checkpoint's own dev queries are used (config.dev in its prorank.json). Prints ECE and Brier "
        "score on those pairs before (sigmoid of the raw score) and after. The ranking never changes.",
    )
    parser.add_argument("model", help="checkpoint folder, alias, hub id or model folder")
    parser.add_argument("--dataset", action="append", dest="datasets", metavar="NAME[:SPLIT]", default=None,
                        help="fit on the judged queries of this collection and split (default split: train; "
                        "repeatable) instead of the checkpoint's dev queries; never the test split you report")
    parser.add_argument("--max-queries", type=int, default=None,
                        help="with --dataset: a seeded sample of this many judged queries per dataset (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="with --dataset: the sample's seed (default 0)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="BM25 candidates per query (default: the checkpoint's dev depth, else 20)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write the calibration to this JSON file (needed for anything but a checkpoint folder)")
    parser.add_argument("--data-dir", default=None, help="where dataset names are looked up ($PRORANK_DATA_DIR)")
    parser.add_argument("--cache", default=None,
                        help="score cache file (default $PRORANK_HOME/cache/scores.sqlite; 'none' disables)")
    add_option_flags(parser, skip=SKIPPED_OPTIONS)
    parser.set_defaults(func=_run)


def destination(model: str, output: str | None) -> Path:
    """Where the calibration will be written (checked before any scoring): ``output``, or the
    ``prorank.json`` of checkpoint folder ``model``; raises ``ValueError`` saying what to do else."""
    from prorank.checkpoint import METADATA_FILE
    from prorank.registry import REGISTRY

    if output is not None:
        return Path(output)
    folder = Path(model).expanduser()
    if model in REGISTRY and not folder.exists():
        raise ValueError(f"{model} is a registry alias, whose files are not written in place (a bundled "
                         f"reranker's are sha256-pinned in prorank/registry.py): give --output FILE and load "
                         f"it with calibration=FILE, or name the checkpoint folder to refit the shipped one")
    if not (folder / METADATA_FILE).is_file():
        raise ValueError(f"{model} is not a checkpoint folder with a {METADATA_FILE}: give --output FILE and "
                         "load it with calibration=FILE (--calibration FILE on the command line)")
    return folder / METADATA_FILE


def pinned_alias(path: Path) -> str | None:
    """The bundled alias whose pinned folder holds ``path``, if any."""
    from prorank.registry import PACKAGE_WEIGHTS, REGISTRY, BundledAdapter

    for alias, spec in REGISTRY.items():
        if isinstance(spec, BundledAdapter) and path.resolve().parent == (PACKAGE_WEIGHTS / spec.folder).resolve():
            return alias
    return None


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from prorank.calibration import fit_calibration, sigmoid, store_in_checkpoint
    from prorank.config import check_positive, from_dict
    from prorank.evaluation.cache import open_cache
    from prorank.evaluation.judged_pairs import score_devset
    from prorank.train.devset import checkpoint_dev, named_queries
    from prorank.evaluation.provenance import portable_path
    from prorank.evaluation.reliability import calibration_measures
    from prorank.options import RerankerOptions
    from prorank.paths import sha256_file
    from prorank.reranker import Reranker

    check_positive("--max-queries", args.max_queries, optional=True)
    check_positive("--top-k", args.top_k, optional=True)
    if args.max_queries is not None and not args.datasets:
        raise ValueError("--max-queries samples the queries of --dataset; the checkpoint's dev set is used whole")
    target = destination(args.model, args.output)
    options = from_dict(RerankerOptions, options_from_flags(args), "prorank calibrate")
    reranker = Reranker.from_options(args.model, options)
    if args.datasets:
        if any(d.endswith(":test") for d in args.datasets):
            print("prorank calibrate: warning: fitting on a test split; do not report that split's calibration "
                  "as held-out evidence", file=sys.stderr)
        dev = named_queries(args.datasets, args.top_k or 20, args.max_queries, args.data_dir, args.seed)
    else:
        try:
            dev = checkpoint_dev(reranker.metadata, args.top_k, args.data_dir)
        except ValueError as err:
            raise ValueError(f"{args.model}: {err}") from None
    cache = open_cache(args.cache)
    try:
        pairs = score_devset(reranker, dev, cache)
    finally:
        if cache is not None:
            cache.close()
    name = portable_path(args.model) if Path(args.model).expanduser().exists() else args.model  # no local paths
    model = {"name": name, "fingerprint": reranker.fingerprint, "max_length": reranker.max_length}
    fitted = fit_calibration(pairs.scores, pairs.labels, fitted_on=pairs.describe(), model=model)
    before = calibration_measures([sigmoid(s) for s in pairs.scores], pairs.labels)
    after = calibration_measures(fitted.probabilities(pairs.scores), pairs.labels)
    measures = {"sigmoid": _rounded(before), "calibrated": _rounded(after)}
    calibration = dataclasses.replace(fitted, fitted_on={**fitted.fitted_on, "measures": measures})
    if args.output is None:
        store_in_checkpoint(target.parent, calibration)
    else:
        calibration.save(target)
    _report(args.model, pairs, calibration, before, after, target)
    alias = pinned_alias(target) if args.output is None else None
    if alias is not None:
        print(f"{target} changed: pin it in prorank/registry.py ({alias!r}, files_sha256):\n"
              f'    "prorank.json": "{sha256_file(target)}",')
    return 0


def _rounded(measures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in measures.items()}


def _report(model: str, pairs: Any, calibration: Any, before: dict, after: dict, target: Path) -> None:
    data = ", ".join(f"{c['dataset']}:{c['split']} {c['queries']}" for c in pairs.collections)
    print(f"{model}: {len(pairs.lists)} queries ({data}), BM25 top-{pairs.top_k}: {before['pairs']} pairs, "
          f"{before['positives']} relevant ({pairs.cached} from the score cache, {pairs.scored} scored)")
    print(f"P(relevant) = sigmoid({calibration.a:.4f} * score {calibration.b:+.4f}); 0.5 at raw score "
          f"{calibration.threshold_score:.3f}")
    print(f"{'on these pairs':<16}{'ECE':>8}{'Brier':>8}{'mean P':>8}  (relevant share {before['positive_rate']:.3f})")
    for name, m in (("sigmoid (raw)", before), ("calibrated", after)):
        print(f"{name:<16}{m['ece']:>8.4f}{m['brier']:>8.4f}{m['mean_probability']:>8.3f}")
    print(f"wrote {target}")
