"""BM25 search over a Lucene index with Anserini's ``SimpleSearcher`` (what pyserini wraps).

>>> s = BM25Searcher(ensure_index("scifact"))            # doctest: +SKIP
>>> s.search("microRNA in cancer", k=3)                   # doctest: +SKIP
[Hit(docid='...', score=12.3), ...]

Defaults are pyserini's BEIR settings: k1=0.9, b=0.4, bag-of-words query through the same
English analyzer as the index. Hits come best first; Anserini breaks score ties by docid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prorank.config import check_positive
from prorank.retrieval.index import is_lucene_index, prebuilt_index
from prorank.retrieval.java import java_class


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float


def resolve_index(index: str | os.PathLike) -> Path:
    """A Lucene index folder, or the local copy of a pyserini prebuilt index name."""
    path = Path(index).expanduser()
    if is_lucene_index(path):
        return path
    if not path.exists():
        prebuilt = prebuilt_index(os.fspath(index))
        if prebuilt is not None:
            return prebuilt
        raise FileNotFoundError(f"index: {index} is neither a Lucene index folder nor a pyserini prebuilt index")
    raise FileNotFoundError(f"index: {path} is not a Lucene index (no segments_* file)")


def _check_k(k: int) -> int:
    return check_positive("k", k)


class BM25Searcher:
    """BM25 over one Lucene index; not safe to share across Python threads (use batch_search)."""

    def __init__(self, index: str | os.PathLike, k1: float = 0.9, b: float = 0.4) -> None:
        if k1 < 0:
            raise ValueError(f"k1 must be >= 0, got {k1}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1], got {b}")
        self.index = resolve_index(index)
        self.k1 = float(k1)
        self.b = float(b)
        self._searcher = java_class("io.anserini.search.SimpleSearcher")(str(self.index))
        self._searcher.set_bm25(self.k1, self.b)

    @classmethod
    def for_dataset(cls, dataset: Any, k1: float = 0.9, b: float = 0.4, threads: int = 2) -> "BM25Searcher":
        """BM25 over a BEIR dataset (object, folder or name), its index built on first use
        (``prorank.retrieval.index.ensure_index``): the one way every caller opens one."""
        from prorank.retrieval.index import ensure_index

        return cls(ensure_index(dataset, threads=threads), k1=k1, b=b)

    @property
    def num_docs(self) -> int:
        return int(self._searcher.get_total_num_docs())

    def search(self, query: str, k: int = 100) -> list[Hit]:
        """The ``k`` best documents for ``query`` (fewer if fewer match)."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        hits = self._searcher.search(query, _check_k(k))
        return [Hit(str(h.docid), float(h.score)) for h in hits]

    def batch_search(self, queries: dict[str, str], k: int = 100, threads: int = 2) -> dict[str, list[Hit]]:
        """Search many queries on ``threads`` Java threads; every qid of ``queries`` is a key."""
        if not isinstance(queries, dict):
            raise TypeError("queries must be a dict {qid: text}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        _check_k(k)
        if not queries:
            return {}
        array_list = java_class("java.util.ArrayList")
        texts, qids = array_list(), array_list()
        for qid, text in queries.items():
            if not isinstance(text, str):
                raise TypeError(f"queries[{qid!r}] must be a str, got {type(text).__name__}")
            texts.add(text)
            qids.add(str(qid))
        results = self._searcher.batch_search(texts, qids, k, int(threads))
        found = {
            str(entry.getKey()): [Hit(str(h.docid), float(h.score)) for h in entry.getValue()]
            for entry in results.entrySet().toArray()
        }
        return {str(qid): found.get(str(qid), []) for qid in queries}

    def document(self, docid: str) -> dict[str, str]:
        """``{"title", "text"}`` of a stored document; ``KeyError`` if the index lacks it."""
        doc = self._searcher.doc(str(docid))
        if doc is None:
            raise KeyError(docid)
        raw = doc.get("raw")
        if raw is None:  # index built without -storeRaw: fall back to stored contents
            contents = doc.get("contents")
            if contents is None:
                raise KeyError(f"{docid}: the index stores neither raw documents nor contents")
            return {"title": "", "text": str(contents)}
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            return {"title": "", "text": str(raw)}
        if "text" not in obj and "contents" in obj:  # JsonCollection documents
            return {"title": "", "text": str(obj["contents"])}
        return {"title": str(obj.get("title") or ""), "text": str(obj.get("text") or "")}

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self) -> "BM25Searcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BM25Searcher(index={str(self.index)!r}, k1={self.k1}, b={self.b})"
