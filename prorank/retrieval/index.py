"""Lucene indexes of BEIR corpora, built with Anserini as pyserini's BEIR "flat" indexes are.

``build_index`` runs Anserini's ``IndexCollection`` with ``BeirFlatCollection``: title and text
go into one ``contents`` field (``title + " " + text``), analysed with Anserini's default English
analyzer (Porter stemmer, Lucene stopwords); positions, document vectors and the raw JSON
document are stored (the raw document lets the service return title and text). This is the
recipe of pyserini's prebuilt ``beir-v1.0.0-<name>.flat`` indexes.

``ensure_index`` caches one index per corpus under ``$PRORANK_HOME/indexes/<name>-<sha>``, where
``<sha>`` starts the corpus file's sha256; it is built into a temporary folder and renamed into
place, so an interrupted build leaves nothing behind. Names of pyserini prebuilt indexes
(``beir-v1.0.0-scifact.flat``) are downloaded by pyserini (needs internet).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prorank.atomic import atomic_dir, atomic_write_json
from prorank.data import BeirDataset, load_corpus, resolve_dataset
from prorank.data.beir import CORPUS_FILE, DatasetError
from prorank.paths import prorank_home, sha256_file
from prorank.retrieval.java import anserini_jar, java_class

INDEX_INFO = "prorank-index.json"


def is_lucene_index(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and any(path.glob("segments_*"))


def indexes_home() -> Path:
    return prorank_home() / "indexes"


def index_cache_path(dataset: BeirDataset) -> Path:
    """``$PRORANK_HOME/indexes/<name>-<first 12 hex of the corpus file's sha256>``."""
    digest = sha256_file(dataset.files["corpus"])
    return indexes_home() / f"{dataset.name}-{digest[:12]}"


def read_index_info(index_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(index_dir) / INDEX_INFO
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def build_index(
    dataset: BeirDataset,
    out_dir: str | os.PathLike,
    threads: int = 2,
    overwrite: bool = False,
    verbose: bool = False,
) -> Path:
    """Index ``dataset.corpus`` into ``out_dir`` (atomically); return ``out_dir``.

    ``verbose`` lets Anserini log its settings and progress (otherwise warnings only).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"index: {out} already exists")
    indexer = java_class("io.anserini.index.IndexCollection")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="prorank-corpus-") as staging:
        # only validated documents, and only the corpus (the collection reads every .jsonl file)
        with open(Path(staging) / CORPUS_FILE, "w", encoding="utf-8") as handle:
            for docid, doc in dataset.corpus.items():
                handle.write(json.dumps({"_id": docid, "title": doc["title"], "text": doc["text"]},
                                        ensure_ascii=False) + "\n")
        with atomic_dir(out, overwrite=overwrite) as tmp:
            indexer.main([
                "-collection", "BeirFlatCollection",
                "-generator", "DefaultLuceneDocumentGenerator",
                "-input", staging,
                "-index", str(tmp),
                "-threads", str(threads),
                "-storePositions", "-storeDocvectors", "-storeRaw",
                "-verbose" if verbose else "-quiet",
            ])
            searcher = java_class("io.anserini.search.SimpleSearcher")(str(tmp))
            num_docs = int(searcher.get_total_num_docs())
            searcher.close()
            if num_docs == 0:
                raise DatasetError(f"{dataset.files['corpus']}: no document could be indexed")
            atomic_write_json(tmp / INDEX_INFO, {
                "dataset": dataset.name,
                "corpus": str(dataset.files["corpus"]),
                "corpus_sha256": sha256_file(dataset.files["corpus"]),
                "corpus_docs": len(dataset.corpus),
                "indexed_docs": num_docs,  # Anserini skips documents with empty contents
                "collection": "BeirFlatCollection (contents = title + ' ' + text)",
                "stored": ["positions", "docvectors", "raw"],
                "anserini": anserini_jar().name,
                "seconds": round(time.time() - started, 2),
            })
    return out


def ensure_index(
    source: BeirDataset | str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    threads: int = 2,
    verbose: bool = False,
) -> Path:
    """A searchable index for ``source``, built once and cached (see module doc).

    ``source`` is a ``BeirDataset``, a Lucene index folder, a BEIR folder or dataset name
    (resolved like ``prorank.data.resolve_dataset``) or a pyserini prebuilt index name.
    """
    if isinstance(source, BeirDataset):
        dataset = source
    else:
        raw = os.fspath(source)
        if is_lucene_index(raw):
            return Path(raw)
        try:
            folder = resolve_dataset(raw, data_dir=data_dir, download=False)
        except DatasetError:
            prebuilt = prebuilt_index(raw)
            if prebuilt is not None:
                return prebuilt
            folder = resolve_dataset(raw, data_dir=data_dir, download=True)
        dataset = corpus_dataset(folder)
    target = index_cache_path(dataset)
    if is_lucene_index(target):
        return target
    try:
        return build_index(dataset, target, threads=threads, overwrite=False, verbose=verbose)
    except OSError:  # FileExistsError, or ENOTEMPTY when a concurrent build renamed first
        if is_lucene_index(target):  # another process finished the same build first
            return target
        raise


def corpus_dataset(folder: str | os.PathLike) -> BeirDataset:
    """A dataset holding just the corpus of ``folder`` (indexing needs no queries or qrels)."""
    folder = Path(folder)
    corpus = load_corpus(folder / CORPUS_FILE)
    return BeirDataset(name=folder.resolve().name, path=folder, corpus=corpus, queries={}, qrels={}, split="")


def prebuilt_index(name: str) -> Path | None:
    """Local folder of pyserini prebuilt sparse index ``name`` (downloaded once); None if unknown."""
    if "/" in name or os.sep in name:
        return None
    info = _import_pyserini("pyserini.prebuilt_index_info")
    if name not in info.TF_INDEX_INFO:
        return None
    util = _import_pyserini("pyserini.util")
    return Path(util.download_prebuilt_index(name, verbose=True))


def _import_pyserini(module: str) -> Any:
    from prorank.retrieval.java import import_pyserini

    return import_pyserini(module)


@dataclass
class IndexConfig:
    """``prorank index``: index a BEIR corpus into ``index`` (default: the cache)."""

    dataset: str  # BEIR folder or name, or a pyserini prebuilt index name
    index: str | None = None  # output folder; default $PRORANK_HOME/indexes/<name>-<sha>
    threads: int = 2
    data_dir: str | None = None
    overwrite: bool = False
    verbose: bool = False


def main(cfg: IndexConfig) -> Path:
    """Build (or find) the index described by ``cfg``; return its folder."""
    if cfg.index is None:
        return ensure_index(cfg.dataset, data_dir=cfg.data_dir, threads=cfg.threads, verbose=cfg.verbose)
    folder = resolve_dataset(cfg.dataset, data_dir=cfg.data_dir)
    return build_index(corpus_dataset(folder), cfg.index, threads=cfg.threads, overwrite=cfg.overwrite,
                       verbose=cfg.verbose)


__all__ = [
    "IndexConfig",
    "corpus_dataset",
    "main",
    "build_index",
    "ensure_index",
    "index_cache_path",
    "is_lucene_index",
    "prebuilt_index",
    "read_index_info",
]
