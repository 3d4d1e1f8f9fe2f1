"""Rerank BM25 candidates with a ``Reranker``, reading and filling the score cache.

The uncached pairs are cut into chunks (``Chunk``: one query's documents) and handed to a chunk
scorer: ``local_scorer`` runs them in this process, ``prorank.evaluation.ray_engine`` on a Ray
actor pool; either way the scores are cached and the runs assembled here.

For each query the ``top_k`` best BM25 candidates are scored (cached pairs are not scored
again) and sorted by score; the remaining BM25 candidates follow in BM25 order with scores below
the reranked ones, so Recall@100 of a top-20 rerank is still measured over 100 documents.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from prorank.evaluation.cache import ScoreCache, ScorerKey, document_key
from prorank.fusion import Fusion, descending
from prorank.model_info import model_dtype
from prorank.prompt import PROMPT_VERSION
from prorank.retrieval.bm25 import Hit

RunLists = dict[str, list[tuple[str, float]]]


def run_hits(run: Mapping[str, Mapping[str, float]]) -> dict[str, list[Hit]]:
    """A read TREC run (``{qid: {docid: score}}``) as first-stage candidates, best first (ties by docid)."""
    return {q: [Hit(d, s) for d, s in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))] for q, docs in run.items()}


@dataclass
class RerankStats:
    """Counts of one reranking pass; ``model_seconds`` is time spent in the model only (summed over
    workers), ``wall_seconds`` the whole pass (cache look-ups, scoring, writing scores)."""

    pairs: int = 0
    scored: int = 0
    cached: int = 0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    workers: dict[str, tuple[int, float]] = field(default_factory=dict)  # worker: (pairs scored, model seconds)


def scorer_key(reranker: Any, instruction: str | None = None) -> ScorerKey:
    """Cache key of ``reranker``: its fingerprint (weights, prompt, max_length) plus other settings."""
    normalize = getattr(reranker, "normalize", False)
    if normalize == "calibrated":  # the scores depend on the map too
        cal = reranker.calibration
        scale = f"calibrated:{cal.method}:{cal.a!r}:{cal.b!r}"
    else:  # raw, or the sigmoid (True and "sigmoid" give the same scores): the keys they always had
        scale = str(bool(normalize))
    settings = [f"dtype={model_dtype(reranker)}", f"normalize={scale}"]
    if instruction:
        settings.append("instruction=" + hashlib.sha256(instruction.encode()).hexdigest()[:16])
    return ScorerKey(model=reranker.fingerprint, prompt=PROMPT_VERSION, settings=";".join(settings))


@dataclass
class Chunk:
    """One query's uncached candidates scored together: one model call, one cache transaction.

    Both engines score exactly these chunks (``Reranker.score(query, docs)``), so the prompts
    batched together, and with them the scores, do not depend on the engine."""

    qid: str
    query: str
    keys: list[str]  # document keys (``document_key``), as in the score cache
    docs: list[Mapping[str, str]]


@dataclass(frozen=True)
class Scored:
    """Scores of ``chunks[index]``, the model time they took and the worker that computed them."""

    index: int
    scores: list[float]
    seconds: float
    worker: str = "local"


def chunk_size(batch_size: int) -> int:
    """Pairs per chunk: four forward passes of ``batch_size``, at least 32."""
    return max(32, int(batch_size) * 4)


class LocalScoring:
    """Chunks scored one after the other by ``reranker`` in this process (``engine: local``)."""

    def __init__(self, reranker: Any, instruction: str | None = None) -> None:
        self.reranker, self.instruction = reranker, instruction
        self.chunk_size = chunk_size(getattr(reranker, "batch_size", 16))
        self.fusion = reranker.fusion

    @property
    def key(self) -> ScorerKey:
        return scorer_key(self.reranker, self.instruction)

    def score_chunks(self, chunks: Sequence[Chunk]) -> Iterator[Scored]:
        for index, chunk in enumerate(chunks):
            began = time.perf_counter()
            values = self.reranker.score(chunk.query, chunk.docs, instruction=self.instruction)
            yield Scored(index, [float(v) for v in values], time.perf_counter() - began)


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
    """Rerank ``candidates[qid][:top_k]`` for every qid with ``reranker`` in this process."""
    return rerank_chunks(LocalScoring(reranker, instruction), queries, candidates, documents, top_k, cache=cache,
                         on_pairs=on_pairs)


def rerank_chunks(
    scoring: Any,
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[Hit]],
    documents: Mapping[str, Mapping[str, str]],
    top_k: int,
    cache: ScoreCache | None = None,
    on_pairs: Callable[[int], None] | None = None,
) -> tuple[RunLists, RerankStats]:
    """Rerank ``candidates[qid][:top_k]`` for every qid; return the new run and counts.

    ``scoring`` is ``LocalScoring`` or ``prorank.evaluation.ray_engine.RayScoring``: ``key`` (of
    the score cache), ``chunk_size`` and ``score_chunks``. Cached pairs are not scored again; the
    others go to ``scoring.score_chunks`` in chunks of at most ``chunk_size`` pairs of one query, and each chunk's scores are stored in one
    transaction as it comes back, so an interrupted run keeps every finished chunk."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    began = time.perf_counter()
    key = scoring.key if cache is not None else None
    size = scoring.chunk_size
    stats = RerankStats()
    heads: dict[str, tuple[list[Hit], list[str]]] = {}
    scores: dict[str, dict[str, float]] = {}
    chunks: list[Chunk] = []
    for qid, hits in candidates.items():
        query = queries[qid]
        head = list(hits[:top_k])
        try:
            docs = [documents[h.docid] for h in head]
        except KeyError as err:
            raise KeyError(f"document {err.args[0]!r} retrieved for query {qid!r} is not in the corpus") from None
        keys = [document_key(h.docid, d) for h, d in zip(head, docs)]
        heads[qid] = (head, keys)
        scores[qid] = dict(cache.get(key, query, keys)) if cache is not None and key is not None else {}
        stats.pairs += len(head)
        hit_count = sum(1 for k in keys if k in scores[qid])
        stats.cached += hit_count
        if on_pairs and hit_count:
            on_pairs(hit_count)
        todo = [i for i, k in enumerate(keys) if k not in scores[qid]]
        for start in range(0, len(todo), size):
            part = todo[start : start + size]
            chunks.append(Chunk(qid, query, [keys[i] for i in part], [docs[i] for i in part]))
    for done in scoring.score_chunks(chunks) if chunks else ():
        chunk = chunks[done.index]
        if len(done.scores) != len(chunk.keys):
            raise RuntimeError(f"chunk {done.index} of query {chunk.qid!r}: {len(done.scores)} scores "
                               f"for {len(chunk.keys)} documents")
        fresh = dict(zip(chunk.keys, done.scores))
        if cache is not None and key is not None:
            cache.put(key, chunk.query, fresh)
        scores[chunk.qid].update(fresh)
        stats.scored += len(fresh)
        stats.model_seconds += done.seconds
        pairs, seconds = stats.workers.get(done.worker, (0, 0.0))
        stats.workers[done.worker] = (pairs + len(fresh), seconds + done.seconds)
        if on_pairs:
            on_pairs(len(fresh))
    run: RunLists = {}
    for qid, hits in candidates.items():
        head, keys = heads[qid]
        run[qid] = ranked_list(head, [scores[qid][k] for k in keys], hits[top_k:])
    stats.wall_seconds = time.perf_counter() - began
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
