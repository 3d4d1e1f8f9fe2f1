"""Stage-2 losses against values computed by hand (see the comments for each number)."""

from __future__ import annotations

import math

import pytest
import torch

from prorank.train.losses import (
    compute_loss,
    distill_kl,
    listwise_ce,
    loss_needs_teacher,
    margin_mse,
    pointwise_bce,
    ranknet,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


S = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
Y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_pointwise_bce_hand_values() -> None:
    # BCE(s, 1) = softplus(-s); BCE(s, 0) = softplus(s); mean over docs per group, then groups
    g1 = (softplus(-2.0) + softplus(0.0) + softplus(-1.0)) / 3
    g2 = (softplus(-0.5) + softplus(1.5) + softplus(0.0)) / 3
    assert pointwise_bce(S, Y).item() == pytest.approx((g1 + g2) / 2, abs=1e-6)


def test_pointwise_bce_graded_labels_are_binary_targets() -> None:
    graded = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert pointwise_bce(S, graded).item() == pytest.approx(pointwise_bce(S, Y).item(), abs=1e-7)


def test_pointwise_bce_mask_ignores_padding() -> None:
    mask = torch.tensor([[True, True, False], [True, True, True]])
    g1 = (softplus(-2.0) + softplus(0.0)) / 2
    g2 = (softplus(-0.5) + softplus(1.5) + softplus(0.0)) / 3
    assert pointwise_bce(S, Y, mask).item() == pytest.approx((g1 + g2) / 2, abs=1e-6)


def test_listwise_ce_hand_values() -> None:
    # -log(e^s0 / sum e^s)
    g1 = -(2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0)))
    g2 = -(0.5 - math.log(math.exp(0.5) + math.exp(1.5) + math.exp(0.0)))
    assert listwise_ce(S).item() == pytest.approx((g1 + g2) / 2, abs=1e-6)
    # temperature 2 divides the scores first
    t1 = -(1.0 - math.log(math.exp(1.0) + math.exp(0.0) + math.exp(-0.5)))
    t2 = -(0.25 - math.log(math.exp(0.25) + math.exp(0.75) + math.exp(0.0)))
    assert listwise_ce(S, temperature=2.0).item() == pytest.approx((t1 + t2) / 2, abs=1e-6)


def test_listwise_ce_mask() -> None:
    mask = torch.tensor([[True, True, False], [True, True, True]])
    g1 = -(2.0 - math.log(math.exp(2.0) + 1.0))
    g2 = -(0.5 - math.log(math.exp(0.5) + math.exp(1.5) + 1.0))
    assert listwise_ce(S, mask).item() == pytest.approx((g1 + g2) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="column 0"):
        listwise_ce(S, torch.tensor([[False, True, True], [True, True, True]]))


def test_ranknet_binary_hand_values() -> None:
    # pairs (0,1), (0,2) per group: softplus(-(s0 - sj))
    g1 = (softplus(-2.0) + softplus(-3.0)) / 2
    g2 = (softplus(1.0) + softplus(-0.5)) / 2
    assert ranknet(S, Y).item() == pytest.approx((g1 + g2) / 2, abs=1e-6)


def test_ranknet_graded_uses_every_ordered_pair() -> None:
    scores = torch.tensor([[1.0, 2.0, 0.0]])
    labels = torch.tensor([[2.0, 1.0, 0.0]])
    # ordered pairs: (0,1) 2>1, (0,2) 2>0, (1,2) 1>0
    want = (softplus(1.0) + softplus(-1.0) + softplus(-2.0)) / 3
    assert ranknet(scores, labels).item() == pytest.approx(want, abs=1e-6)


def test_ranknet_group_without_pairs_is_skipped() -> None:
    scores = torch.tensor([[1.0, 0.0], [0.3, 0.7]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss = ranknet(scores, labels)
    assert loss.item() == pytest.approx(softplus(-1.0), abs=1e-6)
    loss.backward()
    assert scores.grad is not None and scores.grad[1].abs().sum().item() == 0.0


def test_distill_kl_hand_values() -> None:
    scores = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0]])
    # p_t = (0.5, 0.5); log p_s = (1 - lse, 0 - lse), lse = log(e + 1)
    lse = math.log(math.e + 1.0)
    want = 0.5 * (math.log(0.5) - (1.0 - lse)) + 0.5 * (math.log(0.5) - (0.0 - lse))
    assert distill_kl(scores, teacher).item() == pytest.approx(want, abs=1e-6)
    # temperature T scales logits by 1/T and the loss by T^2
    lse2 = math.log(math.exp(0.5) + 1.0)
    want2 = (0.5 * (math.log(0.5) - (0.5 - lse2)) + 0.5 * (math.log(0.5) - (0.0 - lse2))) * 4
    assert distill_kl(scores, teacher, temperature=2.0).item() == pytest.approx(want2, abs=1e-6)
    assert distill_kl(teacher + 3.0, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_margin_mse_hand_values() -> None:
    scores = torch.tensor([[3.0, 1.0, 0.0]])
    teacher = torch.tensor([[2.0, 1.0, 1.5]])
    # student margins (2, 3), teacher margins (1, 0.5): ((2-1)^2 + (3-0.5)^2) / 2
    assert margin_mse(scores, teacher).item() == pytest.approx((1.0 + 6.25) / 2, abs=1e-6)
    mask = torch.tensor([[True, True, False]])
    assert margin_mse(scores, teacher, mask).item() == pytest.approx(1.0, abs=1e-6)


def test_compute_loss_dispatch_and_errors() -> None:
    assert compute_loss("listwise", S, Y).item() == pytest.approx(listwise_ce(S).item())
    assert compute_loss("bce", S, Y).item() == pytest.approx(pointwise_bce(S, Y).item())
    assert compute_loss("ranknet", S, Y).item() == pytest.approx(ranknet(S, Y).item())
    assert compute_loss("margin_mse", S, Y, teacher=S).item() == pytest.approx(0.0)
    assert loss_needs_teacher("kl") and not loss_needs_teacher("listwise")
    with pytest.raises(ValueError, match="teacher"):
        compute_loss("kl", S, Y)
    with pytest.raises(ValueError, match="loss must be one of"):
        compute_loss("hinge", S, Y)
    with pytest.raises(ValueError, match="shape"):
        pointwise_bce(S, Y[:, :2])


def test_losses_are_differentiable_and_push_the_positive_up() -> None:
    for name in ("bce", "listwise", "ranknet"):
        scores = torch.zeros(1, 3, requires_grad=True)
        compute_loss(name, scores, torch.tensor([[1.0, 0.0, 0.0]])).backward()
        grad = scores.grad[0]
        assert grad[0] < 0, name  # descending the loss raises the positive's score
        assert (grad[1:] > 0).all(), name
