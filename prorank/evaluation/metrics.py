"""Retrieval metrics with trec_eval semantics, computed by pytrec_eval (trec_eval's own C code).

``evaluate(qrels, run)`` returns per-query values of:

- ``nDCG@10``    trec_eval ``ndcg_cut.10`` (gain = the judgment, linear; log2 discount)
- ``Recall@100`` trec_eval ``recall.100``
- ``MRR@10``     trec_eval ``recip_rank`` on the run cut to its 10 best documents
- ``MAP``        trec_eval ``map`` (whole run)

A document is relevant when its judgment is >= 1 (trec_eval's default relevance level). Queries
are those with judgments: run entries for unjudged queries are ignored, and a judged query the run
does not answer scores 0 (as ``trec_eval -c``), so an empty result never raises the average.
Ranks follow trec_eval: score descending, ties broken by docid descending.
"""

from __future__ import annotations

from statistics import fmean
from typing import Iterable, Mapping

import pytrec_eval

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

METRICS: tuple[str, ...] = ("nDCG@10", "Recall@100", "MRR@10", "MAP")
_TREC = {"nDCG@10": "ndcg_cut_10", "Recall@100": "recall_100", "MAP": "map"}
MRR_DEPTH = 10


def trec_order(scores: Mapping[str, float]) -> list[str]:
    """Docids in trec_eval's ranking order: score descending, then docid descending."""
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def _as_float_run(run: Run, qids: Iterable[str]) -> dict[str, dict[str, float]]:
    out = {}
    for qid in qids:
        docs = run.get(qid) or {}
        if docs:
            out[qid] = {str(d): float(s) for d, s in docs.items()}
    return out


def evaluate(qrels: Qrels, run: Run, qids: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """Per-query metrics ``{qid: {metric: value}}`` over the judged queries ``qids``.

    ``qids`` defaults to every query in ``qrels``; ids without judgments raise ``KeyError``.
    """
    judged = list(qrels) if qids is None else list(qids)
    for qid in judged:
        if qid not in qrels:
            raise KeyError(f"query {qid!r} has no judgments in qrels")
    sub_qrels = {q: {str(d): int(r) for d, r in qrels[q].items()} for q in judged}
    sub_run = _as_float_run(run, judged)
    per_query = {q: {m: 0.0 for m in METRICS} for q in judged}
    if not sub_run:
        return per_query
    full = pytrec_eval.RelevanceEvaluator(sub_qrels, {"ndcg_cut.10", "recall.100", "map"}).evaluate(sub_run)
    cut = {q: {d: docs[d] for d in trec_order(docs)[:MRR_DEPTH]} for q, docs in sub_run.items()}
    rr = pytrec_eval.RelevanceEvaluator(sub_qrels, {"recip_rank"}).evaluate(cut)
    for qid, values in full.items():
        per_query[qid].update({name: float(values[key]) for name, key in _TREC.items()})
        per_query[qid]["MRR@10"] = float(rr[qid]["recip_rank"])
    return per_query


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average of each metric over queries (0.0 for an empty input)."""
    if not per_query:
        return {m: 0.0 for m in METRICS}
    return {m: fmean(values[m] for values in per_query.values()) for m in METRICS}
