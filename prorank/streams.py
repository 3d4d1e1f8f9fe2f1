"""Scoring streams: several batches in flight at once, each on a thread of its own.

On a CPU, one forward pass of a small model does not keep every core busy: its matrix products
are small (a few hundred rows) and scale poorly across threads, and the many small element-wise
kernels and the Python between them run on one core while the others wait. Running ``streams``
batches concurrently, each with ``threads // streams`` intra-op threads, keeps every core on its
own batch instead (what OpenVINO calls throughput mode), with the same scores (the README's
throughput section has the measurements). The weights are shared; PyTorch releases the GIL
inside its kernels, and its thread-count setting is per calling thread, so the caller's own
setting is untouched.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

from prorank.config import check_positive

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def default_streams(device: torch.device | str) -> int:
    """Streams when none are given: one per intra-op thread of the caller on a CPU, else 1."""
    return torch.get_num_threads() if torch.device(device).type == "cpu" else 1


def _pool(streams: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``streams`` threads (shared by every Reranker that asks for it)."""
    with _pools_lock:
        pool = _pools.get(streams)
        if pool is None:
            pool = _pools[streams] = ThreadPoolExecutor(streams, thread_name_prefix="prorank-stream")
        return pool


def run_streams(
    fn: Callable[[T], R],
    items: Sequence[T],
    streams: int,
    on_done: Callable[[], None] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` with up to ``streams`` items in flight at once.

    Each in-flight item runs on a pool thread with an equal share of the calling thread's torch
    intra-op threads (at least one). One stream, or a single item, runs in the calling thread with
    all of them. ``fn`` must set its own grad mode (``torch.inference_mode`` is per thread).
    Results follow ``items``; the first exception is raised after the remaining items are
    cancelled. ``on_done`` is called once per finished item, in the calling thread.
    """
    check_positive("streams", streams)
    active = min(streams, len(items))
    if active <= 1:
        results = []
        for item in items:
            results.append(fn(item))
            if on_done is not None:
                on_done()
        return results
    threads = max(1, torch.get_num_threads() // active)

    def task(item: T) -> R:
        torch.set_num_threads(threads)  # this pool thread only
        return fn(item)

    futures = [_pool(streams).submit(task, item) for item in items]
    try:
        results = []
        for future in futures:
            results.append(future.result())
            if on_done is not None:
                on_done()
        return results
    except BaseException:
        for future in futures:
            future.cancel()
        raise
