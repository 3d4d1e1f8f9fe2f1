"""Stage-2 training groups from several collections, with BM25 hard negatives and teacher scores.

For each training source (``prorank.train.sources``): BM25 top-``depth`` for its queries (one
Lucene index per collection, built once), negatives sampled inside ``window`` of that ranking
(``prorank.train.negatives.mine_negatives``) or from the collection's given candidates
(``negatives_from: candidates``, every label-0 candidate eligible), one group ``[positive, negatives...]`` per judged
positive (at most ``max_positives_per_query``). With a teacher, every document of a group gets the
hybrid teacher score of :mod:`prorank.teacher` over the query's candidate list (BM25 top-``depth``
plus its judged positives), the BM25 weight tuned on that collection's training queries. Groups of
all sources are then shuffled together (seeded).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Sequence

from prorank.retrieval.bm25 import Hit
from prorank.train.groups import Group, build_groups
from prorank.train.negatives import mine_negatives
from prorank.train.sources import LoadedSource

TEACHER_TUNE_TOP_K = 20  # the teacher's BM25 weight is tuned on reranking this many candidates


def bm25_run(source: LoadedSource, depth: int, qids: Sequence[str] | None = None) -> dict[str, list[Hit]]:
    """BM25 top-``depth`` hits of the source's queries (or of ``qids``)."""
    from prorank.retrieval import BM25Searcher

    wanted = list(qids if qids is not None else source.qids)
    with BM25Searcher.for_dataset(source.data) as searcher:
        return searcher.batch_search({q: source.data.queries[q] for q in wanted}, k=depth)


def teacher_scores(source: LoadedSource, encoder: Any, run: dict[str, list[Hit]], weight: float | None,
                    progress: bool, extra: dict[str, list[str]] | None = None
                    ) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Teacher scores of every query's candidates (BM25 list + judged positives + ``extra``
    documents, e.g. given negatives BM25 did not retrieve), and how."""
    from prorank.teacher import HybridTeacher

    data = source.data
    vectors = encoder.corpus_vectors(data.corpus, progress=progress)
    teacher = HybridTeacher(encoder, vectors, weight if weight is not None else 0.0)
    queries = {q: data.queries[q] for q in source.qids}
    bm25 = {q: {h.docid: h.score for h in run[q]} for q in source.qids}
    info: dict[str, Any] = {"encoder": encoder.name, "fingerprint": encoder.fingerprint[:16]}
    if weight is None:
        head = {q: [h.docid for h in run[q][:TEACHER_TUNE_TOP_K]] for q in source.qids}
        table = teacher.tune(queries, head, bm25, data.qrels)
        info["tuned_on"] = f"{len(queries)} training queries, BM25 top-{TEACHER_TUNE_TOP_K}"
        info["ndcg@10_by_bm25_weight"] = {str(k): round(v, 4) for k, v in table.items()}
        info["bm25_alone_ndcg@10"] = round(table[1.0], 4)
        info["dense_alone_ndcg@10"] = round(table[0.0], 4)
        info["teacher_ndcg@10"] = round(table[teacher.bm25_weight], 4)
    info["bm25_weight"] = teacher.bm25_weight
    lists = {q: list(dict.fromkeys([h.docid for h in run[q]] + [d for d, g in data.qrels[q].items()
                                                                if g > 0 and d in data.corpus]
                                   + list((extra or {}).get(q, ()))))
             for q in source.qids}
    return teacher.score_many(queries, lists, bm25), info


def source_groups(source: LoadedSource, *, n_negatives: int, pool: int, depth: int, window: Sequence[int],
                  exclude_judged: bool, seed: int, encoder: Any = None, teacher_bm25_weight: float | None = None,
                  progress: bool = True) -> tuple[list[Group], dict[str, Any]]:
    """The groups of one source (teacher scores attached when ``encoder`` is given)."""
    data = source.data
    run = bm25_run(source, depth)
    given = source.given_negatives()  # the collection's candidates (all of them), else BM25's window
    ranked = given if given is not None else {q: [h.docid for h in hits] for q, hits in run.items()}
    mined = mine_negatives(ranked, {q: data.queries[q] for q in source.qids}, data.qrels, depth=depth,
                           window=None if given is not None else window, per_query=max(pool, n_negatives),
                           seed=seed, exclude_judged=exclude_judged, progress=False)
    groups = build_groups(data.corpus, {q: data.queries[q] for q in source.qids}, data.qrels, mined,
                          n_negatives, seed, max_positives=source.spec.max_positives_per_query)
    info: dict[str, Any] = {"groups": len(groups)}
    if encoder is not None:
        scores, info["teacher"] = teacher_scores(source, encoder, run, teacher_bm25_weight, progress, extra=mined)
        groups = [dataclasses.replace(g, teacher=tuple(scores[g.qid][d] for d in g.docids)) for g in groups]
    prefix = f"{data.name}/"
    return [dataclasses.replace(g, qid=prefix + g.qid) for g in groups], info


def training_groups(sources: Sequence[LoadedSource], *, n_negatives: int, pool: int, depth: int,
                    window: Sequence[int], exclude_judged: bool, seed: int, encoder: Any = None,
                    teacher_bm25_weight: float | None = None, max_groups: int | None = None,
                    progress: bool = True) -> tuple[list[Group], dict[str, Any]]:
    """Groups of every source, shuffled together (seeded); per-source counts and teacher info."""
    groups: list[Group] = []
    info: dict[str, Any] = {}
    for source in sources:
        part, info[source.spec.label] = source_groups(
            source, n_negatives=n_negatives, pool=pool, depth=depth, window=window, exclude_judged=exclude_judged,
            seed=seed, encoder=encoder, teacher_bm25_weight=teacher_bm25_weight, progress=progress)
        groups += part
    random.Random(f"prorank-score-groups:{seed}").shuffle(groups)
    if max_groups is not None:
        groups = groups[:max_groups]
    return groups, info
