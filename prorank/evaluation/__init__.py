"""Offline evaluation: metrics (pytrec_eval), TREC runs, score cache and the ``prorank eval`` job.

Importing this package is cheap; ``EvalConfig``/``main`` live in ``prorank.evaluation.job``.
"""

from prorank.evaluation.cache import ScoreCache, ScorerKey, document_key, query_key
from prorank.evaluation.metrics import METRICS, evaluate, mean_metrics, trec_order
from prorank.evaluation.trec import read_run, write_run

__all__ = [
    "METRICS",
    "ScoreCache",
    "ScorerKey",
    "document_key",
    "evaluate",
    "mean_metrics",
    "query_key",
    "read_run",
    "trec_order",
    "write_run",
]
