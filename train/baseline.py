"""GRPO with the batch mean as the baseline: a gradient even when a prompt's samples all agree.

TRL's ``GRPOTrainer`` gives each completion the advantage ``reward - mean(reward of its prompt's
group)``. Once a policy answers ``1`` to everything, all samples of a prompt get the same reward,
every advantage is 0 and nothing pushes it back (``frac_reward_zero_std`` = 1 in the log of the
old stage-1 recipe). With ``baseline: batch`` the advantage is ``reward - mean(reward of the whole
generation batch)`` instead (divided by the batch's reward std unless ``scale_rewards: none``): in
a class-balanced batch (``balanced_batches``) of a policy that says ``1`` everywhere, the relevant
prompts' answers score above the batch mean and the non-relevant prompts' answers below it, so the
label is pushed up where it is right and down where it is wrong: the relevance signal the group
baseline cannot give. The rest of TRL's loss (clipping, loss type, entropy bonus, KL) is unchanged.

The only change to TRL is that one number per completion (``advantages``) after TRL computed it:
the trainer class here overrides two hooks of ``trl.GRPOTrainer`` (pinned in constraints.txt).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BASELINES", "batch_advantages", "grpo_trainer_class"]

BASELINES = ("group", "batch")


def batch_advantages(rewards_per_func: Any, weights: Any, scale: bool) -> Any:
    """Advantages of a whole generation batch against its mean weighted reward.

    ``rewards_per_func`` is ``[completions, reward functions]`` (NaN where a function gave no
    reward), ``weights`` the reward weights; with ``scale`` the advantages are divided by the
    batch's reward std (+1e-4, as TRL does).

    >>> import torch
    >>> batch_advantages(torch.tensor([[1., 1.], [1., 0.], [1., 1.], [1., 0.]]), torch.tensor([1., 1.]), False)
    tensor([ 0.5000, -0.5000,  0.5000, -0.5000])
    """
    import torch

    rewards = torch.nan_to_num((rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=1))
    advantages = rewards - rewards.mean()
    if scale and rewards.numel() > 1:
        advantages = advantages / (rewards.std() + 1e-4)
    return advantages


def grpo_trainer_class(baseline: str) -> Any:
    """``trl.GRPOTrainer`` itself for ``"group"``; for ``"batch"`` a subclass whose advantages
    are taken against the generation batch's mean reward (``batch_advantages``)."""
    import trl

    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "group":
        return trl.GRPOTrainer

    class BatchBaselineGRPOTrainer(trl.GRPOTrainer):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._batch_rewards = rewards  # gathered over all processes: [completions, functions]
            return rewards

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            local = output["advantages"]
            advantages = batch_advantages(self._batch_rewards, self.reward_weights, self.scale_rewards != "none")
            start = self.accelerator.process_index * local.shape[0]
            output["advantages"] = advantages[start : start + local.shape[0]].to(local.device, local.dtype)
            return output

    return BatchBaselineGRPOTrainer
