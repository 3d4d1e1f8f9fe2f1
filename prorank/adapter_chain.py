"""Two LoRA adapters in a row as one adapter over the first one's base (exact).

Stage 1 can train a LoRA adapter over a base model (``W0 + s1 B1 A1``) and stage 2 another one
over that (``+ s2 B2 A2``, ``s = lora_alpha / r``). Their sum is one LoRA of rank ``r1 + r2``:
``A = [A1; A2]``, ``B = [s1 B1, s2 B2]`` with ``lora_alpha = r`` (scaling 1). A module only one of
them adapts gets zeros in the other's rows. Trainable token rows (PEFT ``trainable_token_indices``,
which hold the rows' new values) are united, the second adapter's values winning. So the final
model of both stages ships as one small adapter over the public base, like a stage-2-only one.

Adapters with DoRA, rsLoRA, per-module ranks or ``modules_to_save`` are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prorank.atomic import atomic_write_json

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENS_KEY = "trainable_tokens_delta"


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise ValueError(f"{folder} is not a LoRA adapter folder ({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})")
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    for key in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern", "modules_to_save"):
        if config.get(key):
            raise ValueError(f"{folder}: adapters with {key} cannot be chained into one LoRA")
    return config, load_file(str(folder / ADAPTER_WEIGHTS))


def _modules(tensors: dict[str, Any]) -> set[str]:
    return {k[: -len(".lora_A.weight")] for k in tensors if k.endswith(".lora_A.weight")}


def _targets(config: dict[str, Any]) -> set[str]:
    targets = config.get("target_modules") or []
    return {targets} if isinstance(targets, str) else set(targets)


def _tokens(config: dict[str, Any], tensors: dict[str, Any]) -> tuple[str | None, dict[int, Any]]:
    keys = [k for k in tensors if k.endswith(TOKENS_KEY)]
    if not keys:
        return None, {}
    if len(keys) > 1 or not isinstance(config.get("trainable_token_indices"), list):
        raise ValueError("only one embedding's trainable tokens (a list of indices) can be chained")
    rows = tensors[keys[0]]
    return keys[0], dict(zip(config["trainable_token_indices"], rows))


def chain_adapters(first: str | Path, second: str | Path, out: str | Path) -> Path:
    """Write to ``out`` (may equal ``second``) the adapter equal to ``first`` then ``second``,
    over ``first``'s base (``base_model_name_or_path``)."""
    import torch
    from safetensors.torch import save_file

    (cfg1, t1), (cfg2, t2) = _read(Path(first)), _read(Path(second))
    r1, r2 = int(cfg1["r"]), int(cfg2["r"])
    s1, s2 = cfg1["lora_alpha"] / r1, cfg2["lora_alpha"] / r2
    tensors: dict[str, Any] = {}
    for module in sorted(_modules(t1) | _modules(t2)):
        shape = t1.get(f"{module}.lora_A.weight", t2.get(f"{module}.lora_A.weight")).shape[1], \
            t1.get(f"{module}.lora_B.weight", t2.get(f"{module}.lora_B.weight")).shape[0]  # (in, out)
        parts_a, parts_b = [], []
        for part, rank, scale in ((t1, r1, s1), (t2, r2, s2)):
            a, b = part.get(f"{module}.lora_A.weight"), part.get(f"{module}.lora_B.weight")
            parts_a.append(torch.zeros(rank, shape[0]) if a is None else a.float())
            parts_b.append(torch.zeros(shape[1], rank) if b is None else b.float() * scale)
        tensors[f"{module}.lora_A.weight"] = torch.cat(parts_a, 0).contiguous()
        tensors[f"{module}.lora_B.weight"] = torch.cat(parts_b, 1).contiguous()
    (key1, rows1), (key2, rows2) = _tokens(cfg1, t1), _tokens(cfg2, t2)
    rows = {**rows1, **rows2}
    if rows:
        indices = sorted(rows)
        tensors[key2 or key1] = torch.stack([rows[i].float() for i in indices]).contiguous()
    dtype = next(iter(t2.values())).dtype
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    config = {**cfg2, "r": r1 + r2, "lora_alpha": r1 + r2,
              "target_modules": sorted(_targets(cfg1) | _targets(cfg2)),
              "base_model_name_or_path": cfg1.get("base_model_name_or_path"),
              "trainable_token_indices": sorted(rows) if rows else None}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (ADAPTER_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / ADAPTER_WEIGHTS)
    atomic_write_json(out / ADAPTER_CONFIG, config)
    return out
