"""The policy's probability of each exact label answer of a prompt, from one forward pass.

Stage 1's answer is one of the labels (``prorank.prompt.LABELS``) and then the end of the turn. For
each distinct prompt of a step and each label ``a``, one row ``prompt + a`` is run through the
model and two positions are read: the last prompt position (``p(a)`` as the answer's first token)
and the label's position (``p(end of turn | prompt, a)``). Their product is the probability that
the sampled answer is exactly ``a``. Used by the expected baseline (``train/grpo_trainer.py``, without
gradient, under the sampling settings) and by ``label_balance`` on exact answers (with gradient,
under the model's own logits).
"""

from __future__ import annotations

from typing import Any

__all__ = ["distinct_prompts", "left_padded_positions", "eos_token_ids", "label_answer_logprobs"]


def distinct_prompts(prompt_ids: Any, prompt_mask: Any) -> tuple[Any, Any, Any]:
    """The step's prompts once each (a generation batch repeats each ``num_generations`` times):
    ``(ids, mask, inverse)``, ``inverse[i]`` the row of completion ``i``'s prompt."""
    import torch

    unique, inverse = torch.unique(prompt_ids, dim=0, return_inverse=True)
    rows = [int((inverse == i).nonzero()[0]) for i in range(unique.shape[0])]
    return unique, prompt_mask[rows], inverse


def left_padded_positions(mask: Any) -> Any:
    """Position ids of left-padded rows, as ``generate()`` gives them (TRL pads prompts on the left).

    >>> import torch
    >>> left_padded_positions(torch.tensor([[0, 1, 1], [1, 1, 1]]))
    tensor([[0, 0, 1],
            [0, 1, 2]])
    """
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def eos_token_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a generated turn: the generation config's ``eos_token_id`` (one id or
    several), else the tokenizer's."""
    eos = generation_config.eos_token_id if generation_config.eos_token_id is not None else tokenizer.eos_token_id
    if eos is None:
        raise ValueError("neither the generation config nor the tokenizer names an end-of-turn token (eos_token_id)")
    return [eos] if isinstance(eos, int) else list(eos)


def label_answer_logprobs(model: Any, prompts: Any, mask: Any, label_token_ids: tuple[int, ...],
                          eos_ids: list[int] | None, temperature: float = 1.0,
                          sequence_bias: Any = None) -> tuple[Any, Any]:
    """``(first, exact)``, each ``[prompts, labels]`` log-probabilities: of each label as the
    answer's first token, and of the answer being exactly that label (the label, then one of
    ``eos_ids``; ``eos_ids`` empty or None: a one-token answer, ``exact = first``).

    ``prompts``/``mask`` are left-padded distinct prompts; ``temperature`` divides the logits and
    ``sequence_bias`` (``GenerationConfig.sequence_bias``: ``[[token, next], bias]`` pairs) adds
    its bias to ``next`` after a label ``token``, as sampling does. Gradient flows unless the
    caller is under ``torch.no_grad()``.
    """
    import torch

    k = len(label_token_ids)
    labels = torch.tensor(label_token_ids, device=prompts.device)
    ids = torch.cat([prompts.repeat_interleave(k, dim=0), labels.repeat(prompts.shape[0])[:, None]], dim=1)
    att = torch.cat([mask.repeat_interleave(k, dim=0), torch.ones_like(ids[:, :1])], dim=1)
    logits = model(input_ids=ids, attention_mask=att, position_ids=left_padded_positions(att),
                   logits_to_keep=2).logits.float() / temperature  # [prompts x labels, 2, vocab]
    first = torch.log_softmax(logits[::k, 0], dim=-1)[:, labels]  # [prompts, labels]
    if not eos_ids:
        return first, first
    after = logits[:, 1].clone()
    for tokens, value in (sequence_bias or []):
        if len(tokens) == 2 and tokens[0] in label_token_ids:
            after[list(label_token_ids).index(tokens[0])::k, tokens[1]] += value / temperature
    stop = torch.logsumexp(torch.log_softmax(after, dim=-1)[:, eos_ids], dim=-1).view(-1, k)
    return first, first + stop
