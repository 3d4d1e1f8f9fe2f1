"""Export a LoRA checkpoint as a compact adapter: the form the bundled reranker ships in.

``prorank export runs/score-cpu/model --to adapter prorank/weights/prorank-smollm2-135m``
writes ``adapter_model.safetensors`` (the LoRA weights in float16 by default: half the bytes,
scores equal within float rounding), ``adapter_config.json`` (its base named by alias or hub id,
never a local path) and ``prorank.json`` (prompt version, training data, dev-tuned fusion,
max_length), and prints each file's sha256 -- the values ``prorank.registry`` pins for a bundled
alias. The tokenizer is the base model's and is not copied.
"""

from __future__ import annotations

import json
from pathlib import Path

from prorank.atomic import atomic_dir, atomic_write_json
from prorank.checkpoint import METADATA_FILE, read_metadata
from prorank.loading import ADAPTER_CONFIG
from prorank.paths import sha256_file

ADAPTER_WEIGHTS = "adapter_model.safetensors"
DTYPES = ("float16", "bfloat16", "float32")


def export_adapter(checkpoint: str | Path, out: str | Path, dtype: str = "float16",
                   overwrite: bool = False, base: str | None = None) -> dict[str, str]:
    """Write the compact adapter of ``checkpoint`` to ``out``; return ``{file: sha256}``.

    ``base`` names the base model to record instead of the checkpoint's ``base_model`` (which
    must otherwise be an alias or hub id: a local path would not load on another machine)."""
    import torch
    from safetensors.torch import load_file, save_file

    src, out = Path(checkpoint), Path(out)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if not (src / ADAPTER_CONFIG).is_file() or not (src / ADAPTER_WEIGHTS).is_file():
        raise ValueError(f"{src} is not a LoRA adapter checkpoint (train with lora and merge_lora: false)")
    meta = read_metadata(src)
    if meta is None:
        raise ValueError(f"{src} has no {METADATA_FILE}: only ProRank checkpoints can be bundled")
    if base is None:
        base = meta.get("base_model")
        if not base or Path(base).is_absolute() or base.startswith("."):
            raise ValueError(f"{src}: base_model {base!r} is not portable (an alias or hub id); name the "
                             "base to record with `base`")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite to replace it")
    config = json.loads((src / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    tensors = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in load_file(str(src / ADAPTER_WEIGHTS)).items()}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / ADAPTER_WEIGHTS).chmod(0o644)
        atomic_write_json(tmp / ADAPTER_CONFIG, config)
        atomic_write_json(tmp / METADATA_FILE, {**meta, "base_model": base, "adapter_dtype": dtype})
    return {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
