"""Hard negatives from a first-stage (BM25) ranking, shared by both training stages.

``mine_negatives`` takes, for each query, the BM25 top-``depth`` list, keeps the ranks inside
``window`` and samples ``per_query`` documents from it that are not judged relevant. Judged
positives (any qrels entry with a grade > 0) are never returned; with ``exclude_judged=True``
documents judged non-relevant (grade <= 0) are skipped too. Sampling is deterministic: each
query gets its own ``random.Random`` seeded from ``(seed, qid)``, so the result does not depend
on dict order, on the other queries, or on ``PYTHONHASHSEED``.

The searcher can be any object with ``search(query, k)`` (a ``prorank.retrieval.bm25.BM25Searcher``,
whose ``batch_search(queries, k)`` is used when present)
returning hits as ``(docid, score)`` pairs, objects with a ``docid`` attribute, or plain docids;
or a precomputed run: a mapping ``qid -> ranked docids`` (or ``qid -> {docid: score}``).
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

__all__ = ["hit_docid", "ranked_docids", "positives", "mine_negatives"]


def hit_docid(hit: Any) -> str:
    """The document id of one search hit (``(docid, score)``, an object with ``docid``, or a str)."""
    if isinstance(hit, str):
        return hit
    if isinstance(hit, (tuple, list)) and hit:
        return str(hit[0])
    if isinstance(hit, Mapping) and "docid" in hit:
        return str(hit["docid"])
    docid = getattr(hit, "docid", None)
    if docid is None:
        raise TypeError(f"search hit {hit!r} has no docid (expected (docid, score), .docid or str)")
    return str(docid)


def _ranked_from_run(entry: Any) -> list[str]:
    if isinstance(entry, Mapping):  # {docid: score}: order by score, ties by docid
        return [d for d, _ in sorted(entry.items(), key=lambda kv: (-float(kv[1]), str(kv[0])))]
    return [hit_docid(h) for h in entry]


def ranked_docids(
    searcher: Any, queries: Mapping[str, str], depth: int, *, progress: bool = True
) -> dict[str, list[str]]:
    """BM25 top-``depth`` docids per query from a searcher or a precomputed run mapping."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    out: dict[str, list[str]] = {}
    if isinstance(searcher, Mapping):
        for qid in queries:
            out[qid] = _ranked_from_run(searcher.get(qid, ()))[:depth]
        return out
    if not hasattr(searcher, "search"):
        raise TypeError(
            "searcher must have a search(query, k) method or be a mapping qid -> ranked docids"
        )
    items = list(queries.items())
    with tqdm(total=len(items), desc="BM25 top-%d" % depth, disable=not progress) as bar:
        if hasattr(searcher, "batch_search"):  # BM25Searcher: many queries per JVM call
            for start in range(0, len(items), 64):
                chunk = dict(items[start : start + 64])
                for qid, hits in searcher.batch_search(chunk, depth).items():
                    out[qid] = [hit_docid(h) for h in hits][:depth]
                bar.update(len(chunk))
        else:
            for qid, text in items:
                out[qid] = [hit_docid(h) for h in searcher.search(text, depth)][:depth]
                bar.update(1)
    return {qid: out.get(qid, []) for qid in queries}


def _check_window(window: Sequence[int] | None, depth: int) -> tuple[int, int]:
    if window is None:
        return 0, depth
    if len(window) != 2:
        raise ValueError(f"window must be (start, end), got {window!r}")
    start, end = int(window[0]), int(window[1])
    if start < 0 or end <= start:
        raise ValueError(f"window must satisfy 0 <= start < end, got {window!r}")
    if end > depth:
        raise ValueError(f"window end {end} exceeds depth {depth}")
    return start, end


def positives(judgements: Mapping[str, int] | None) -> set[str]:
    """Docids judged relevant (grade > 0)."""
    return {str(d) for d, g in (judgements or {}).items() if int(g) > 0}


def mine_negatives(
    searcher: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    depth: int = 100,
    window: Sequence[int] | None = None,
    per_query: int = 4,
    seed: int = 0,
    *,
    exclude_judged: bool = False,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Sample ``per_query`` hard negatives per query from the BM25 ranking.

    Args:
        searcher: ``search(query, k)`` object or a precomputed run mapping (see module doc).
        queries: ``qid -> query text``; only these queries are mined.
        qrels: ``qid -> {docid: grade}``; grades > 0 are positives and never returned.
        depth: how many BM25 results to retrieve per query.
        window: ``(start, end)`` as a 0-based, end-exclusive slice of the ranking, i.e. ranks
            ``start+1 .. end``; ``None`` means ``(0, depth)``. E.g. ``(10, 100)`` skips the top 10,
            which are more likely to be unjudged relevant documents.
        per_query: negatives per query (fewer when the window holds fewer candidates).
        seed: sampling seed; equal inputs and seed give equal outputs.
        exclude_judged: also drop documents judged non-relevant (grade <= 0).

    Returns:
        ``qid -> negatives`` in BM25 rank order; a query with no candidate maps to ``[]``.
    """
    if per_query < 0:
        raise ValueError(f"per_query must be >= 0, got {per_query}")
    start, end = _check_window(window, depth)
    ranked = ranked_docids(searcher, queries, depth, progress=progress)
    out: dict[str, list[str]] = {}
    for qid in queries:
        judged = qrels.get(qid, {}) or {}
        banned = {str(d) for d in judged} if exclude_judged else positives(judged)
        seen: set[str] = set()
        candidates: list[str] = []
        for docid in ranked.get(qid, [])[start:end]:
            if docid in banned or docid in seen:
                continue
            seen.add(docid)
            candidates.append(docid)
        rng = random.Random(f"prorank-negatives:{seed}:{qid}")
        if len(candidates) <= per_query:
            chosen = candidates
        else:
            picked = set(rng.sample(range(len(candidates)), per_query))
            chosen = [d for i, d in enumerate(candidates) if i in picked]
        out[qid] = chosen
    return out
