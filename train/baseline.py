"""GRPO with the batch mean as the baseline: a gradient even when a prompt's samples all agree.

TRL's ``GRPOTrainer`` gives each completion the advantage ``reward - mean(reward of its prompt's
group)``. Once a policy answers ``1`` to everything, all samples of a prompt get the same reward,
every advantage is 0 and nothing pushes it back (``frac_reward_zero_std`` = 1 in the log of the
old stage-1 recipe). With ``baseline: batch`` the advantage is ``reward - mean(reward of the whole
generation batch)`` instead (divided by the batch's reward std unless ``scale_rewards: none``): in
a class-balanced batch (``balanced_batches``) of a policy that says ``1`` everywhere, the relevant
prompts' answers score above the batch mean and the non-relevant prompts' answers below it, so the
label is pushed up where it is right and down where it is wrong: the relevance signal the group
baseline cannot give.

With ``baseline: expected`` the baseline of a completion is its prompt's expected reward under the
policy itself: the answer is one of two labels, so that expectation is exact up to the answer's
first token, ``sum_a p(a | prompt) * reward(a) + (1 - p(0) - p(1)) * reward(malformed)``, with
``p(a)`` the probability that the sampled answer is exactly label ``a`` (the label as first token,
then the end of the turn, under the sampling settings), read from one forward pass over the step's
distinct prompts followed by each label, and ``reward(a)`` from the reward functions themselves
(``expected_baseline``). The baseline does not depend on the sampled answer,
so the policy gradient stays unbiased, and its noise shrinks where the batch mean's is largest: on
a relevant prompt, answering ``1`` gets ``+(1 - p(1))`` and answering ``0`` gets ``-p(1)``, so
both samples move the label logit the same way (towards ``1``) and only by different amounts; with
the batch mean, a relevant prompt's samples can push towards ``0`` whenever the other prompts did
better. In a balanced batch of a policy at ``p(1) = 0.5`` on every prompt, the prompt-independent
(bias) part of the label gradient then cancels exactly, whatever was sampled.

The rest of TRL's loss (clipping, loss type, entropy bonus, KL) is unchanged.

The only change to TRL is that one number per completion (``advantages``) after TRL computed it:
the trainer class here overrides two hooks of ``trl.GRPOTrainer`` (pinned in constraints.txt).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BASELINES", "log_step_means", "weighted_rewards", "batch_advantages", "expected_baseline", "label_rewards", "grpo_trainer_class"]

BASELINES = ("group", "batch", "expected")


def log_step_means(trainer: Any, values: dict[str, Any]) -> None:
    """Log each tensor's mean over all processes as this step's metric ``name`` (TRL's ``_metrics``)."""
    mode = "train" if trainer.model.training else "eval"
    for name, value in values.items():
        trainer._metrics[mode][name].append(float(trainer.accelerator.gather(value.detach()).mean()))


def weighted_rewards(rewards_per_func: Any, weights: Any) -> Any:
    """Each completion's weighted reward: ``rewards_per_func`` is ``[completions, reward
    functions]`` (NaN where a function gave no reward, counted as 0), ``weights`` the weights.

    >>> import torch
    >>> weighted_rewards(torch.tensor([[1., float("nan")], [1., 1.]]), torch.tensor([1., 2.]))
    tensor([1., 3.])
    """
    import torch

    return torch.nan_to_num((rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=1))


def batch_advantages(rewards_per_func: Any, weights: Any, scale: bool) -> Any:
    """Advantages of a whole generation batch against its mean weighted reward.

    ``rewards_per_func`` is ``[completions, reward functions]`` (NaN where a function gave no
    reward), ``weights`` the reward weights; with ``scale`` the advantages are divided by the
    batch's reward std (+1e-4, as TRL does).

    >>> import torch
    >>> batch_advantages(torch.tensor([[1., 1.], [1., 0.], [1., 1.], [1., 0.]]), torch.tensor([1., 1.]), False)
    tensor([ 0.5000, -0.5000,  0.5000, -0.5000])
    """
    rewards = weighted_rewards(rewards_per_func, weights)
    advantages = rewards - rewards.mean()
    if scale and rewards.numel() > 1:
        advantages = advantages / (rewards.std() + 1e-4)
    return advantages


def label_rewards(reward_funcs: Any, row: dict[str, Any], answers: tuple[str, ...]) -> list[list[float]]:
    """Each reward function's value ``[function][answer]`` had the completion of ``row`` (a
    dataset row: ``prompt`` and the reward columns, e.g. ``label``) been each of ``answers``
    (NaN where a function gives no reward).

    >>> from prorank.train.rewards import correctness_reward, format_reward
    >>> label_rewards([format_reward, correctness_reward], {"prompt": "p", "label": "1"}, ("0", "1", ""))
    [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    """
    columns = {k: [v] * len(answers) for k, v in row.items() if k not in ("prompt", "completion", "completion_ids")}
    values = []
    for func in reward_funcs:
        out = func(prompts=[row["prompt"]] * len(answers), completions=list(answers), completion_ids=None, **columns)
        values.append([float("nan") if v is None else float(v) for v in out])
    return values


def expected_baseline(answer_probs: Any, answer_rewards: Any, weights: Any) -> Any:
    """Expected weighted reward of each completion's prompt under the policy's answer distribution.

    ``answer_probs`` is ``[completions, labels]``: the policy's probability that the answer
    (first token) is each label; the remaining mass is a malformed answer. ``answer_rewards`` is
    ``[completions, functions, labels + 1]`` (``label_rewards`` of the labels, then of a
    malformed answer), ``weights`` the reward weights.

    >>> import torch
    >>> rewards = torch.tensor([[[1., 1., 0.], [0., 1., 0.]]])  # format, correctness of "0", "1", malformed
    >>> expected_baseline(torch.tensor([[0.25, 0.5]]), rewards, torch.tensor([1., 1.]))
    tensor([1.2500])
    """
    import torch

    rest = (1.0 - answer_probs.sum(dim=1, keepdim=True)).clamp(min=0.0)
    probs = torch.cat([answer_probs, rest], dim=1).to(answer_rewards.dtype)
    per_func = torch.nan_to_num((answer_rewards * probs[:, None, :]).sum(dim=-1))
    return (per_func * weights.to(per_func.device, per_func.dtype)).sum(dim=1)


def grpo_trainer_class(baseline: str, label_token_ids: tuple[int, ...] | None = None) -> Any:
    """``trl.GRPOTrainer`` itself for ``"group"``; for ``"batch"`` a subclass whose advantages
    are taken against the generation batch's mean reward (``batch_advantages``); for
    ``"expected"`` one whose baseline is each prompt's expected reward under the policy
    (``expected_baseline``; ``label_token_ids``: the token ids of ``prorank.prompt.LABELS``)."""
    import trl

    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "group":
        return trl.GRPOTrainer
    if baseline == "expected":
        if not label_token_ids:
            raise ValueError("baseline 'expected' needs the label token ids")
        return _expected_trainer(_keeps_rewards(trl.GRPOTrainer), tuple(label_token_ids))

    class BatchBaselineGRPOTrainer(_keeps_rewards(trl.GRPOTrainer)):
        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            local = output["advantages"]
            advantages = batch_advantages(self._batch_rewards, self.reward_weights, self.scale_rewards != "none")
            start = self.accelerator.process_index * local.shape[0]
            output["advantages"] = advantages[start : start + local.shape[0]].to(local.device, local.dtype)
            return output

    return BatchBaselineGRPOTrainer


def _keeps_rewards(base: Any) -> Any:
    """``base`` keeping the step's rewards (gathered over all processes: ``[completions,
    functions]``) as ``_batch_rewards`` for the advantages computed after TRL's."""

    class KeepsRewards(base):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._batch_rewards = rewards
            return rewards

    return KeepsRewards


def _expected_trainer(base: Any, label_token_ids: tuple[int, ...]) -> Any:
    import torch

    from prorank.prompt import ANSWER_POSITIVE, LABELS
    from prorank.train.answers import distinct_prompts, eos_token_ids, label_answer_logprobs

    class ExpectedBaselineGRPOTrainer(base):
        @torch.no_grad()
        def _answer_probs(self, prompt_ids: Any, prompt_mask: Any) -> tuple[Any, Any]:
            """Per completion: the sampling probability of each label as the answer's first token,
            and the probability that the answer is exactly that label (the turn ends right after it,
            with the sampling bonus on ending there; 1 when only one token is generated)."""
            gen = self.generation_config
            unique, mask, inverse = distinct_prompts(prompt_ids, prompt_mask)
            eos = eos_token_ids(gen, self.processing_class) if (gen.max_new_tokens or 1) > 1 else []
            first, exact = label_answer_logprobs(self.model, unique, mask, label_token_ids, eos, self.temperature,
                                                 gen.sequence_bias)
            return first.exp()[inverse], exact.exp()[inverse]

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            local = output["advantages"]
            n, start = local.shape[0], self.accelerator.process_index * local.shape[0]
            weights = self.reward_weights.to(local.device)
            rewards = weighted_rewards(self._batch_rewards[start:start + n].to(local.device), weights)
            first, exact = self._answer_probs(output["prompt_ids"], output["prompt_mask"])
            answer_rewards = torch.tensor([label_rewards(self.reward_funcs, row, (*LABELS, "")) for row in inputs],
                                          device=local.device)
            # in reward units, never divided by a std: a batch whose rewards all agree has std 0
            # but, unlike with a mean baseline, advantages that are not (WarmupConfig checks
            # scale_rewards: none)
            advantages = rewards - expected_baseline(exact, answer_rewards, weights)
            output["advantages"] = advantages.to(local.dtype)
            one = first[:, LABELS.index(ANSWER_POSITIVE)] / first.sum(dim=1).clamp(min=1e-12)
            log_step_means(self, {"policy_label_one": one, "label_mass": first.sum(dim=1),
                                  "exact_answer_mass": exact.sum(dim=1)})
            return output

    return ExpectedBaselineGRPOTrainer
