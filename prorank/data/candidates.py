"""Given candidates of a BEIR folder: ``candidates/<split>.tsv``, the negatives a collection ships.

Some training collections come with the documents a first stage showed for each query, labelled
(MS MARCO's BM25 top 20 with the official label, WikiQA's sentences of the answer page): a file
``candidates/<split>.tsv`` beside ``qrels/`` with the header ``query-id  corpus-id  label`` and
one line per candidate, in the source's order. BEIR's own loader ignores the folder.

:func:`load_candidates` reads it strictly: every query and document id must exist (an unknown
one raises :class:`DatasetError` naming the file, line and id), the label must be an integer,
and a pair listed twice must carry the same label. A training source with
``negatives_from: candidates`` (``prorank.train.sources.DataSource``) takes its negatives from
the label-0 lines instead of mining BM25.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from prorank.data.beir import BeirDataset, DatasetError, read_qrels

CANDIDATES_DIR = "candidates"


@dataclass
class Candidates:
    """``qid -> [(docid, label)]`` in file order, and the file it came from."""

    path: Path
    lists: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def negatives(self) -> dict[str, list[str]]:
        """``qid -> docids labelled <= 0``, in file order (a precomputed run for ``mine_negatives``)."""
        return {q: [d for d, label in items if label <= 0] for q, items in self.lists.items()}

    def without_positive(self, qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
        """Queries listed here that have no relevant document, neither in the qrels nor labelled here."""
        return sorted(q for q, items in self.lists.items()
                      if not any(label > 0 for _, label in items)
                      and not any(g > 0 for g in (qrels.get(q) or {}).values()))


def candidates_path(folder: str | Path, split: str) -> Path:
    return Path(folder) / CANDIDATES_DIR / f"{split}.tsv"


def load_candidates(path: str | Path, queries: Mapping[str, Any], corpus: Mapping[str, Any]) -> Candidates:
    """Read a candidates TSV, checking every id against ``queries`` and ``corpus``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: candidates file not found (negatives_from: candidates needs "
                           f"{CANDIDATES_DIR}/<split>.tsv with query-id, corpus-id, label)")
    out = Candidates(path)
    seen: dict[tuple[str, str], int] = {}
    for number, qid, docid, label in read_qrels(path):
        if qid not in queries:
            raise DatasetError(f"{path}:{number}: query id {qid!r} is not in the queries file")
        if docid not in corpus:
            raise DatasetError(f"{path}:{number}: document id {docid!r} is not in the corpus")
        if seen.setdefault((qid, docid), label) != label:
            raise DatasetError(f"{path}:{number}: ({qid}, {docid}) listed twice with different labels "
                               f"({seen[(qid, docid)]} and {label})")
        items = out.lists.setdefault(qid, [])
        if (docid, label) not in items:
            items.append((docid, label))
    if not out.lists:
        raise DatasetError(f"{path}: no candidates")
    return out


def dataset_candidates(data: BeirDataset) -> Candidates:
    """The candidates of ``data``'s split, checked against its queries and corpus."""
    return load_candidates(candidates_path(data.path, data.split), data.queries, data.corpus)
