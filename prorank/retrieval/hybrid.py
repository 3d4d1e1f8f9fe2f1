"""Hybrid first stage: BM25 and a dense bi-encoder, fused with pyserini's own tooling.

The corpus vectors (``prorank.dense``, cached) are written once as a pyserini dense index (a
faiss ``IndexFlatIP`` file ``index`` plus a ``docid`` file, the layout of ``pyserini.encode``'s
output) under ``$PRORANK_HOME/indexes/``; pyserini's ``FaissSearcher`` searches it with our query
encoder and pyserini's ``HybridSearcher`` fuses its hits with BM25's: each score is normalised
over the union of both top-``k0`` lists (a document missing from one list gets that list's
lowest score) and combined as ``alpha * bm25 + dense``.

>>> hybrid = HybridRetriever(dataset, DenseEncoder.load())      # doctest: +SKIP
>>> hybrid.batch_search({"1": "microRNA in cancer"}, k=100)      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prorank.atomic import atomic_dir, atomic_write_text
from prorank.data import BeirDataset
from prorank.dense import DenseEncoder, corpus_digest
from prorank.paths import prorank_home
from prorank.retrieval.bm25 import BM25Searcher, Hit
from prorank.retrieval.java import import_pyserini


def dense_index(dataset: BeirDataset, encoder: DenseEncoder) -> Path:
    """The pyserini dense index of ``dataset`` under ``encoder`` (built once, atomically)."""
    import faiss

    folder = prorank_home() / "indexes" / f"{dataset.name}-dense-{encoder.fingerprint[:12]}-{corpus_digest(dataset.corpus)[:12]}"
    if (folder / "index").is_file() and (folder / "docid").is_file():
        return folder
    vectors = encoder.corpus_vectors(dataset.corpus)
    with atomic_dir(folder) as tmp:
        index = faiss.IndexFlatIP(vectors.matrix.shape[1])
        index.add(vectors.matrix)
        faiss.write_index(index, str(tmp / "index"))
        atomic_write_text(tmp / "docid", "".join(d + "\n" for d in vectors.docids))
    return folder


def query_encoder(encoder: DenseEncoder) -> Any:
    """A ``pyserini.encode.QueryEncoder`` that embeds queries with ``encoder``."""
    base = import_pyserini("pyserini.encode").QueryEncoder

    class _Encoder(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.has_model = True

        def encode(self, query: str, **_: Any) -> Any:
            return encoder.encode([query])[0]

    return _Encoder()


class HybridRetriever:
    """BM25 + dense candidates of one collection (pyserini ``FaissSearcher`` + ``HybridSearcher``)."""

    def __init__(self, dataset: BeirDataset, encoder: DenseEncoder, bm25: BM25Searcher | None = None,
                 alpha: float = 1.0) -> None:
        if alpha < 0:
            raise ValueError(f"hybrid alpha must be >= 0, got {alpha}")
        faiss_mod = import_pyserini("pyserini.search.faiss")
        self.hybrid = import_pyserini("pyserini.search.hybrid").HybridSearcher
        self.dense = faiss_mod.FaissSearcher(str(dense_index(dataset, encoder)), query_encoder(encoder))
        self.sparse = bm25 if bm25 is not None else BM25Searcher.for_dataset(dataset)
        self.alpha = float(alpha)

    def search(self, query: str, k: int = 100, k0: int | None = None) -> list[Hit]:
        """The fused top ``k`` of BM25's and the dense model's top ``k0`` (default ``k``)."""
        k0 = k0 or k
        fused = self.hybrid._hybrid_results(self.dense.search(query, k0), self.sparse.search(query, k0),
                                            self.alpha, k, normalization=True)
        return [Hit(str(h.docid), float(h.score)) for h in fused]

    def batch_search(self, queries: dict[str, str], k: int = 100, threads: int = 1) -> dict[str, list[Hit]]:
        return {qid: self.search(text, k) for qid, text in queries.items()}

    def close(self) -> None:
        self.sparse.close()

    def __enter__(self) -> "HybridRetriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
