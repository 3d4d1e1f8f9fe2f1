"""The stage-2 distillation teacher: dense cosine and BM25, fused.

``teacher(q, d) = interpolate(cosine(q, d), bm25(q, d), w)`` over the query's candidate list
(:func:`prorank.fusion.interpolate`: both min-max normalised over the list, ``w`` on BM25), so
teacher scores lie in [0, 1] per query. A document outside the BM25 list (a judged positive BM25
did not retrieve) gets the list's lowest BM25 score. ``w`` is tuned per training collection on
its own training queries (``tune``), never on test queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from prorank.dense import CorpusVectors, DenseEncoder
from prorank.fusion import GRID, interpolate, tune_weight


@dataclass
class HybridTeacher:
    encoder: DenseEncoder
    vectors: CorpusVectors  # of the collection the candidates come from
    bm25_weight: float = 0.3

    def _signals(self, queries: Mapping[str, str], lists: Mapping[str, Sequence[str]],
                 bm25: Mapping[str, Mapping[str, float]]) -> dict[str, tuple[list[str], list[float], list[float]]]:
        """``qid -> (docids, cosines, BM25 scores)``, the queries encoded in one call."""
        qids = [q for q in queries if lists.get(q)]
        qvecs = self.encoder.encode([queries[q] for q in qids]) if qids else []
        out = {}
        for qvec, qid in zip(qvecs, qids):
            ids = list(lists[qid])
            out[qid] = (ids, [float(x) for x in self.vectors.rows(ids) @ qvec], bm25_list(ids, bm25.get(qid, {})))
        return out

    def score_many(self, queries: Mapping[str, str], lists: Mapping[str, Sequence[str]],
                   bm25: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
        """``qid -> {docid: teacher score}`` for every query's candidate list."""
        return {q: dict(zip(ids, interpolate(cos, first, self.bm25_weight)))
                for q, (ids, cos, first) in self._signals(queries, lists, bm25).items()}

    def tune(self, queries: Mapping[str, str], lists: Mapping[str, Sequence[str]],
             bm25: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
             grid: Sequence[float] = GRID) -> dict[float, float]:
        """Set ``bm25_weight`` to the grid value with the best nDCG@10 on these (training) queries;
        return every weight's nDCG@10."""
        self.bm25_weight, table = tune_weight(self._signals(queries, lists, bm25), qrels, "interpolate", grid)
        return table


def bm25_list(docids: Sequence[str], known: Mapping[str, float]) -> list[float]:
    """BM25 scores of ``docids``; those not retrieved get the lowest retrieved score."""
    floor = min(known.values()) if known else 0.0
    return [float(known.get(d, floor)) for d in docids]
