"""TREC run files: ``qid Q0 docid rank score tag`` per line, written atomically.

Lines are grouped by query (in the order given) and ranked by score descending; the writer
breaks ties by the order the documents were given, so the ``rank`` column is the intended order.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from prorank.atomic import atomic_write_text

RunLists = Mapping[str, Sequence[tuple[str, float]]]


def format_run(run: RunLists, tag: str) -> str:
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"tag must be a non-empty string without spaces, got {tag!r}")
    lines = []
    for qid, hits in run.items():
        ordered = sorted(enumerate(hits), key=lambda item: (-item[1][1], item[0]))
        for rank, (_, (docid, score)) in enumerate(ordered, start=1):
            if any(c.isspace() for c in str(docid)) or any(c.isspace() for c in str(qid)):
                raise ValueError(f"query {qid!r} / document {docid!r}: ids in a TREC run cannot hold spaces")
            if not math.isfinite(float(score)):
                raise ValueError(f"query {qid!r} / document {docid!r}: score {score!r} is not finite")
            lines.append(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")
    return "".join(lines)


def write_run(path: str | os.PathLike, run: RunLists, tag: str) -> Path:
    """Write ``{qid: [(docid, score), ...]}`` as a TREC run file (atomically)."""
    return atomic_write_text(path, format_run(run, tag))


def read_run(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{qid: {docid: score}}``; bad lines raise naming the line."""
    path = Path(path)
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            cols = line.split()
            if len(cols) != 6:
                raise ValueError(f"{path}:{number}: expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}")
            qid, _, docid, _, score, _ = cols
            try:
                run.setdefault(qid, {})[docid] = float(score)
            except ValueError:
                raise ValueError(f"{path}:{number}: score {score!r} is not a number") from None
    return run
