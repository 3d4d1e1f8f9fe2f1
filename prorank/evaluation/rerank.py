"""Rerank BM25 candidates with a ``Reranker``, reading and filling the score cache.

For each query the ``top_k`` best BM25 candidates are scored (cached pairs are not scored
again) and sorted by score; the remaining BM25 candidates follow in BM25 order with scores below
the reranked ones, so Recall@100 of a top-20 rerank is still measured over 100 documents.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from prorank.evaluation.cache import ScoreCache, ScorerKey, document_key
from prorank.fusion import Fusion, descending
from prorank.prompt import PROMPT_VERSION
from prorank.retrieval.bm25 import Hit

RunLists = dict[str, list[tuple[str, float]]]


def run_hits(run: Mapping[str, Mapping[str, float]]) -> dict[str, list[Hit]]:
    """A read TREC run (``{qid: {docid: score}}``) as first-stage candidates, best first (ties by docid)."""
    return {q: [Hit(d, s) for d, s in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))] for q, docs in run.items()}


@dataclass
class RerankStats:
    """Counts of one reranking pass; ``model_seconds`` is time spent in the model only."""

    pairs: int = 0
    scored: int = 0
    cached: int = 0
    model_seconds: float = 0.0

    @property
    def pairs_per_second(self) -> float | None:
        return self.scored / self.model_seconds if self.scored and self.model_seconds > 0 else None


def scorer_key(reranker: Any, instruction: str | None = None) -> ScorerKey:
    """Cache key of ``reranker``: its fingerprint (weights, prompt, max_length) plus other settings."""
    dtype = str(next(reranker.model.parameters()).dtype).replace("torch.", "")
    settings = [f"dtype={dtype}", f"normalize={bool(getattr(reranker, 'normalize', False))}"]
    if instruction:
        settings.append("instruction=" + hashlib.sha256(instruction.encode()).hexdigest()[:16])
    return ScorerKey(model=reranker.fingerprint, prompt=PROMPT_VERSION, settings=";".join(settings))


def rerank_run(
    reranker: Any,
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[Hit]],
    documents: Mapping[str, Mapping[str, str]],
    top_k: int,
    cache: ScoreCache | None = None,
    instruction: str | None = None,
    on_pairs: Callable[[int], None] | None = None,
) -> tuple[RunLists, RerankStats]:
    """Rerank ``candidates[qid][:top_k]`` for every qid; return the new run and counts."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    key = scorer_key(reranker, instruction) if cache is not None else None
    chunk = max(32, int(getattr(reranker, "batch_size", 16)) * 4)  # pairs per cache transaction
    stats = RerankStats()
    run: RunLists = {}
    for qid, hits in candidates.items():
        query = queries[qid]
        head = list(hits[:top_k])
        try:
            docs = [documents[h.docid] for h in head]
        except KeyError as err:
            raise KeyError(f"document {err.args[0]!r} retrieved for query {qid!r} is not in the corpus") from None
        keys = [document_key(h.docid, d) for h, d in zip(head, docs)]
        scores = dict(cache.get(key, query, keys)) if cache is not None and key is not None else {}
        stats.pairs += len(head)
        hit_count = sum(1 for k in keys if k in scores)
        stats.cached += hit_count
        if on_pairs and hit_count:
            on_pairs(hit_count)
        todo = [i for i, k in enumerate(keys) if k not in scores]
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            began = time.perf_counter()
            values = reranker.score(query, [docs[i] for i in part], instruction=instruction)
            stats.model_seconds += time.perf_counter() - began
            fresh = {keys[i]: float(v) for i, v in zip(part, values)}
            if cache is not None and key is not None:
                cache.put(key, query, fresh)
            scores.update(fresh)
            stats.scored += len(part)
            if on_pairs:
                on_pairs(len(part))
        run[qid] = ranked_list(head, [scores[k] for k in keys], hits[top_k:])
    return run, stats


def ranked_list(head: Sequence[Hit], scores: Sequence[float], tail: Sequence[Hit]) -> list[tuple[str, float]]:
    """``head`` sorted by ``scores`` (best first), then ``tail`` in its own order with scores below
    every head score."""
    ranked = [(head[i].docid, float(scores[i])) for i in descending(scores)]
    floor = min(scores) if len(scores) else 0.0
    return ranked + [(h.docid, floor - 1.0 - j) for j, h in enumerate(tail)]


def fuse_run(reranked: RunLists, candidates: Mapping[str, Sequence[Hit]], top_k: int, fusion: Fusion) -> RunLists:
    """The run of ``fusion`` over each query's reranked top-``top_k``: model scores (from
    ``reranked``) fused with the first-stage scores of ``candidates``; the rest follows as in
    ``rerank_run``."""
    out: RunLists = {}
    for qid, hits in candidates.items():
        head = list(hits[:top_k])
        model = dict(reranked[qid])
        fused = fusion.fuse([model[h.docid] for h in head], [h.score for h in head])
        out[qid] = ranked_list(head, fused, hits[top_k:])
    return out
