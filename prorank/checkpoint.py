"""ProRank checkpoints: a Hugging Face model folder plus ``prorank.json``.

``prorank.json`` records the prompt version (checked on load: a model trained on one prompt is
never silently served with another), the training stage, the base model, the parent checkpoint,
the config and the data it was trained on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from prorank.atomic import atomic_dir, atomic_write_json
from prorank.prompt import PROMPT_VERSION

METADATA_FILE = "prorank.json"


def save_checkpoint(model: Any, tokenizer: Any, out_dir: str | Path, metadata: dict[str, Any],
                    finish: Callable[[Path], Any] | None = None) -> Path:
    """Write model (safetensors), tokenizer and metadata to ``out_dir`` atomically; ``finish``
    may rewrite the written folder before it replaces ``out_dir``."""
    out_dir = Path(out_dir)
    meta = {
        "format": "prorank-checkpoint-v1",
        "prompt_version": PROMPT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **metadata,
    }
    if meta["prompt_version"] != PROMPT_VERSION:
        raise ValueError(
            f"metadata prompt_version {meta['prompt_version']!r} differs from {PROMPT_VERSION!r}"
        )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / METADATA_FILE, meta)
        if finish is not None:
            finish(tmp)
    return out_dir


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """``prorank.json`` of a checkpoint folder, or ``None`` for a plain model folder."""
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: invalid JSON ({err})") from None


def check_prompt_version(metadata: dict[str, Any] | None, source: str) -> None:
    """Raise if a checkpoint was trained with another prompt than this library renders."""
    if metadata is None:
        return
    version = metadata.get("prompt_version")
    if version != PROMPT_VERSION:
        raise ValueError(
            f"{source} was trained with prompt version {version!r}, but this prorank renders "
            f"{PROMPT_VERSION!r}; install the prorank version that matches the checkpoint"
        )
