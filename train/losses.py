"""Stage-2 ranking losses over a ``[groups, docs]`` tensor of relevance scores.

Every function takes ``scores`` of shape ``[G, D]`` -- one row per group (one query with its
documents), the score being ``logit("1") - logit("0")`` from :func:`prorank.scoring.relevance_scores`
-- and returns a scalar mean over the groups. ``mask`` (bool ``[G, D]``, ``True`` = real document)
lets groups of different sizes share one tensor; padded slots never contribute.

Conventions shared by all losses:

- Groups built by :mod:`prorank.train.groups` put the positive at column 0 and hard negatives
  after it; ``labels`` holds graded relevance (``0`` = not relevant, ``> 0`` = relevant).
- ``teacher`` holds teacher scores (e.g. from a larger cross-encoder) for distillation.

Losses (the ``loss`` key of the score config picks one by name, or mixes several with weights,
e.g. ``{kl: 1.0, listwise: 0.5}``; see :data:`LOSSES` and :func:`compute_loss`):

``bce``
    pointwise binary cross-entropy of ``sigmoid(score)`` against ``label > 0``. The score is a
    log-odds, so this is the stage-1 binary judgment made calibrated.
``listwise``
    softmax cross-entropy over the group with the positive (column 0) as the target class:
    ``-log softmax(scores / T)[0]`` (InfoNCE / the "localized contrastive" loss).
``ranknet``
    pairwise RankNet: for every pair ``(i, j)`` with ``label_i > label_j``,
    ``log(1 + exp(-(s_i - s_j)))``, averaged over the pairs of a group (graded labels give
    more pairs than binary ones).
``kl``
    distillation: ``KL(softmax(teacher / T) || softmax(scores / T)) * T**2``.
``margin_mse``
    distillation (Hofstaetter et al. 2020): mean squared error between the student margins
    ``s_0 - s_j`` and the teacher margins ``t_0 - t_j`` for every negative ``j``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

_NEG_INF = -1e4  # large negative logit for masked slots (safe in bf16/fp16)


def _check(scores: Tensor, name: str, other: Tensor | None, mask: Tensor | None) -> Tensor:
    """Validate shapes; return the mask as bool (all ``True`` when none is given)."""
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape [groups, docs], got {tuple(scores.shape)}")
    if other is not None and other.shape != scores.shape:
        raise ValueError(f"{name} must have the shape of scores {tuple(scores.shape)}, got {tuple(other.shape)}")
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask must have the shape of scores {tuple(scores.shape)}, got {tuple(mask.shape)}")
    return mask.bool()


def pointwise_bce(scores: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of ``sigmoid(scores)`` against ``labels > 0``, mean over real docs.

    >>> round(pointwise_bce(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item(), 4)
    0.6931
    """
    m = _check(scores, "labels", labels, mask)
    target = (labels > 0).to(scores.dtype)
    per_doc = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
    per_doc = per_doc * m
    # mean per group over its real docs, then over groups (each query weighs the same)
    return (per_doc.sum(1) / m.sum(1).clamp(min=1)).mean()


def listwise_ce(scores: Tensor, mask: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    """Softmax cross-entropy with the positive in column 0: ``-log softmax(s / T)[0]``.

    >>> round(listwise_ce(torch.tensor([[0.0, 0.0]])).item(), 4)  # log 2
    0.6931
    """
    m = _check(scores, "", None, mask)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not bool(m[:, 0].all()):
        raise ValueError("listwise_ce needs the positive in column 0 of every group (mask[:, 0] is False)")
    logits = (scores / temperature).masked_fill(~m, _NEG_INF)
    return -(F.log_softmax(logits, dim=1)[:, 0]).mean()


def ranknet(scores: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """RankNet over every in-group pair with ``labels[i] > labels[j]``: ``softplus(-(s_i - s_j))``.

    Groups without any such pair contribute 0 (and do not count in the mean).

    >>> round(ranknet(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item(), 4)
    0.3133
    """
    m = _check(scores, "labels", labels, mask)
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # [G, D, D]: s_i - s_j
    better = (labels.unsqueeze(2) > labels.unsqueeze(1)) & m.unsqueeze(2) & m.unsqueeze(1)
    pair_loss = F.softplus(-diff) * better
    n_pairs = better.sum(dim=(1, 2))
    has = n_pairs > 0
    if not bool(has.any()):
        return scores.sum() * 0.0  # keeps the graph; no ordered pair anywhere
    per_group = pair_loss.sum(dim=(1, 2))[has] / n_pairs[has]
    return per_group.mean()


def distill_kl(
    scores: Tensor, teacher: Tensor, mask: Tensor | None = None, temperature: float = 1.0
) -> Tensor:
    """``KL(softmax(teacher/T) || softmax(scores/T)) * T**2``, mean over groups.

    >>> round(distill_kl(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])).item(), 4)
    0.0
    """
    m = _check(scores, "teacher", teacher, mask)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = teacher.to(scores.dtype)
    log_p_student = F.log_softmax((scores / temperature).masked_fill(~m, _NEG_INF), dim=1)
    log_p_teacher = F.log_softmax((t / temperature).masked_fill(~m, _NEG_INF), dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)) * m
    return kl.sum(1).mean() * temperature**2


def margin_mse(scores: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error between margins ``s_0 - s_j`` and ``t_0 - t_j`` over negatives ``j``.

    >>> margin_mse(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item()
    1.0
    """
    m = _check(scores, "teacher", teacher, mask)
    t = teacher.to(scores.dtype)
    student_margin = scores[:, :1] - scores[:, 1:]
    teacher_margin = t[:, :1] - t[:, 1:]
    neg_mask = m[:, 1:] & m[:, :1]
    sq = (student_margin - teacher_margin).pow(2) * neg_mask
    n = neg_mask.sum(1)
    has = n > 0
    if not bool(has.any()):
        return scores.sum() * 0.0
    return (sq.sum(1)[has] / n[has]).mean()


LossFn = Callable[[Tensor, Tensor, Tensor, "Tensor | None", float], Tensor]

#: loss name -> (function of (scores, labels, mask, teacher, temperature), needs teacher scores)
LOSSES: dict[str, tuple[LossFn, bool]] = {
    "bce": (lambda s, labels, m, t, temp: pointwise_bce(s, labels, m), False),
    "listwise": (lambda s, labels, m, t, temp: listwise_ce(s, m, temp), False),
    "ranknet": (lambda s, labels, m, t, temp: ranknet(s, labels, m), False),
    "kl": (lambda s, labels, m, t, temp: distill_kl(s, t, m, temp), True),
    "margin_mse": (lambda s, labels, m, t, temp: margin_mse(s, t, m), True),
}


def loss_weights(spec: str | Mapping[str, float]) -> dict[str, float]:
    """``"listwise"`` -> ``{"listwise": 1.0}``; a mapping ``{name: weight}`` mixes losses.

    >>> loss_weights({"kl": 1.0, "listwise": 0.5})
    {'kl': 1.0, 'listwise': 0.5}
    """
    weights = {spec: 1.0} if isinstance(spec, str) else {str(k): v for k, v in dict(spec).items()}
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown or not weights:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a mapping of them to weights, got {spec!r}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"loss weight of {name!r} must be a number >= 0, got {weight!r}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"loss: at least one weight must be > 0, got {spec!r}")
    return {k: float(v) for k, v in weights.items()}


def compute_loss(
    spec: str | Mapping[str, float],
    scores: Tensor,
    labels: Tensor,
    mask: Tensor | None = None,
    teacher: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """The loss ``spec`` names (one of :data:`LOSSES`), or the weighted sum of a mapping of them
    (e.g. ``{"kl": 1.0, "listwise": 0.5}``: distillation mixed with the hard qrels labels)."""
    weights = loss_weights(spec)
    if teacher is None and loss_needs_teacher(weights):
        raise ValueError(f"loss {spec!r} needs teacher scores in the training data (field 'scores')")
    m = _check(scores, "labels", labels, mask)
    total = None
    for name, weight in weights.items():
        if weight == 0:
            continue
        value = LOSSES[name][0](scores, labels, m, teacher, temperature) * weight
        total = value if total is None else total + value
    return total  # type: ignore[return-value]


def loss_needs_teacher(spec: str | Mapping[str, float]) -> bool:
    """Whether the loss (or any loss of a weighted mix) needs teacher scores."""
    return any(LOSSES[name][1] and w > 0 for name, w in loss_weights(spec).items())


__all__ = [
    "LOSSES",
    "compute_loss",
    "distill_kl",
    "listwise_ce",
    "loss_needs_teacher",
    "loss_weights",
    "margin_mse",
    "pointwise_bce",
    "ranknet",
]
