"""A randomly initialised model of a real architecture, for speed measurements without its weights.

Throughput does not depend on weight values, so a GPU benchmark of Qwen2.5-0.5B-Instruct can run
where its weights cannot travel: ``write_random_model`` builds the architecture of a config file
(``benchmarks/qwen2.5-0.5b-instruct-config.json`` is the published one) with seeded random weights
and the tokenizer of another model (any tokenizer with a chat template and the answer tokens
``0``/``1``; token ids only need to fit the vocabulary). Scores of such a model mean nothing;
agreement between scoring paths on it still does.

The folder is written once per (config, tokenizer, seed, dtype) under ``$PRORANK_HOME/bench`` and
renamed into place atomically. Its ``config.json`` carries the RoPE base both as transformers 5
writes it (``rope_parameters``) and as 4.x reads it (``rope_theta``), and the tokenizer class under
a name both know, so the mxbai-rerank side (transformers 4.57) builds the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "vocab.json", "merges.txt")


def random_model_dir(config_file: str | Path, tokenizer_dir: str | Path, seed: int = 0,
                     dtype: str = "bfloat16") -> Path:
    """Folder of the random model (created when missing); see the module docstring."""
    from prorank.paths import prorank_home

    config_file, tokenizer_dir = Path(config_file), Path(tokenizer_dir)
    if not config_file.is_file():
        raise FileNotFoundError(f"random_init: no config file {config_file}")
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"random_init: no tokenizer.json in {tokenizer_dir}")
    key = hashlib.sha256()
    for part in (config_file.read_bytes(), (tokenizer_dir / "tokenizer.json").read_bytes(),
                 f"seed={seed};dtype={dtype}".encode()):
        key.update(part)
    out = prorank_home() / "bench" / f"random-{config_file.stem}-{key.hexdigest()[:12]}"
    if not (out / "config.json").is_file():
        write_random_model(config_file, tokenizer_dir, out, seed=seed, dtype=dtype)
    return out


def write_random_model(config_file: Path, tokenizer_dir: Path, out: Path, seed: int = 0,
                       dtype: str = "bfloat16") -> None:
    """Build ``config_file``'s architecture with weights drawn from ``torch.manual_seed(seed)``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_file)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    written = json.loads((tmp / "config.json").read_text("utf-8"))
    rope = written.get("rope_parameters") or {}
    if "rope_theta" in rope and "rope_theta" not in written:
        written["rope_theta"] = rope["rope_theta"]  # the key transformers 4.x reads
        (tmp / "config.json").write_text(json.dumps(written, indent=2), "utf-8")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, tmp / name)
    tok_config = json.loads((tmp / "tokenizer_config.json").read_text("utf-8"))
    if tok_config.get("tokenizer_class") == "TokenizersBackend":
        # transformers 5's name for a tokenizer.json tokenizer; 4.x knows it as the fast one
        tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), "utf-8")
    (tmp / "source.json").write_text(json.dumps(
        {"random_init": str(config_file.name), "seed": seed, "dtype": dtype,
         "tokenizer_from": str(tokenizer_dir.name)}), "utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
