"""The model deployment: one ``Reranker`` per replica, batched across concurrent requests.

The ingress cuts every request into chunks (``ServeConfig.chunk_size`` pairs) and calls
:meth:`RerankerModel.score` once per chunk. ``@serve.batch`` gathers chunks from all concurrent
requests (up to ``max_batch_size`` pairs, waiting at most ``batch_wait_timeout_s``); the whole
batch is encoded, length-sorted and scored with ``Reranker.score_token_ids``, so padding stays
small however the pairs arrived, and on a CPU several forward passes run at once (``streams``).
Encoding and the forward passes run on worker threads: the
replica's event loop keeps accepting requests and answering health checks meanwhile, and with
two batches in flight the next batch is tokenized while the current one runs on the model.
"""

from __future__ import annotations

import asyncio
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ray import serve

from prorank.config import from_dict
from prorank.prompt import PROMPT_VERSION
from prorank.serve.config import ServeConfig


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

    scores: list[float]
    tokens: list[int]
    batch_pairs: int  # pairs in the model batch this chunk was part of
    batch_chunks: int  # chunks (from any requests) in that batch
    first_in_batch: bool  # exactly one chunk per batch says True (for batch metrics)
    error: str | None = None  # the chunk's input could not be encoded (e.g. instruction too long)


def _pairs_in(chunks: list[ScoreChunk]) -> int:
    return sum(len(c.documents) for c in chunks)


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

        self.cfg = from_dict(ServeConfig, cfg, "serve config")
        threads = self.cfg.num_threads or _available_cores()
        torch.set_num_threads(threads)
        self.reranker = Reranker.from_pretrained(
            self.cfg.model,
            device=self.cfg.device,
            dtype=self.cfg.dtype,
            max_length=self.cfg.max_length,
            batch_size=self.cfg.batch_size,
            compile=self.cfg.compile,
            streams=self.cfg.streams,
        )
        if self.cfg.compile:  # compile now (two lengths: the dynamic-shape graph), not in a request
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
            "dtype": str(next(self.reranker.model.parameters()).dtype).replace("torch.", ""),
            "max_length": self.cfg.max_length,
            "batch_size": self.reranker.batch_size,
            "streams": self.reranker.effective_streams,  # this thread has the model thread's torch threads
            "normalize": self.cfg.normalize,
            "compiled": self.cfg.compile,
            "torch_threads": threads,
            "prompt_version": PROMPT_VERSION,
            "metadata": {k: v for k, v in self.reranker.metadata.items() if isinstance(v, (str, int, float, bool))},
        }
        self.score.set_max_batch_size(self.cfg.max_batch_size)
        self.score.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)

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

    def _encode(self, chunks: list[ScoreChunk]) -> list[list[list[int]] | str]:
        """Prompt token ids per chunk, or an error message for a chunk that cannot be encoded.

        A bad chunk fails alone: the other requests in the batch are scored as usual.
        """
        builder = self.reranker.builder
        out: list[list[list[int]] | str] = []
        for c in chunks:
            try:
                docs = [(c.query, self._truncate(d, c.max_tokens_per_doc)) for d in c.documents]
                out.append([e.input_ids for e in builder.encode_many(docs, c.instruction)])
            except (ValueError, TypeError) as err:
                out.append(str(err))
        return out

    def _score(self, prompts: list[list[int]]) -> list[float]:
        raw = self.reranker.score_token_ids(prompts)
        if self.cfg.normalize:
            return [1.0 / (1.0 + math.exp(-s)) for s in raw]
        return raw

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01, max_concurrent_batches=2, batch_size_fn=_pairs_in)
    async def score(self, chunks: list[ScoreChunk]) -> list[ScoreResult]:
        """Score a batch of chunks from concurrent requests; one result per chunk."""
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(self._encode_pool, self._encode, chunks)
        prompts = [p for item in encoded if not isinstance(item, str) for p in item]
        scores = await loop.run_in_executor(self._model_pool, self._score, prompts) if prompts else []
        results, start = [], 0
        for i, item in enumerate(encoded):
            common = dict(batch_pairs=len(prompts), batch_chunks=len(chunks), first_in_batch=i == 0)
            if isinstance(item, str):
                results.append(ScoreResult(scores=[], tokens=[], error=item, **common))
                continue
            end = start + len(item)
            results.append(ScoreResult(scores=scores[start:end], tokens=[len(p) for p in item], **common))
            start = end
        return results
