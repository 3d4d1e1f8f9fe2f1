"""Load a causal LM and its tokenizer from any source a user names.

Accepted: a registered alias (``prorank-smollm2-135m``, ``smollm2-135m-instruct``: offline, see
``prorank.registry``), a Hugging Face
hub id, a local model folder, a ``.gguf`` file, a folder holding a PEFT (LoRA) adapter (merged for
inference) and checkpoints written by ProRank's training stages (``prorank.json`` is read and its
prompt version checked). Safetensors only; remote code only when asked for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prorank.checkpoint import check_prompt_version, read_metadata
from prorank.registry import resolve_model

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: str  # what the user named
    path: str  # resolved local path or hub id
    metadata: dict[str, Any] = field(default_factory=dict)
    weight_files: list[Path] = field(default_factory=list)  # for fingerprints


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (when supported), float32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# pairs per forward pass when none is given. On a CPU, one prompt at a time is fastest (no
# padding, causal attention without an explicit mask, caches stay warm; measure yours with
# `benchmarks/throughput.py --batch-size N`), one pass per core in flight (`prorank.streams`);
# an accelerator needs large batches to fill it.
CPU_BATCH_SIZE = 1
ACCELERATOR_BATCH_SIZE = 32


def default_batch_size(device: torch.device | str) -> int:
    """Default pairs per forward pass on ``device``: 1 on CPU, 32 on CUDA/MPS."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else ACCELERATOR_BATCH_SIZE


def default_share_prefix(device: torch.device | str) -> bool:
    """Whether a query's shared prompt prefix is run once by default: on a CPU, where the saved
    positions are saved time, not on an accelerator, where the cache copies and explicit mask
    cost more than they save (measured: README, "Throughput")."""
    return torch.device(device).type == "cpu"


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
    return names[dtype]


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (the answer position is the last one) and a pad token (EOS if none)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.safetensors")) + sorted(folder.glob("*.gguf"))


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = torch.float32,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """Load model + tokenizer on CPU in ``dtype``; the caller moves it to its device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = os.fspath(name_or_path)
    path = resolve_model(source)
    local = Path(path)
    common = dict(trust_remote_code=trust_remote_code, revision=revision)

    if local.is_file():
        if local.suffix != ".gguf":
            raise ValueError(f"model file {local} is not a .gguf file; pass a model folder instead")
        tokenizer = AutoTokenizer.from_pretrained(local.parent, gguf_file=local.name, **common)
        model = AutoModelForCausalLM.from_pretrained(local.parent, gguf_file=local.name, dtype=dtype, **common)
        model.hf_quantizer = None  # dequantized on load; nothing gguf-specific remains
        return LoadedModel(model, prepare_tokenizer(tokenizer), source, str(local), {}, [local])

    if local.is_dir() and (local / ADAPTER_CONFIG).is_file():
        return _load_adapter(local, source, dtype, common)

    if local.exists() and not local.is_dir():
        raise ValueError(f"{local} is neither a model folder nor a .gguf file")

    metadata = read_metadata(local) if local.is_dir() else None
    check_prompt_version(metadata, source)
    tokenizer = AutoTokenizer.from_pretrained(path, **common)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True, **common)
    files = _weight_files(local) if local.is_dir() else []
    return LoadedModel(model, prepare_tokenizer(tokenizer), source, path, metadata or {}, files)


def _load_adapter(folder: Path, source: str, dtype: torch.dtype | None, common: dict) -> LoadedModel:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_cfg = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    metadata = read_metadata(folder)
    check_prompt_version(metadata, source)
    base = adapter_cfg.get("base_model_name_or_path") or (metadata or {}).get("base_model")
    if not base:
        raise ValueError(f"{folder / ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    base_path = resolve_model(base)
    base_model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, use_safetensors=True, **common)
    has_tokenizer = any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(folder if has_tokenizer else base_path, **common)
    model = PeftModel.from_pretrained(base_model, folder).merge_and_unload()
    files = _weight_files(folder)
    if Path(base_path).is_dir():
        files += _weight_files(Path(base_path))
    return LoadedModel(model, prepare_tokenizer(tokenizer), source, str(folder), metadata or {}, files)
