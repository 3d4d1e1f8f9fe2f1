"""Admission control of one ingress replica: the limits behind ``503 Service Unavailable``.

A request that scores documents works only while it holds one of ``max_ongoing_requests``
slots; at most ``max_queued_requests`` more wait for a slot (-1: no limit); any other is
answered at once with 503, the JSON ``{"message"}`` body and ``Retry-After``. Waiting counts
against ``request_timeout_s``. The ingress applies these limits itself, exactly, rather than
leaving them to Ray's HTTP proxy, whose rejections are plain text and whose counts are
approximate; Ray lets each ingress replica take the admitted requests plus
:data:`PROBE_HEADROOM` more (health checks, metrics, requests being turned away).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from prorank.serve.errors import HTTPError

PROBE_HEADROOM = 8


def ray_max_ongoing_requests(max_ongoing: int, max_queued: int) -> int:
    """What Ray lets one ingress replica take at once, so that this class, not Ray, decides."""
    return max_ongoing + max(max_queued, 0) + PROBE_HEADROOM


class Admission:
    """Slots for working requests and a bounded wait for one."""

    def __init__(self, max_ongoing: int, max_queued: int, retry_after_s: int) -> None:
        self._slots = asyncio.Semaphore(max_ongoing)
        self._max_queued = max_queued
        self._retry_after_s = retry_after_s
        self.waiting = 0  # requests waiting for a slot now

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the duration of the block; raises a 503 :class:`HTTPError` when full."""
        if self._slots.locked() and self._max_queued != -1 and self.waiting >= self._max_queued:
            raise HTTPError(
                503,
                "service overloaded: every slot is taken and the queue is full "
                "(max_ongoing_requests, max_queued_requests); retry later",
                {"Retry-After": str(self._retry_after_s)},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
