"""Stage 1's trainer: ``trl.GRPOTrainer`` with what the adopted warmup recipe adds, in one class.

``WarmupTrainer`` is TRL's GRPO trainer (clipping, loss type, entropy bonus, KL: all TRL's) with
four additions, each set by a ``WarmupConfig`` field and off when that field says so:

1. **The expected baseline** (``baseline: expected``; ``group`` is TRL's own). TRL gives each
   completion ``reward - mean(reward of its prompt's group)``: once a policy answers ``1`` to
   everything, every sample of a prompt gets the same reward, every advantage is 0 and nothing
   pushes it back. Here the baseline of a completion is its prompt's expected reward under the
   policy itself: the answer is one of two labels, so that expectation is exact,
   ``sum_a p(a | prompt) * reward(a) + (1 - p(0) - p(1)) * reward(malformed)``, with ``p(a)`` the
   probability that the sampled answer is exactly label ``a`` (``train/answers.py``, under the
   sampling settings) and ``reward(a)`` from the reward functions themselves (``label_rewards``,
   ``expected_baseline``). It does not depend on the sampled answer, so the policy gradient stays
   unbiased; on a relevant prompt answering ``1`` gets ``+(1 - p(1))`` and ``0`` gets ``-p(1)``,
   so both samples move the label the same way. Advantages are in reward units, never divided by
   a std (``grpo.scale_rewards: none``).
2. **The restoring term on the label bias** (``label_balance``, a weight; 0 = off). On a
   class-balanced batch, a policy that cannot yet tell the pairs apart earns the same expected
   correctness whatever its bias between ``0`` and ``1``: the objective is flat in that direction,
   the bias random-walks, and once one label has nearly all the mass nothing brings it back. For
   each of the step's distinct prompts ``q = P(answer is 1) / (P(answer is 0) + P(answer is 1))``
   (whole answers: the label, then the end of the turn, under the model's own logits); with
   ``q_bar`` their mean the term is ``KL(Bernoulli(1/2) || Bernoulli(q_bar))``
   (``label_balance_term``), 0 for balanced answers. A model that ranks perfectly has
   ``q_bar = 1/2``, so the term opposes only a shared drift; it needs ``balanced_batches`` (as
   many relevant as non-relevant prompts per step, so 1:1 is right). ``loss = GRPO loss +
   label_balance * term``.
3. **Exploration** for models that never answer exactly zero-shot (``answer_first_phase``,
   ``end_of_answer_bias``; sampling only, ``Exploration``): the generation length and the sampling
   bonus on ending the turn right after a label, set before each generation, updated from each
   logged step's format rate; its state is saved in every trainer checkpoint and a resumed run
   continues from it (``EXPLORATION_STATE``).
4. **The probe** (``probe``, ``prorank.train.probe``): held-out score AUC every few steps
   (``ProbeCallback``).

Balanced batches themselves are data order (``prorank.train.pairs.balanced_order``, read with
``grpo.shuffle_dataset: false``). What the additions log reaches the step's log record in
``WarmupTrainer.log``, before any callback sees it, so no callback's position in the list matters.
TRL's hooks overridden here (``_calculate_rewards``, ``_generate_and_score_completions``,
``compute_loss``, ``log``) are those of the version pinned in constraints.txt.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trl
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from prorank.atomic import atomic_write_json

from prorank.prompt import ANSWER_POSITIVE, LABELS
from prorank.train.answers import distinct_prompts, eos_token_ids, label_answer_logprobs

if TYPE_CHECKING:
    from prorank.prompt import PromptBuilder
    from prorank.train.stage1_warmup import WarmupConfig

__all__ = ["WarmupTrainer", "Exploration", "ProbeCallback", "METRIC_ALIASES", "weighted_rewards", "label_rewards",
           "expected_baseline", "label_balance_term", "end_of_answer_bias"]

EXPLORATION_STATE = "exploration.json"  # in each trainer checkpoint-N folder: Exploration.state()

# logged curve name -> TRL metric name (from the reward functions' names)
METRIC_ALIASES = {
    "format_rate": "rewards/format_reward/mean",
    "accuracy": "rewards/correctness_reward/mean",
    "label_one_rate": "rewards/label_one_reward/mean",  # share of sampled answers saying 1
}


def weighted_rewards(rewards_per_func: Any, weights: Any) -> Any:
    """Each completion's weighted reward: ``rewards_per_func`` is ``[completions, reward
    functions]`` (NaN where a function gave no reward, counted as 0), ``weights`` the weights.

    >>> import torch
    >>> weighted_rewards(torch.tensor([[1., float("nan")], [1., 1.]]), torch.tensor([1., 2.]))
    tensor([1., 3.])
    """
    import torch

    return torch.nan_to_num((rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=1))


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

    ``answer_probs`` is ``[completions, labels]``: the policy's probability that the answer is
    exactly each label; the remaining mass is a malformed answer. ``answer_rewards`` is
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


def label_balance_term(label_logits: Any) -> tuple[Any, Any]:
    """The restoring term ``KL(Bernoulli(1/2) || Bernoulli(q_bar)) = -1/2 * log(4 q_bar (1 - q_bar))``
    and ``q_bar`` from ``label_logits`` ``[prompts, 2]``: each prompt's logits (or
    log-probabilities) of the answers ``0`` and ``1`` (differentiable). Its gradient on a shift of
    every prompt's label logit difference is ``q_bar - 1/2``: a mean-reverting pull that never
    vanishes, even at saturation.

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


def end_of_answer_bias(builder: PromptBuilder, bias: float) -> list[list[Any]]:
    """``GenerationConfig.sequence_bias`` adding ``bias`` to the end-of-turn logit right after
    each answer label (and nowhere else): ``[[[id("0"), eos], bias], [[id("1"), eos], bias]]``."""
    eos = builder.tokenizer.eos_token_id
    if eos is None:
        raise ValueError("end_of_answer_bias: the tokenizer has no end-of-turn (eos) token")
    return [[[int(label_id), int(eos)], float(bias)] for label_id in builder.answer_token_ids]


class Exploration:
    """The sampling aids of ``WarmupConfig`` (``answer_first_phase``, ``end_of_answer_bias``).

    Phase 1 (with ``answer_first_phase``) generates just the answer token until the sampled format
    rate is >= 0.875 for two logged steps in a row; phase 2 generates ``max_completion_length``
    tokens with a bonus on ending the turn right after a label, adapted to keep about half the
    samples ending there (down by 2 when >= 75% do, up by 1 when <= 25%, at most ``start + 4``),
    so it fades to 0 as the model learns to stop by itself.
    """

    def __init__(self, builder: PromptBuilder, answer_first: bool, bias: float, max_completion_length: int) -> None:
        self.builder, self.start, self.length = builder, float(bias), max_completion_length
        self.phase = 1 if answer_first else 2
        self.bias = self.start
        self.streak = 0

    def generation(self) -> tuple[int, Any]:
        """``(max_new_tokens, sequence_bias)`` of the next generation."""
        bias = self.bias if self.phase == 2 else 0.0
        return (1 if self.phase == 1 else self.length,
                end_of_answer_bias(self.builder, bias) if bias > 0 else None)

    def record(self) -> dict[str, Any]:
        """What a logged step ran with: ``phase``, ``generated_tokens``, ``end_of_answer_bias``."""
        return {"phase": self.phase, "generated_tokens": 1 if self.phase == 1 else self.length,
                "end_of_answer_bias": round(self.bias if self.phase == 2 else 0.0, 3)}

    def state(self) -> dict[str, Any]:
        """Where the schedule stands (``phase``, ``bias``, ``streak``): saved with each trainer checkpoint."""
        return {"phase": self.phase, "bias": self.bias, "streak": self.streak}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state()`` (a resumed run goes on where the interrupted one was)."""
        if state.get("phase") not in (1, 2) or not isinstance(state.get("bias"), (int, float)):
            raise ValueError(f"exploration state: expected phase 1 or 2 and a numeric bias, got {state}")
        self.phase, self.bias, self.streak = int(state["phase"]), float(state["bias"]), int(state.get("streak", 0))

    def update(self, format_rate: Any) -> None:
        """Move on from a logged step's sampled format rate (nothing when it was not logged)."""
        if not isinstance(format_rate, (int, float)):
            return
        if self.phase == 1:
            self.streak = self.streak + 1 if format_rate >= 0.875 else 0
            if self.streak >= 2:
                self.phase = 2
        elif format_rate >= 0.75:
            self.bias = max(0.0, self.bias - 2.0)
        elif format_rate <= 0.25 and self.bias > 0:
            self.bias = min(self.start + 4.0, self.bias + 1.0)


class ProbeCallback(TrainerCallback):
    """Runs ``measure(model)`` (``prorank.train.probe.probe_scorer``) before training and every
    ``every`` optimizer steps on the main process; ``take`` hands the values to the next logged step."""

    def __init__(self, measure: Any, every: int) -> None:
        self.measure, self.every = measure, every
        self.pending: dict[str, float] = {}

    def take(self) -> dict[str, float]:
        values, self.pending = self.pending, {}
        return values

    def _run(self, state: Any, model: Any) -> None:
        if state.is_world_process_zero and model is not None:
            self.pending = self.measure(model)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._run(state, model)  # the starting point, logged with the first step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._run(state, model)


class WarmupTrainer(trl.GRPOTrainer):
    """``trl.GRPOTrainer`` with stage 1's additions (module doc), each set by ``cfg``; ``builder``
    gives the label token ids; ``probe_pairs``: the probe's pairs (``prorank.train.probe``; the
    main process's only), measured by a ``ProbeCallback``; every other argument is ``GRPOTrainer``'s."""

    def __init__(self, cfg: WarmupConfig, builder: PromptBuilder, *, probe_pairs: Any = None, **kwargs: Any) -> None:
        from prorank.train.probe import probe_scorer

        if len(builder.answer_token_ids) != 2:
            raise ValueError(f"stage 1 needs the two label token ids, got {builder.answer_token_ids}")
        self.probe = None if probe_pairs is None else ProbeCallback(
            probe_scorer(cfg.probe, probe_pairs, builder, cfg.instruction), cfg.probe.every)
        super().__init__(callbacks=[*kwargs.pop("callbacks", []), *([self.probe] if self.probe else [])], **kwargs)
        self.baseline, self.label_balance = cfg.baseline, float(cfg.label_balance)
        self.label_token_ids = tuple(builder.answer_token_ids)
        self.exploration = None
        if cfg.answer_first_phase or cfg.end_of_answer_bias:
            self.exploration = Exploration(builder, cfg.answer_first_phase, cfg.end_of_answer_bias,
                                           self.args.max_completion_length)

    def train(self, resume_from_checkpoint: Any = None, **kwargs: Any) -> Any:
        """TRL's ``train``; a resumed run also takes the exploration schedule from the checkpoint."""
        if self.exploration is not None and isinstance(resume_from_checkpoint, (str, Path)):
            saved = Path(resume_from_checkpoint) / EXPLORATION_STATE
            if saved.is_file():
                self.exploration.restore(json.loads(saved.read_text(encoding="utf-8")))
            else:  # a checkpoint written before the schedule was saved
                warnings.warn(f"{saved} is missing: the exploration schedule starts again from phase "
                              f"{self.exploration.phase}", stacklevel=2)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.exploration is not None and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            atomic_write_json(folder / EXPLORATION_STATE, self.exploration.state())

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # the step's rewards, gathered over all processes ([completions, functions]), for the baseline
        self._batch_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._batch_rewards

    def _generate_and_score_completions(self, inputs):
        if self.exploration is not None:  # this step's generation length and end-of-answer bonus
            gen = self.generation_config
            gen.max_new_tokens, gen.sequence_bias = self.exploration.generation()
            if self.generation_kwargs is not None:
                self.generation_kwargs["max_new_tokens"] = gen.max_new_tokens
                self.generation_kwargs["sequence_bias"] = gen.sequence_bias
        output = super()._generate_and_score_completions(inputs)
        if self.baseline == "expected":
            output["advantages"] = self._expected_advantages(inputs, output)
        return output

    def _expected_advantages(self, inputs: list[dict[str, Any]], output: dict[str, Any]) -> Any:
        """Each local completion's reward minus its prompt's expected reward under the policy."""
        import torch

        local = output["advantages"]
        n, start = local.shape[0], self.accelerator.process_index * local.shape[0]
        weights = self.reward_weights.to(local.device)
        rewards = weighted_rewards(self._batch_rewards[start:start + n].to(local.device), weights)
        with torch.no_grad():  # p(first token is a), p(answer is exactly a), as sampling draws them
            gen = self.generation_config
            prompts, mask, inverse = distinct_prompts(output["prompt_ids"], output["prompt_mask"])
            eos = eos_token_ids(gen, self.processing_class) if (gen.max_new_tokens or 1) > 1 else []
            first, exact = label_answer_logprobs(self.model, prompts, mask, self.label_token_ids, eos,
                                                 self.temperature, gen.sequence_bias)
            first, exact = first.exp()[inverse], exact.exp()[inverse]
        answer_rewards = torch.tensor([label_rewards(self.reward_funcs, row, (*LABELS, "")) for row in inputs],
                                      device=local.device)
        one = first[:, LABELS.index(ANSWER_POSITIVE)] / first.sum(dim=1).clamp(min=1e-12)
        self._log_step_means({"policy_label_one": one, "label_mass": first.sum(dim=1),
                              "exact_answer_mass": exact.sum(dim=1)})
        return (rewards - expected_baseline(exact, answer_rewards, weights)).to(local.dtype)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self.label_balance:
            return loss
        # each prompt once, each label as a whole answer (the label, then the end of the turn)
        prompts, mask, _ = distinct_prompts(inputs["prompt_ids"], inputs["prompt_mask"])
        _, exact = label_answer_logprobs(model, prompts, mask, self.label_token_ids,
                                         eos_token_ids(self.generation_config, self.processing_class))
        term, q_bar = label_balance_term(exact)
        self._log_step_means({"label_balance": term, "answer_label_one": q_bar})
        return loss + self.label_balance * term.to(loss.dtype)

    def _log_step_means(self, values: dict[str, Any]) -> None:
        """Log each tensor's mean over all processes as this step's metric (TRL's ``_metrics``)."""
        mode = "train" if self.model.training else "eval"
        for name, value in values.items():
            self._metrics[mode][name].append(float(self.accelerator.gather(value.detach()).mean()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        step = "loss" in logs  # a training step's record, not the end-of-training summary
        if step and self.probe is not None:
            logs.update(self.probe.take())
        if step and self.exploration is not None:
            logs.update(self.exploration.record())
        super().log(logs, start_time)  # TRL adds its metrics to `logs`, then the callbacks see it
        if step and self.exploration is not None:
            self.exploration.update(logs.get(METRIC_ALIASES["format_rate"]))
