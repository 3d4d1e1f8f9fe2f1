"""Where ProRank keeps what it downloads and builds, and how it fingerprints files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def prorank_home() -> Path:
    """Cache root: ``$PRORANK_HOME`` or ``~/.cache/prorank`` (models, indexes, caches)."""
    return Path(os.environ.get("PRORANK_HOME") or Path.home() / ".cache" / "prorank")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
