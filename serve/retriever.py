"""The BM25 deployment: a pyserini index opened once per replica, for ``POST /v1/search``.

All index calls run on one dedicated thread (the JVM is attached to it once), so the replica's
event loop stays free and pyjnius never sees a new thread per request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from prorank.serve.loopback import keep_replica_servers_on_loopback


@serve.deployment(name="BM25Retriever", max_ongoing_requests=32, health_check_period_s=10)
class BM25Retriever:
    """Searches the configured index and returns hits with their stored title and text."""

    def __init__(self, index_dir: str) -> None:
        """``index_dir``: a Lucene index folder or a pyserini prebuilt index name."""
        keep_replica_servers_on_loopback()
        self.index_dir = index_dir
        self._pool = ThreadPoolExecutor(1, "prorank-bm25")
        self._searcher = self._pool.submit(self._open).result()

    def _open(self) -> Any:
        from prorank.retrieval.bm25 import BM25Searcher

        return BM25Searcher(self.index_dir)

    def _search(self, query: str, k: int) -> list[dict[str, Any]]:
        hits = self._searcher.search(query, k)
        out = []
        for hit in hits:
            doc = self._searcher.document(hit.docid) or {}
            out.append(
                {
                    "docid": hit.docid,
                    "bm25_score": float(hit.score),
                    "title": doc.get("title") or "",
                    "text": doc.get("text") or "",
                }
            )
        return out

    async def search(self, query: str, k: int) -> list[dict[str, Any]]:
        """Top ``k`` BM25 hits: ``{docid, bm25_score, title, text}`` best first."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._search, query, k)

    def info(self) -> dict[str, Any]:
        return {"index": self.index_dir}

    def check_health(self) -> None:
        if self._searcher is None:  # pragma: no cover - defensive
            raise RuntimeError("index not open")
