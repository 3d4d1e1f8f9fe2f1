"""Judged pairs: every BM25 candidate of judged queries, scored by a reranker, with its label.

What a calibration is fitted on (``prorank calibrate``: dev queries) and measured on
(``benchmarks/calibration.py``: test queries): each query's BM25 top-``top_k`` (the evaluation's
depth, 20), every candidate, judged or not; label 1 when the judgments give it the top grade its
collection uses, else 0 (an unjudged candidate counts as not relevant, as it does in nDCG). In a
binary collection (SciFact, MED) that is every judged document; in a graded one the fully relevant
grade: NFCorpus's 2 (a direct link), not its 1 (an indirect one, which no score can see: 22% of
the shipped model's NFCorpus dev candidates in every score bin from 0 to 6 are such links, so
counting them flattens the map; docs/calibration.md has the measurement). Scores are the raw
``logit("1") - logit("0")`` and come through the on-disk score cache exactly as ``prorank eval``
scores them (``prorank.evaluation.rerank.rerank_chunks``), so a repeated run does no model work.

Query sets are ``prorank.train.devset.DevSet`` objects (BM25 candidates included), built by
``prorank.train.devset.checkpoint_dev`` (the dev queries a stage-2 checkpoint was tuned on) or
``named_queries`` (the judged queries of named collections).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from prorank.evaluation.cache import ScoreCache
from prorank.evaluation.rerank import LocalScoring, rerank_chunks
from prorank.retrieval.bm25 import Hit

DEFAULT_TOP_K = 20  # BM25 candidates per query: the evaluation's depth
LABEL_RULE = "label 1 = judged at the top grade of its collection (binary: any judgment); others and unjudged 0"

ScoredLists = Mapping[str, tuple[Sequence[str], Sequence[float], Any]]
Qrels = Mapping[str, Mapping[str, int]]


def top_grades(qrels: Qrels) -> dict[str, int]:
    """The highest grade each collection's judgments use; keys are ``"collection/qid"``."""
    tops: dict[str, int] = {}
    for key, judged in qrels.items():
        collection = key.split("/", 1)[0]
        tops[collection] = max([tops.get(collection, 1), *judged.values()])
    return tops


def labelled_scores(lists: ScoredLists, qrels: Qrels, min_grade: int | None = None) -> tuple[list[float], list[int]]:
    """Flat ``(scores, labels)`` of scored candidate lists: ``"collection/qid" -> (docids, scores,
    ...)`` as ``prorank.train.devset.score_lists`` returns them, with the judgments under the same
    keys (what a training stage that has its dev scores passes to
    ``prorank.calibration.fit_calibration``). Label 1: judged at least ``min_grade`` (default: the
    top grade of the collection, ``top_grades``)."""
    tops = top_grades(qrels)
    scores: list[float] = []
    labels: list[int] = []
    for key, (docids, values, *_) in lists.items():
        judged = qrels.get(key, {})
        least = min_grade if min_grade is not None else tops.get(key.split("/", 1)[0], 1)
        scores += [float(v) for v in values]
        labels += [int(judged.get(d, 0) >= least > 0) for d in docids]
    return scores, labels


@dataclass
class JudgedPairs:
    """Scored candidates per query (``"collection/qid"``), in BM25 order, and where they came from."""

    lists: dict[str, tuple[list[str], list[float], list[float]]]  # key -> (docids, raw scores, BM25 scores)
    qrels: dict[str, dict[str, int]]  # key -> the query's judgments
    collections: list[dict[str, Any]]  # dataset, split, path, queries
    top_k: int
    scored: int = 0  # pairs the model scored in this run
    cached: int = 0  # pairs read from the score cache
    min_grade: int | None = None  # label 1 from this grade on (None: the top grade of each collection)
    _flat: tuple[list[float], list[int]] | None = field(default=None, repr=False)

    def _pairs(self) -> tuple[list[float], list[int]]:
        if self._flat is None:
            self._flat = labelled_scores(self.lists, self.qrels, self.min_grade)
        return self._flat

    @property
    def scores(self) -> list[float]:
        return self._pairs()[0]

    @property
    def labels(self) -> list[int]:
        return self._pairs()[1]

    def subset(self, collection: str) -> "JudgedPairs":
        """The pairs of one collection (its ``dataset`` name)."""
        keys = [k for k in self.lists if k.split("/", 1)[0] == collection]
        return JudgedPairs({k: self.lists[k] for k in keys}, {k: self.qrels[k] for k in keys},
                           [c for c in self.collections if c["dataset"] == collection], self.top_k,
                           min_grade=self.min_grade)

    def describe(self) -> dict[str, Any]:
        """The data, as a calibration records it (``fitted_on``)."""
        labels = LABEL_RULE if self.min_grade is None else f"label 1 = judged grade >= {self.min_grade}; others 0"
        grades = top_grades(self.qrels) if self.min_grade is None else {}
        return {"collections": [{**c, **({"relevant_grade": grades[c["dataset"]]} if c["dataset"] in grades else {})}
                                for c in self.collections],
                "queries": len(self.lists), "top_k": self.top_k,
                "candidates": f"BM25 top-{self.top_k} of every query (k1=0.9, b=0.4)", "labels": labels}


def score_devset(reranker: Any, dev: Any, cache: ScoreCache | None, instruction: str | None = None) -> JudgedPairs:
    """Raw scores of every candidate of ``dev`` (a ``DevSet``), through ``cache`` when given."""
    if reranker.normalize is not False:
        raise ValueError(f"judged pairs are scored raw: load the reranker with normalize=False, not {reranker.normalize!r}")
    scoring = LocalScoring(reranker, instruction)
    pairs = JudgedPairs({}, {}, [], dev.top_k)
    for col in dev.collections:
        candidates = {q: [Hit(d, s) for d, s in col.candidates[q]] for q in col.qids}
        run, stats = rerank_chunks(scoring, col.query_text, candidates, col.docs, dev.top_k, cache=cache)
        pairs.scored += stats.scored
        pairs.cached += stats.cached
        for qid in col.qids:
            scores = dict(run[qid])
            ids = [d for d, _ in col.candidates[qid]]
            pairs.lists[f"{col.name}/{qid}"] = (ids, [scores[d] for d in ids], [s for _, s in col.candidates[qid]])
            pairs.qrels[f"{col.name}/{qid}"] = dict(col.qrels[qid])
        pairs.collections.append({"dataset": col.name, "split": col.split, "path": col.path, "queries": len(col.qids)})
    return pairs
