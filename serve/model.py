"""The model deployment: one ``Reranker`` per replica, batched across concurrent requests.

The ingress cuts every request into chunks (``ServeConfig.chunk_size`` pairs) and calls
:meth:`RerankerModel.score` once per chunk. ``@serve.batch`` gathers chunks from all concurrent
requests (up to ``max_batch_size`` pairs, waiting at most ``batch_wait_timeout_s``); the whole
batch is encoded, length-sorted and cut into forward passes of ``batch_size`` pairs, so padding
stays small however the pairs arrived, and on a CPU several forward passes run at once
(``streams``). Encoding and the forward passes run on worker threads: the replica's event loop
keeps accepting requests and answering health checks meanwhile, and with two batches in flight
the next batch is tokenized while the current one runs on the model.

Cancellation: when a request is cancelled (its client timed out with 504 or went away), Ray
cancels its chunk calls here; a chunk still queued never enters a batch, and a chunk already in
a batch stops being tokenized (within ``ENCODE_SLICE`` documents) and has its pairs dropped
before each next forward pass (the passes under way finish), so the replica is free for other
requests at once.

Scores come back twice: raw (``logit("1") - logit("0")``: what ``raw_scores: true`` returns and
what /v1/search fuses with BM25) and on the deployment's scale (``reranker.normalize``: calibrated
by default). A document with no letter or digit never reaches the model (``prorank.degenerate``).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ray import serve

from prorank.config import from_dict
from prorank.degenerate import DEGENERATE_SCORE, is_degenerate
from prorank.model_info import model_dtype
from prorank.prompt import PROMPT_VERSION
from prorank.serve.config import ServeConfig
from prorank.serve.loopback import keep_replica_servers_on_loopback


@dataclass(frozen=True)
class ScoreChunk:
    """Up to ``chunk_size`` documents of one request (already plain text)."""

    query: str
    documents: list[str]
    instruction: str | None = None
    max_tokens_per_doc: int | None = None


@dataclass(frozen=True)
class ScoreResult:
    """Scores and prompt token counts of one chunk, plus the batch it was scored in."""

    scores: list[float]  # on the deployment's scale (reranker.normalize)
    raw: list[float]  # logit("1") - logit("0"); DEGENERATE_SCORE for a document with no letter or digit
    tokens: list[int]
    batch_pairs: int  # pairs in the model batch this chunk was part of
    batch_chunks: int  # chunks (from any requests) in that batch
    first_in_batch: bool  # exactly one chunk per batch says True (for batch metrics)
    error: str | None = None  # the chunk's input could not be encoded (e.g. instruction too long)


ENCODE_SLICE = 64  # documents tokenized per call; a cancelled chunk stops between calls


@dataclass
class _Job:
    """A chunk in a batch, and whether the request it belongs to still wants it."""

    chunk: ScoreChunk
    cancelled: bool = False


def _pairs_in(jobs: list[_Job]) -> int:
    return sum(len(job.chunk.documents) for job in jobs)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@serve.deployment(name="RerankerModel", max_ongoing_requests=128, health_check_period_s=10)
class RerankerModel:
    """Loads the configured reranker and scores batched chunks."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import torch

        from prorank.reranker import Reranker

        keep_replica_servers_on_loopback()
        self.cfg = from_dict(ServeConfig, cfg, "serve config")
        threads = self.cfg.num_threads or _available_cores()
        torch.set_num_threads(threads)
        self.reranker = Reranker.from_options(self.cfg.model, self.cfg.reranker)
        if self.reranker.compiled:  # compile now (two lengths: the dynamic-shape graph), not in a request
            for doc in ("warm-up", "a longer warm-up document " * 8):
                self.reranker.score_pairs([("warm-up query", doc)] * 2)
        # one thread owns the model (forward passes run one batch at a time); tokenization of the
        # next batch overlaps on a second one
        self._model_pool = ThreadPoolExecutor(1, "prorank-model", initializer=torch.set_num_threads, initargs=(threads,))
        self._encode_pool = ThreadPoolExecutor(1, "prorank-encode")
        self._info = {
            "id": self.cfg.served_name,
            "source": self.cfg.model,
            "fingerprint": self.reranker.fingerprint,
            "device": str(self.reranker.device),
            "dtype": model_dtype(self.reranker),
            "max_length": self.reranker.max_length,
            "batch_size": self.reranker.batch_size,
            "streams": self.reranker.effective_streams,  # this thread has the model thread's torch threads
            "normalize": self.reranker.normalize,
            "calibration": None if self.reranker.calibration is None else self.reranker.calibration.to_dict(),
            "fusion": self.reranker.fusion.to_dict(),  # /v1/search: model score fused with BM25's
            "compiled": self.reranker.compiled,
            "torch_threads": threads,
            "prompt_version": PROMPT_VERSION,
            "metadata": {k: v for k, v in self.reranker.metadata.items() if isinstance(v, (str, int, float, bool))},
        }
        self._score_batch.set_max_batch_size(self.cfg.max_batch_size)
        self._score_batch.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)

    def info(self) -> dict[str, Any]:
        """What ``/v1/models`` reports about this replica's model."""
        return dict(self._info)

    def check_health(self) -> None:
        if self.reranker is None:  # pragma: no cover - defensive
            raise RuntimeError("model not loaded")

    # ------------------------------------------------------------------ batched scoring
    def _truncate(self, text: str, max_tokens: int | None) -> str:
        if max_tokens is None:
            return text
        ids = self.reranker.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= max_tokens else self.reranker.tokenizer.decode(ids[:max_tokens])

    def _encode(self, jobs: list[_Job]) -> list[list[list[int] | None] | str | None]:
        """Prompt token ids per document of each chunk (None for a degenerate document, which is
        not scored), an error message for a chunk that cannot be encoded, or None for a cancelled
        one (checked every ``ENCODE_SLICE`` documents). A bad chunk fails alone: the others are
        scored as usual."""
        builder = self.reranker.builder
        out: list[list[list[int] | None] | str | None] = []
        for job in jobs:
            c = job.chunk
            ids: list[list[int] | None] = []
            try:
                for start in range(0, len(c.documents), ENCODE_SLICE):
                    if job.cancelled:
                        break
                    part = c.documents[start : start + ENCODE_SLICE]
                    docs = [(c.query, self._truncate(d, c.max_tokens_per_doc)) for d in part if not is_degenerate(d)]
                    encoded = iter(builder.encode_many(docs, c.instruction) if docs else [])
                    ids += [None if is_degenerate(d) else next(encoded).input_ids for d in part]
            except (ValueError, TypeError) as err:
                out.append(str(err))
                continue
            out.append(None if job.cancelled else ids)
        return out

    def _forward(self, prompts: list[list[int]], owners: list[_Job]) -> list[float | None]:
        """Raw scores of ``prompts`` (None for those whose request was cancelled meanwhile):
        ``Reranker.score_token_ids``, each forward pass first dropping the prompts of cancelled jobs."""
        return self.reranker.score_token_ids(prompts, keep=lambda i: not owners[i].cancelled)

    async def score(self, chunk: ScoreChunk) -> ScoreResult:
        """Scores of one chunk, computed in a batch with the chunks of concurrent requests."""
        job = _Job(chunk)
        try:
            return await self._score_batch(job)
        except asyncio.CancelledError:
            job.cancelled = True  # read by the batch before each forward pass
            raise

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01, max_concurrent_batches=2, batch_size_fn=_pairs_in)
    async def _score_batch(self, jobs: list[_Job]) -> list[ScoreResult]:
        """Score a batch of chunks from concurrent requests; one result per chunk."""
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(self._encode_pool, self._encode, jobs)
        prompts, owners = [], []
        for job, item in zip(jobs, encoded):
            if isinstance(item, list):
                prompts += [ids for ids in item if ids is not None]
                owners += [job] * sum(ids is not None for ids in item)
        scores = iter(await loop.run_in_executor(self._model_pool, self._forward, prompts, owners) if prompts else [])
        results = []
        first = next((i for i, item in enumerate(encoded) if item is not None), -1)
        for i, item in enumerate(encoded):
            common = dict(batch_pairs=len(prompts), batch_chunks=len(jobs), first_in_batch=i == first)
            if not isinstance(item, list):  # cancelled (nobody reads it) or not encodable
                results.append(ScoreResult(scores=[], raw=[], tokens=[], error=item, **common))
                continue
            raw = [DEGENERATE_SCORE if ids is None else next(scores) for ids in item]
            results.append(ScoreResult(scores=[None if r is None else self.reranker.output(r) for r in raw], raw=raw,
                                       tokens=[0 if ids is None else len(ids) for ids in item], **common))
        return results
