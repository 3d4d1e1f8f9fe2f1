"""LoRA for both stages: the defaults and the one place a config's ``lora`` block becomes a
``peft.LoraConfig`` (its keys are ``peft.LoraConfig`` fields, over ``LORA_DEFAULTS``)."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["LORA_DEFAULTS", "lora_config"]

LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear",
                 "task_type": "CAUSAL_LM"}


def lora_config(block: Mapping[str, Any], **extra: Any) -> Any:
    """``peft.LoraConfig`` of ``LORA_DEFAULTS`` updated by ``block`` and ``extra``; a bad key or
    value raises ``ValueError`` naming the ``lora`` block."""
    from peft import LoraConfig

    try:
        return LoraConfig(**{**LORA_DEFAULTS, **block, **extra})
    except (TypeError, ValueError) as err:
        raise ValueError(f"lora: {err} (keys are peft.LoraConfig fields)") from None
