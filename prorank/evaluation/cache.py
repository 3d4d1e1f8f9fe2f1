"""On-disk cache of reranker scores, so evaluations resume and repeat without model work.

One SQLite table keyed by (model fingerprint, prompt version, settings, query hash, document
hash): ``settings`` holds what else changes a score (dtype, instruction, normalisation), the
query hash is the sha256 of the query text and the document hash that of its id, title and text.
Each ``put`` is one transaction, so a run killed mid-way keeps every batch it finished and
never a partial one; WAL journaling lets several readers share the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    settings TEXT NOT NULL,
    query TEXT NOT NULL,
    doc TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (model, prompt, settings, query, doc)
) WITHOUT ROWID
"""
_CHUNK = 500  # host parameters per SELECT (SQLite allows at least 999)


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:32]


def query_key(query: str) -> str:
    return _sha(query)


def document_key(docid: str, document: Mapping[str, str]) -> str:
    """Hash of a document's id, title and text (an edited document gets a new key)."""
    return _sha(str(docid), document.get("title") or "", document.get("text") or "")


@dataclass(frozen=True)
class ScorerKey:
    """What identifies the scoring function: model fingerprint, prompt version, other settings."""

    model: str
    prompt: str
    settings: str = ""


class ScoreCache:
    """``get``/``put`` scores of (query, document) pairs for one ``ScorerKey`` at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def get(self, key: ScorerKey, query: str, doc_keys: Iterable[str]) -> dict[str, float]:
        """Cached scores of ``query`` with each of ``doc_keys`` (missing ones are absent)."""
        keys = list(dict.fromkeys(doc_keys))
        qkey = query_key(query)
        found: dict[str, float] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT doc, score FROM scores WHERE model=? AND prompt=? AND settings=? AND query=? "
                f"AND doc IN ({marks})",
                (key.model, key.prompt, key.settings, qkey, *chunk),
            )
            found.update({doc: float(score) for doc, score in rows})
        return found

    def put(self, key: ScorerKey, query: str, scores: Mapping[str, float]) -> None:
        """Store ``{doc_key: score}`` for ``query`` in one transaction (all or nothing)."""
        if not scores:
            return
        qkey = query_key(query)
        rows = [(key.model, key.prompt, key.settings, qkey, doc, float(s)) for doc, s in scores.items()]
        with self._transaction():
            self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)", rows)

    def count(self, key: ScorerKey | None = None) -> int:
        """Number of cached scores (for one scorer, or all)."""
        if key is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
        return int(self._conn.execute(
            "SELECT COUNT(*) FROM scores WHERE model=? AND prompt=? AND settings=?",
            (key.model, key.prompt, key.settings),
        ).fetchone()[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(path: str | os.PathLike | None = None) -> "ScoreCache | None":
    """The score cache at ``path`` (default ``$PRORANK_HOME/cache/scores.sqlite``); ``"none"``: no cache."""
    if path is not None and str(path).lower() == "none":
        return None
    from prorank.paths import prorank_home

    return ScoreCache(path or prorank_home() / "cache" / "scores.sqlite")
