"""Load BEIR-format test collections: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

This is the folder layout read by ``beir.datasets.data_loader.GenericDataLoader``. Every file is
checked line by line; malformed input raises ``DatasetError`` naming the file and line:

- a line that is not a JSON object, lacks ``_id`` or ``text`` (``title`` is optional), or repeats
  an id;
- a qrels line without three tab-separated columns or with a non-integer score, or one that
  judges the same (query, document) pair twice with different scores;
- a missing file or split (the message lists the splits that exist).

Judgments whose query id is not in ``queries.jsonl`` or whose document id is not in the corpus
cannot be evaluated; they are dropped, counted in ``BeirDataset.dropped`` and reported with a
warning (``strict=True`` raises instead, naming the line).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from prorank.config import check_positive

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"


class DatasetError(ValueError):
    """Malformed BEIR input; the message names the file (and line)."""


@dataclass
class BeirDataset:
    """One BEIR collection and the judgments of one split."""

    name: str
    path: Path
    corpus: dict[str, dict[str, str]]  # docid -> {"title", "text"}
    queries: dict[str, str]  # qid -> text (all queries in queries.jsonl)
    qrels: dict[str, dict[str, int]]  # qid -> {docid: relevance} (judged queries of ``split``)
    split: str = "test"
    dropped: dict[str, int] = field(default_factory=dict)  # skipped judgments, by reason

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def files(self) -> dict[str, Path]:
        """The files this dataset was read from, by role."""
        return {
            "corpus": self.path / CORPUS_FILE,
            "queries": self.path / QUERIES_FILE,
            "qrels": self.path / QRELS_DIR / f"{self.split}.tsv",
        }

    def judged_query_ids(self, max_queries: int | None = None) -> list[str]:
        """Ids of the queries with judgments, in natural id order; the first ``max_queries``."""
        check_positive("max_queries", max_queries, optional=True)
        qids = sorted(self.qrels, key=natural_key)
        return qids if max_queries is None else qids[:max_queries]


def natural_key(identifier: str) -> tuple[int, Any]:
    """Sort key putting numeric ids in numeric order ("2" < "10"), then other ids by text."""
    return (0, int(identifier), "") if identifier.isdigit() else (1, 0, identifier)


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{number}: invalid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            yield number, obj


def _string_field(obj: dict[str, Any], key: str, path: Path, number: int, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise DatasetError(f"{path}:{number}: missing field {key!r}")
        return ""
    if key == "_id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DatasetError(f"{path}:{number}: field {key!r} must be a string, got {type(value).__name__}")
    if key == "_id" and not value.strip():
        raise DatasetError(f"{path}:{number}: field '_id' is empty")
    return value


def load_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """Read ``corpus.jsonl`` into ``{docid: {"title", "text"}}``."""
    path = Path(path)
    _require_file(path, "corpus")
    corpus: dict[str, dict[str, str]] = {}
    for number, obj in read_json_lines(path):
        docid = _string_field(obj, "_id", path, number, required=True)
        if docid in corpus:
            raise DatasetError(f"{path}:{number}: duplicate document id {docid!r}")
        corpus[docid] = {
            "title": _string_field(obj, "title", path, number, required=False),
            "text": _string_field(obj, "text", path, number, required=True),
        }
    if not corpus:
        raise DatasetError(f"{path}: the corpus is empty")
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """Read ``queries.jsonl`` into ``{qid: text}``."""
    path = Path(path)
    _require_file(path, "queries")
    queries: dict[str, str] = {}
    for number, obj in read_json_lines(path):
        qid = _string_field(obj, "_id", path, number, required=True)
        if qid in queries:
            raise DatasetError(f"{path}:{number}: duplicate query id {qid!r}")
        queries[qid] = _string_field(obj, "text", path, number, required=True)
    return queries


def available_splits(folder: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(folder) / QRELS_DIR).glob("*.tsv"))


def read_qrels(path: str | Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield ``(line_number, qid, docid, relevance)`` from a BEIR qrels TSV (header optional)."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) != 3:
                raise DatasetError(
                    f"{path}:{number}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), got {len(cols)}"
                )
            qid, docid, raw = (c.strip() for c in cols)
            try:
                relevance = int(raw)
            except ValueError:
                if number == 1:  # the header line "query-id  corpus-id  score"
                    continue
                raise DatasetError(f"{path}:{number}: score {raw!r} is not an integer") from None
            if not qid or not docid:
                raise DatasetError(f"{path}:{number}: empty query or document id")
            yield number, qid, docid, relevance


def load_qrels(
    path: str | Path,
    queries: dict[str, str] | None = None,
    corpus: dict[str, Any] | None = None,
    strict: bool = False,
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Read a qrels TSV; return ``(qrels, dropped)``.

    With ``queries``/``corpus`` given, judgments naming an unknown query or document are dropped
    and counted in ``dropped`` (``strict=True`` raises instead).
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    dropped = {"unknown_query": 0, "unknown_document": 0}
    for number, qid, docid, relevance in read_qrels(path):
        reason = None
        if queries is not None and qid not in queries:
            reason, kind, ident = "unknown_query", "query", qid
        elif corpus is not None and docid not in corpus:
            reason, kind, ident = "unknown_document", "document", docid
        if reason is not None:
            if strict:
                raise DatasetError(f"{path}:{number}: {kind} id {ident!r} is not in the {kind} file")
            dropped[reason] += 1
            continue
        judged = qrels.setdefault(qid, {})
        if judged.get(docid, relevance) != relevance:
            raise DatasetError(
                f"{path}:{number}: ({qid}, {docid}) judged twice with different scores "
                f"({judged[docid]} and {relevance})"
            )
        judged[docid] = relevance
    if not qrels:
        raise DatasetError(f"{path}: no usable judgments")
    return qrels, {k: v for k, v in dropped.items() if v}


def load_folder(folder: str | Path, split: str = "test", name: str | None = None, strict: bool = False) -> BeirDataset:
    """Load a BEIR folder (no name resolution, no download)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    qrels_path = folder / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(folder)
        raise DatasetError(
            f"{qrels_path}: split {split!r} not found; available splits: {splits or 'none'}"
        )
    corpus = load_corpus(folder / CORPUS_FILE)
    queries = load_queries(folder / QUERIES_FILE)
    qrels, dropped = load_qrels(qrels_path, queries, corpus, strict=strict)
    if dropped:
        details = ", ".join(f"{count} with an {reason.replace('_', ' ')} id" for reason, count in dropped.items())
        warnings.warn(f"{qrels_path}: dropped {details}", stacklevel=2)
    return BeirDataset(
        name=name or folder.resolve().name,
        path=folder,
        split=split,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        dropped=dropped,
    )
