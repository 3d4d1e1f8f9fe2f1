"""What a loaded reranker is, in the words every record uses: its dtype and its description.

``prorank eval`` writes ``model_info`` as its summary's ``model`` entry (the local engine and each
Ray actor alike), the score cache keys on ``model_dtype`` (``prorank.evaluation.rerank.scorer_key``)
and the service reports both on ``/v1/models``. Only attributes of ``prorank.reranker.Reranker``
are read, so this module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from prorank.prompt import PROMPT_VERSION

__all__ = ["model_dtype", "model_info"]


def model_dtype(reranker: Any) -> str:
    """The dtype the reranker's weights are in, without the ``torch.`` prefix (``"float32"``)."""
    return str(next(reranker.model.parameters()).dtype).replace("torch.", "")


def model_info(reranker: Any, name: str, instruction: str | None = None) -> dict[str, Any]:
    """What scored: ``name`` as the user gave it, where it was loaded from, fingerprint, prompt
    version, checkpoint metadata, length, batch size, device, dtype, instruction and fusion."""
    return {
        "name": name,
        "loaded_from": str(reranker.name),
        "fingerprint": reranker.fingerprint,
        "prompt_version": PROMPT_VERSION,
        "metadata": reranker.metadata,
        "max_length": reranker.max_length,
        "batch_size": reranker.batch_size,
        "device": str(reranker.device),
        "dtype": model_dtype(reranker),
        "instruction": instruction,
        "fusion": reranker.fusion.to_dict(),
    }
