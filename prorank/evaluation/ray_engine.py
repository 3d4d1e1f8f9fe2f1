"""``prorank eval --engine ray``: the pairs to score streamed through a Ray Data actor pool of Rerankers.

The driver (``prorank eval``) keeps the first stage, the score cache, the runs and the metrics;
only scoring moves. The uncached pairs, in the same chunks the local engine scores
(``prorank.evaluation.rerank.Chunk``: one query's documents), become the rows of a Ray Dataset;
``map_batches`` runs them through ``RerankActor``s (``ActorPoolStrategy(size=actors)``, each actor
holding the Reranker the local engine would load, with ``cpus_per_actor`` CPUs and
``gpus_per_actor`` GPUs), and the driver writes each chunk's scores to the score cache as they
stream back, so a killed run loses at most the chunks in flight.

Before the pool starts, one Ray task with an actor's resources loads the model once to learn its
cache key, fusion and description (``describe``): the key depends on the device and dtype the
actors get, which the driver may not have.

Ray is imported only here, and this module only with ``engine: ray``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from prorank.evaluation.cache import ScorerKey
from prorank.evaluation.rerank import Chunk, Scored, chunk_size
from prorank.fusion import Fusion

CHUNKS_PER_CALL = 1  # rows (chunks) per actor call: progress and cache writes per chunk
MAX_BLOCKS = 1000  # blocks the rows are split into (the pool's unit of hand-out)


class RerankActor:
    """One Reranker per actor, loaded as the local engine loads it; scores chunks row by row."""

    def __init__(self, cfg: Any) -> None:
        self.reranker = cfg.load_reranker()
        self.instruction = cfg.instruction
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        scores, seconds = [], []
        for query, titles, texts in zip(batch["query"], batch["titles"], batch["texts"]):
            docs = [{"title": str(title), "text": str(text)} for title, text in zip(titles, texts)]
            began = time.perf_counter()
            values = self.reranker.score(str(query), docs, instruction=self.instruction)
            seconds.append(time.perf_counter() - began)
            scores.append(np.asarray(values, dtype=np.float64))
        out_scores = np.empty(len(scores), dtype=object)
        out_scores[:] = scores
        return {"index": batch["index"], "scores": out_scores, "seconds": np.asarray(seconds),
                "worker": np.asarray([self.worker] * len(scores), dtype=object)}


def describe(cfg: Any) -> dict[str, Any]:
    """What the driver needs of the actors' model: cache key, fusion, chunk size, summary entry."""
    from prorank.evaluation.rerank import scorer_key
    from prorank.model_info import model_info

    reranker = cfg.load_reranker()
    return {"key": scorer_key(reranker, cfg.instruction), "fusion": reranker.fusion,
            "batch_size": reranker.batch_size, "model": model_info(reranker, cfg.model, cfg.instruction)}


@dataclass
class RayScoring:
    """The Ray engine as ``prorank eval`` uses it: a chunk scorer plus what it scores with."""

    cfg: Any
    key: ScorerKey
    chunk_size: int
    fusion: Fusion
    model: dict[str, Any]  # the summary's "model" entry, as an actor loaded it
    cluster: dict[str, Any]  # address, resources, actors, resources per actor
    started_ray: bool = False

    def score_chunks(self, chunks: Sequence[Chunk]) -> Iterator[Scored]:
        """Stream ``chunks`` through the actor pool; yield each one's scores as it comes back."""
        import ray

        rows = [{"index": i, "query": c.query, "titles": [d.get("title") or "" for d in c.docs],
                 "texts": [d.get("text") or "" for d in c.docs]} for i, c in enumerate(chunks)]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
        scored = dataset.map_batches(
            RerankActor,
            fn_constructor_kwargs={"cfg": self.cfg},
            compute=ray.data.ActorPoolStrategy(size=self.cfg.actors),
            batch_size=CHUNKS_PER_CALL,
            num_cpus=self.cfg.cpus_per_actor,
            num_gpus=self.cfg.gpus_per_actor or 0,
            batch_format="numpy",
        )
        for row in scored.iter_rows():
            yield Scored(int(row["index"]), [float(v) for v in row["scores"]], float(row["seconds"]),
                         f"ray:{row['worker']}")

    def close(self) -> None:
        if self.started_ray:
            import ray

            from prorank.retrieval.java import shutdown_ray_beside_jvm

            shutdown_ray_beside_jvm(ray.shutdown)


def connect(cfg: Any) -> RayScoring:
    """Join (``address``) or start a Ray cluster and learn the actors' model (``describe``)."""
    try:
        import ray
    except ImportError:
        raise ValueError("engine: 'ray' needs Ray Data: pip install 'ray[data]'") from None
    started = False
    if not ray.is_initialized():
        from prorank.retrieval.java import init_ray_beside_jvm, shutdown_ray_beside_jvm

        init_ray_beside_jvm(ray.init, address=cfg.address, include_dashboard=False, log_to_driver=False)
        started = True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # `prorank eval` shows its own bar, advanced per chunk
    context.print_on_execution_start = False
    try:
        probe = ray.remote(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor or 0)(describe)
        info = ray.get(probe.remote(cfg))
    except BaseException:
        if started:
            shutdown_ray_beside_jvm(ray.shutdown)
        raise
    resources = ray.cluster_resources()
    cluster = {"address": cfg.address or "local", "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
               "cpus": resources.get("CPU"), "gpus": resources.get("GPU"), "actors": cfg.actors,
               "cpus_per_actor": cfg.cpus_per_actor, "gpus_per_actor": cfg.gpus_per_actor,
               "chunks_per_call": CHUNKS_PER_CALL, "ray": ray.__version__}
    return RayScoring(cfg, info["key"], chunk_size(info["batch_size"]), info["fusion"], info["model"], cluster,
                      started_ray=started)
