"""The relevance score: ``logit("1") - logit("0")`` at the answer position.

This is the one scoring function of ProRank: inference (``Reranker``), evaluation, serving and
stage-2 training all call ``relevance_scores``; there is no second copy. It adds no layer: only the
two rows of the output layer that spell the answer labels are used, so full-vocabulary logits are
never materialised. Inputs are left-padded, so the last position of every row is its answer
position.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch


def collate(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token id lists into ``(input_ids, attention_mask)`` tensors."""
    if not sequences:
        raise ValueError("collate needs at least one sequence")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq) == 0:
            raise ValueError("cannot score an empty token sequence")
        ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def _check_left_padded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if input_ids.shape != attention_mask.shape:
        raise ValueError("input_ids and attention_mask must have the same shape")
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("inputs must be left-padded: the last position of every row must be real")


def relevance_scores(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answer_token_ids: tuple[int, int],
) -> torch.Tensor:
    """Float32 scores ``[batch]`` = logit(positive) - logit(negative) at the last position.

    ``answer_token_ids`` is ``(id of "0", id of "1")``. Differentiable: stage-2 training
    back-propagates through it. Position ids follow the attention mask, so a left-padded row
    scores exactly like the same row unpadded.
    """
    _check_left_padded(input_ids, attention_mask)
    neg_id, pos_id = answer_token_ids
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    rows = [neg_id, pos_id]
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # go through the wrapper's forward so gradients are synchronised; one position only
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=1,
            use_cache=False,
        )
        logits = out.logits[:, -1, rows].float()
    else:
        hidden = model.get_decoder()(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state[:, -1, :]
        logits = _answer_logits(model, hidden, rows)
    return logits[:, 1] - logits[:, 0]


def _answer_logits(model: torch.nn.Module, hidden: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Float32 logits of the output-layer ``rows`` only, for last-position states ``[batch, d]``.

    A plain linear head is read row by row in float32; a wrapped one (e.g. PEFT's trainable answer
    tokens while training) is run as a module, its own logic included, and the rows taken after.
    """
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        return head(hidden)[:, rows].float()
    logits = hidden.float() @ head.weight[rows].float().T
    bias = getattr(head, "bias", None)
    if bias is not None:
        logits = logits + bias[rows].float()
    return logits


# ----------------------------------------------------------------------------- shared prefixes
# All prompts of one query start with the same tokens (system turn, instruction, query). At
# inference the prefix is run once and its key/value cache reused by every document's row, so
# only the document part goes through the model: same scores (up to float rounding), fewer FLOPs.


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all ``sequences``.

    >>> common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]])
    2
    """
    if not sequences:
        return 0
    shortest = min(len(s) for s in sequences)
    first = sequences[0]
    for i in range(shortest):
        token = first[i]
        if any(s[i] != token for s in sequences):
            return i
    return shortest


PrefixCache = list[tuple[torch.Tensor, torch.Tensor]]


def _cache_kwarg(decoder: torch.nn.Module) -> str:
    """The decoder's cache argument: ``cache`` in recent transformers, ``past_key_values`` before."""
    return _cache_kwarg_of(type(decoder))


@functools.lru_cache(maxsize=None)
def _cache_kwarg_of(decoder_class: type) -> str:
    import inspect

    params = inspect.signature(decoder_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def prefix_cache(model: torch.nn.Module, prefix_ids: Sequence[int]) -> PrefixCache:
    """Per-layer ``(keys, values)`` of ``prefix_ids`` (batch of one), to be shared by many rows."""
    from transformers import DynamicCache

    if len(prefix_ids) == 0:
        raise ValueError("prefix_ids must not be empty")
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
    decoder = model.get_decoder()
    decoder(input_ids=ids, use_cache=True, **{_cache_kwarg(decoder): cache})
    return [(layer.keys, layer.values) for layer in cache.layers]


def relevance_scores_after_prefix(
    model: torch.nn.Module,
    prefix: PrefixCache,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answer_token_ids: tuple[int, int],
) -> torch.Tensor:
    """``relevance_scores`` of ``prefix + row`` for every left-padded row, reusing ``prefix``.

    Equals ``relevance_scores`` on the full prompts: the pads between the prefix and a row are
    masked out and positions continue after the prefix. Inference only (the shared cache is not
    differentiated through).
    """
    from transformers import DynamicCache

    _check_left_padded(input_ids, attention_mask)
    batch, width = input_ids.shape
    length = prefix[0][0].shape[-2]
    cache = DynamicCache(config=model.config)
    for layer, (keys, values) in enumerate(prefix):
        cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
    full_mask = torch.cat([attention_mask.new_ones(batch, length), attention_mask], dim=1)
    position_ids = length + (attention_mask.cumsum(-1) - 1).clamp(min=0)
    decoder = model.get_decoder()
    hidden = decoder(
        input_ids=input_ids,
        attention_mask=full_mask,
        position_ids=position_ids,
        cache_position=torch.arange(length, length + width, device=input_ids.device),
        use_cache=True,
        **{_cache_kwarg(decoder): cache},
    ).last_hidden_state[:, -1, :]
    neg_id, pos_id = answer_token_ids
    logits = _answer_logits(model, hidden, [neg_id, pos_id])
    return logits[:, 1] - logits[:, 0]
