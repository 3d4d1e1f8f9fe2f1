"""The relevance score: ``logit("1") - logit("0")`` at the answer position.

This is the one scoring function of ProRank: inference (``Reranker``), evaluation, serving and
stage-2 training all call ``relevance_scores``; there is no second copy. It adds no layer: only the
two rows of the output layer that spell the answer labels are used, so full-vocabulary logits are
never materialised. Inputs are left-padded, so the last position of every row is its answer
position.
"""

from __future__ import annotations

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
    if input_ids.shape != attention_mask.shape:
        raise ValueError("input_ids and attention_mask must have the same shape")
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("inputs must be left-padded: the last position of every row must be real")
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
        head = model.get_output_embeddings()
        weight = head.weight[rows].float()
        logits = hidden.float() @ weight.T
        bias = getattr(head, "bias", None)
        if bias is not None:
            logits = logits + bias[rows].float()
    return logits[:, 1] - logits[:, 0]
