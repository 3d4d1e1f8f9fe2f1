"""A restoring force on the label bias of stage 1: keep the policy's batch-mean answer at 1:1.

Why (README, "Stage 1: why the label bias walks"): on a class-balanced batch, a policy that cannot
yet tell the pairs apart earns the same expected correctness whatever its bias between ``0`` and
``1``, so the GRPO objective is flat in that direction. The bias random-walks on the sampling
noise and, once one label has nearly all the mass, every sample agrees and nothing brings it
back. TRL's remedies act on the whole vocabulary (entropy bonus: keeps ~49k tokens alive, and the
format is never learnt; KL to the reference: anchors to a base model that puts ~3% on the labels).

This term acts on the label pair only, and only on what the prompts have in common. For each of
the step's distinct prompts, ``q = p(1) / (p(0) + p(1))`` at the answer position (the model's own
logits, no sampling settings); with ``q_bar`` their mean, the term is

    ``KL(Bernoulli(1/2) || Bernoulli(q_bar)) = -1/2 * log(4 * q_bar * (1 - q_bar))``,

0 when the batch's answers are balanced and growing without bound towards either end. A model
that ranks perfectly (``q = 1`` on the relevant half, ``0`` on the other) has ``q_bar = 1/2``:
the term does not oppose telling pairs apart, only a shared drift. Its gradient on a shift ``b``
of every prompt's label logit difference is ``q_bar - 1/2`` (at most 1/2 in size), a
mean-reverting pull on exactly the direction in which the policy gradient is flat. It needs
``balanced_batches`` (as many relevant as non-relevant prompts per step: 1:1 is then right).

With ``label_balance_answer: exact`` the pair is the probability of each *exact* answer instead
(the label, then the end of the turn: ``train/answers.py``), so ``q = P(answer is 1) / (P(answer
is 0) + P(answer is 1))``. The first-token pair leaves one way to drift open: a label can keep its
first-token share while the turn stops ending after it, so answers of that label become malformed
and the well-formed ones all carry the other label (run v19 in the README); the exact pair closes
it. Both use the model's own logits (temperature 1, no sampling bonus): what greedy answers see.

``loss = GRPO loss + label_balance * term``, one extra forward/backward over the step's distinct
prompts (first token: one row each, one position; exact: one row per prompt and label, two
positions). Logged: ``label_balance`` (the term) and ``answer_label_one`` (``q_bar``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["LABEL_BALANCE_ANSWERS", "label_balance_term", "with_label_balance"]

LABEL_BALANCE_ANSWERS = ("first_token", "exact")


def label_balance_term(label_logits: Any) -> tuple[Any, Any]:
    """The term and ``q_bar`` from ``label_logits`` ``[prompts, 2]``: each prompt's logits (or
    log-probabilities) of the labels ``0`` and ``1`` as its answer (differentiable).

    >>> import torch
    >>> term, q = label_balance_term(torch.tensor([[0., 2.], [2., 0.]]))  # one says 1, one says 0
    >>> abs(float(term)) < 1e-6, round(float(q), 6)
    (True, 0.5)
    >>> term, q = label_balance_term(torch.tensor([[0., 2.], [0., 2.]]))  # both say 1
    >>> round(float(term), 4), round(float(q), 4)
    (0.4338, 0.8808)
    >>> logits = torch.tensor([[0., 60.]], requires_grad=True)  # saturated on 1: still pulled back
    >>> torch.autograd.grad(label_balance_term(logits)[0], logits)[0]
    tensor([[-0.5000,  0.5000]])
    """
    import torch

    if label_logits.dim() != 2 or label_logits.shape[1] != 2:
        raise ValueError(f"label_logits must be [prompts, 2] (labels 0, 1), got {tuple(label_logits.shape)}")
    # in log space, so the pull never vanishes: at q_bar -> 1 (or 0) its gradient on a shared shift
    # of the logit difference stays q_bar - 1/2 (a clamp on q_bar would zero it exactly there)
    log_q = torch.log_softmax(label_logits.float(), dim=-1)  # [prompts, (log(1 - q), log q)]
    log_mean = torch.logsumexp(log_q, dim=0) - math.log(log_q.shape[0])  # log(1 - q_bar), log(q_bar)
    term = -0.5 * (math.log(4.0) + log_mean.sum())
    return term, log_mean[1].exp()


def with_label_balance(base: Any, label_token_ids: tuple[int, ...], coef: float, answer: str = "first_token") -> Any:
    """``base`` (a ``trl.GRPOTrainer`` class) whose loss adds ``coef * label_balance_term`` of the
    step's distinct prompts; ``label_token_ids``: the token ids of ``prorank.prompt.LABELS``
    (``0``, ``1``); ``answer``: ``first_token`` (the labels' logits at the answer position) or
    ``exact`` (each label followed by the end of the turn)."""
    from prorank.train.answers import distinct_prompts, eos_token_ids, label_answer_logprobs, left_padded_positions
    from prorank.train.baseline import log_step_means

    if coef <= 0:
        raise ValueError(f"label_balance must be > 0 to add the term, got {coef}")
    if len(label_token_ids) != 2:
        raise ValueError(f"label_balance needs the two label token ids, got {label_token_ids}")
    if answer not in LABEL_BALANCE_ANSWERS:
        raise ValueError(f"label_balance_answer must be one of {LABEL_BALANCE_ANSWERS}, got {answer!r}")
    labels = list(label_token_ids)

    class LabelBalanceGRPOTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # each prompt once; left-padded, so the last position is where the answer's first token is read
            prompts, mask, _ = distinct_prompts(inputs["prompt_ids"], inputs["prompt_mask"])
            if answer == "exact":
                _, pair = label_answer_logprobs(model, prompts, mask, tuple(labels),
                                                eos_token_ids(self.generation_config, self.processing_class))
            else:
                pair = model(input_ids=prompts, attention_mask=mask, position_ids=left_padded_positions(mask),
                             logits_to_keep=1).logits[:, -1, labels]
            term, q_bar = label_balance_term(pair)
            log_step_means(self, {"label_balance": term, "answer_label_one": q_bar})
            return loss + coef * term.to(loss.dtype)

    return LabelBalanceGRPOTrainer
