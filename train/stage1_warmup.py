"""Stage 1: GRPO prompt warmup (binary relevance with verifiable rewards).

A small instruct model does not follow the relevance prompt: it answers with prose or repeats
the prompt. GRPO (TRL's ``GRPOTrainer``) samples a few short completions per prompt and rewards
(1) answering with exactly ``0`` or ``1`` and (2) being right, so the model learns to answer the
shared ProRank prompt with the label token, the position the stage-2 score is read from.

``WarmupConfig`` holds only what TRL lacks (data source, negatives, reward weights, LoRA,
held-out measurement); everything about the optimisation goes in its ``grpo`` block, passed
unchanged to ``trl.GRPOConfig(**grpo)``. ``main(cfg)`` works on CPU (``use_cpu`` is set when no
GPU is visible), on one GPU and under ``accelerate launch`` on several processes (TRL's DDP; run
with two CPU processes in ``tests/test_ddp.py``): the main process builds the pairs once and
writes every file below, ``per_device_train_batch_size`` is per process, and TRL's
``generation_batch_size`` (default: that batch x processes x ``steps_per_generation``) must be a
multiple of ``num_generations``.

Output folder layout (``output_dir``)::

    model/        prorank checkpoint (LoRA merged, or the adapter with merge_lora: false)
                  -> Reranker.from_pretrained(output_dir/"model")
    trainer/      TRL checkpoints (checkpoint-N), used by resume_from_checkpoint
    pairs.jsonl   the training pairs (query, document, label), for provenance and reuse
    data.json     where the pairs came from (sources, counts), as in the checkpoint metadata
    log.jsonl     one record per logged step (reward, format_rate, accuracy, loss, ...)
    curves.png    plot of the logged curves
    heldout.json  before/after measurement when the ``heldout`` block is set
    dev.json      the same on the training split's queries not trained on, when ``dev`` is set
    summary.json  run record: data, settings, training curve ends, held-out result
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prorank.atomic import atomic_write_json
from prorank.config import nested, to_dict
from prorank.evaluation.provenance import portable_path
from prorank.train.probe import ProbeConfig
from prorank.train.sources import DataSource

__all__ = ["WarmupConfig", "LOG_KEYS", "build_pairs", "grpo_args", "main"]

# logged curve name -> TRL metric name (from the reward functions' names)
METRIC_ALIASES = {
    "format_rate": "rewards/format_reward/mean",
    "accuracy": "rewards/correctness_reward/mean",
    "answer_token_rate": "rewards/answer_token_reward/mean",
    "label_one_rate": "rewards/label_one_reward/mean",  # share of sampled answers saying 1
}
LOG_KEYS = ("reward", "format_rate", "accuracy", "label_one_rate", "frac_reward_zero_std", "probe_auc",
            "probe_label_one", "probe_score_std", "policy_label_one", "label_mass", "exact_answer_mass", "label_balance",
            "answer_label_one", "loss", "completions/mean_length",
            "end_of_answer_bias")


@dataclass
class WarmupConfig:
    """Stage-1 settings not covered by ``trl.GRPOConfig`` (which gets the ``grpo`` block)."""

    model: str = "smollm2-135m-instruct"  # alias, local folder or HF id (prorank.registry.resolve_model)
    output_dir: str = "runs/warmup"
    # --- data: a BEIR folder with a train split, or a plain JSONL of (query, document, label)
    # collections, each with its split and caps (prorank.train.sources.DataSource), mixed
    datasets: list[DataSource] = field(default_factory=lambda: [DataSource("scifact")])
    data_dir: str | None = None  # where dataset names are looked up ($PRORANK_DATA_DIR)
    jsonl: str | None = None  # when set, used instead of `datasets`
    # dev queries of a later stage, sampled exactly as stage 2 samples its `dev` sources
    # (prorank.train.sources): never trained on here either (`prorank train pipeline` sets it to
    # stage 2's dev list, so the dev numbers that choose and tune the final model stay unseen)
    hold_out: list[DataSource] = field(default_factory=list)
    max_pairs: int | None = None  # cap after shuffling (either source)
    negatives_depth: int = 100  # BM25 results retrieved per query
    negatives_window: list[int] = field(default_factory=lambda: [0, 100])  # ranks [start, end)
    # harder negatives later: BM25 rank windows, easiest first (e.g. [[50, 100], [10, 50], [0, 10]]),
    # used instead of negatives_window. Each collection's queries are split into as many seeded
    # parts; part k's negatives come from window k, and training reads part 1's pairs, then part
    # 2's, ... (needs balanced_batches; max_pairs caps each part at max_pairs / parts)
    negatives_curriculum: list[list[int]] | None = None
    negatives_per_positive: int = 1  # pos:neg ratio 1:n
    exclude_judged: bool = False  # also never sample documents judged non-relevant
    instruction: str | None = None
    max_length: int = 512  # prompt tokens (query and document truncated by the prompt builder)
    seed: int = 0
    # pairs read in order 1, 0, 1, 0, ... (grpo.shuffle_dataset off): every generation batch of
    # an even number of prompts holds as many relevant as non-relevant ones
    balanced_batches: bool = False
    # advantages against each prompt's group mean (TRL's GRPO) or the whole generation batch's
    # mean reward (prorank.train.baseline): the latter still gives a gradient when a policy that
    # says one label everywhere makes every sample of a prompt agree; or each prompt's expected
    # reward under the policy's own label probabilities ("expected": a gradient from every sample
    # that moves the label towards the right one, whatever the rest of the batch drew)
    baseline: str = "group"
    # weight of a restoring term on the label bias (prorank.train.label_balance): KL of the step's
    # mean p(1) / (p(0) + p(1)) at the answer position from 1/2; 0 = off; needs balanced_batches
    label_balance: float = 0.0
    # what the term balances: "first_token" (the labels' logits at the answer position) or "exact"
    # (each label followed by the end of the turn, so a label cannot drift into a malformed answer)
    label_balance_answer: str = "first_token"
    # --- rewards: name (prorank.train.rewards.REWARDS) -> weight, handed to GRPOConfig.reward_weights
    reward_weights: dict = field(default_factory=lambda: {"format": 1.0, "correctness": 1.0})
    # teacher scores for graded_correctness: the stage-2 teacher (prorank.teacher: this dense
    # encoder's cosine fused with BM25 over each query's BM25 top-negatives_depth), its BM25 weight
    # tuned on the training queries unless teacher_weight is given
    teacher: str | None = None
    teacher_weight: float | None = None
    # --- exploration for models that never answer exactly zero-shot (sampling only: rewards,
    #     loss and the saved model are unaffected)
    # phase 1 generates just the answer token until the sampled format rate is >= 0.875 for two
    # logged steps in a row; phase 2 then generates grpo.max_completion_length tokens
    answer_first_phase: bool = False
    # phase-2 logit bonus for ending the turn right after a label, adapted every step to keep
    # about half the samples ending there (down by 2 when >= 75% do, up by 1 when <= 25%), so it
    # fades to 0 as the model learns to stop by itself; 0 disables
    end_of_answer_bias: float = 0.0
    # --- model
    lora: dict | None = None  # peft.LoraConfig kwargs; None = full fine-tuning
    # with lora: false saves the adapter alone over its base (small; stage 2 from it writes one
    # adapter holding both stages, prorank.adapter_chain); true merges it into the weights
    merge_lora: bool = True
    num_threads: int | None = None  # torch CPU threads (None: leave torch's default)
    resume_from_checkpoint: str | bool | None = None  # True = latest in output_dir/trainer
    plot_every_save: bool = True
    max_minutes: float | None = None  # stop training (and save) after this much wall time
    # --- held-out measurement after training (prorank.train.heldout.HeldoutConfig fields;
    #     `models` defaults to [base model, trained checkpoint]); null to skip
    heldout: dict | None = None
    # --- the same on the first training split's queries that this run did not train on (measured
    #     before heldout; defaults: that dataset and split, exclude_queries_of [output_dir/pairs.jsonl],
    #     output output_dir/dev.json, no ranking effect): what to choose a recipe by; null to skip
    dev: dict | None = None
    # --- a cheap held-out probe during training (prorank.train.probe.ProbeConfig fields): score AUC,
    #     label shares and accuracy every `every` steps, into log.jsonl; null to skip
    probe: ProbeConfig | None = None
    # extra copy of the run record (training summary + held-out result), e.g.
    # benchmarks/results/warmup-cpu.json; the curves PNG is copied next to it (same stem)
    summary: str | None = None
    # --- passed to trl.GRPOConfig(**grpo); output_dir, seed, use_cpu, bf16 get defaults
    grpo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.jsonl is None and not self.datasets:
            raise ValueError("set either datasets (BEIR collections) or jsonl (a pairs file)")
        for window in self.negatives_curriculum or [self.negatives_window]:  # the windows in use
            if len(window) != 2 or not 0 <= window[0] < window[1] <= self.negatives_depth:
                raise ValueError(f"negatives window {window}: need [start, end] with 0 <= start < end <= "
                                 f"negatives_depth ({self.negatives_depth})")
        if self.negatives_curriculum is not None and not (self.negatives_curriculum and self.balanced_batches
                                                          and self.jsonl is None):
            raise ValueError("negatives_curriculum needs at least one window, balanced_batches: true (the "
                             "pairs are read in curriculum order) and BEIR datasets (not jsonl)")
        if self.max_length < 32:
            raise ValueError(f"max_length must be >= 32, got {self.max_length}")
        from prorank.train.rewards import REWARDS

        unknown = sorted(set(self.reward_weights) - set(REWARDS))
        if unknown or not self.reward_weights:
            raise ValueError(
                f"reward_weights: unknown reward(s) {unknown}; choose from {sorted(REWARDS)}"
            )
        if self.reward_weights.get("graded_correctness") and self.teacher is None and self.jsonl is None:
            raise ValueError("reward_weights.graded_correctness needs teacher scores: set teacher "
                             "(e.g. all-minilm-l6-v2) or give them in jsonl pairs")
        if self.teacher_weight is not None and not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}")
        if "reward_weights" in self.grpo:
            raise ValueError("set reward weights in reward_weights (by name), not grpo.reward_weights")
        from prorank.train.baseline import BASELINES

        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.baseline == "expected" and self.grpo.get("scale_rewards", "group") != "none":
            raise ValueError("baseline 'expected' gives advantages in reward units: set grpo.scale_rewards: none "
                             "(a batch whose rewards all agree has std 0 but non-zero advantages)")
        if self.label_balance < 0 or (self.label_balance and not self.balanced_batches):
            raise ValueError(f"label_balance must be >= 0 and, when set, needs balanced_batches: true (its "
                             f"target, half the answers 1, holds for balanced batches); got {self.label_balance}")
        from prorank.train.label_balance import LABEL_BALANCE_ANSWERS

        if self.label_balance_answer not in LABEL_BALANCE_ANSWERS:
            raise ValueError(f"label_balance_answer must be one of {LABEL_BALANCE_ANSWERS}, "
                             f"got {self.label_balance_answer!r}")
        if self.balanced_batches and self.grpo.get("shuffle_dataset"):
            raise ValueError("balanced_batches reads the pairs in their balanced order: "
                             "grpo.shuffle_dataset must stay false")
        if self.probe is not None:
            self.probe = nested(self.probe, ProbeConfig, "probe")
        from prorank.train.warmup_record import MEASUREMENTS, heldout_config

        for name in MEASUREMENTS:  # a bad dev/heldout block fails here, not after training
            if getattr(self, name) is not None:
                heldout_config(self, name)


def reward_plan(cfg: WarmupConfig) -> list[tuple[str, float]]:
    """``(name, weight)`` of each reward function handed to TRL, in ``REWARDS`` order: the
    configured ones, plus the ``label_one`` diagnostic at weight 0 (logged, never trained on)."""
    from prorank.train.rewards import REWARDS

    weights = {"label_one": 0.0, **cfg.reward_weights}
    return [(name, float(weights[name])) for name in REWARDS if name in weights]


def build_pairs(cfg: WarmupConfig, *, progress: bool = True) -> tuple[list, dict[str, Any]]:
    """Training pairs and a description of where they came from (for the checkpoint metadata)."""
    import random

    from prorank.train import pairs as P

    if cfg.jsonl is not None:
        items = P.read_jsonl_pairs(cfg.jsonl)
        random.Random(f"prorank-pairs:{cfg.seed}").shuffle(items)
        source: dict[str, Any] = {"source": "jsonl", "path": portable_path(cfg.jsonl)}
    else:
        items, parts = [], []
        encoder = None
        if cfg.teacher is not None:
            from prorank.dense import DenseEncoder

            encoder = DenseEncoder.load(cfg.teacher)
        from prorank.train.sources import given_candidates, load_sources, skipped_queries

        held: dict[tuple[str, str], set[str]] = {}
        for dev in load_sources([], cfg.hold_out, cfg.data_dir, cfg.seed)[1]:
            held.setdefault(dev.key, set()).update(dev.qids)
        for spec in cfg.datasets:  # several collections, each with its split, mixed below
            data = P.load_beir(spec.dataset, spec.split, cfg.data_dir)
            path = Path(data.path).resolve()
            excluded = held.get((str(path), spec.split), set())
            candidates = given_candidates(spec, data)  # negatives_from: candidates (checked here)
            part = P.beir_pairs(
                data,
                P.bm25_searcher(path) if candidates is None else candidates.negatives(),
                depth=cfg.negatives_depth,
                window=cfg.negatives_window if candidates is None else None,
                negatives_per_positive=cfg.negatives_per_positive,
                max_queries=spec.max_queries,
                max_positives_per_query=spec.max_positives_per_query,
                exclude_judged=cfg.exclude_judged,
                seed=cfg.seed,
                progress=progress,
                curriculum=cfg.negatives_curriculum,
                exclude_qids=excluded,
            )
            info: dict[str, Any] = {}
            if encoder is not None:
                part, info["teacher"] = _with_teacher(part, spec, data, encoder, cfg, progress)
            items += part
            parts.append({"dataset": path.name, "path": portable_path(path), "split": spec.split,
                          "queries": len({p.qid for p in part}), "pairs": len(part),
                          "negatives_from": spec.negatives_from, "held_out_queries": len(excluded),
                          "skipped_no_positive": len(skipped_queries(data, candidates)), **info})
        random.Random(f"prorank-pairs-mix:{cfg.seed}").shuffle(items)
        source = {
            "source": "beir", "datasets": parts,
            "negatives": {"retriever": "bm25", "depth": cfg.negatives_depth,
                          "window": list(cfg.negatives_window),
                          "curriculum": cfg.negatives_curriculum,
                          "per_positive": cfg.negatives_per_positive,
                          "exclude_judged": cfg.exclude_judged},
            "queries": sum(p["queries"] for p in parts),
        }
    stages = len(cfg.negatives_curriculum or [None])
    parts = [[p for p in items if p.stage == k] for k in range(stages)]  # one part without a curriculum
    if cfg.max_pairs is not None:
        parts = [part[: cfg.max_pairs // stages] for part in parts]
    if cfg.balanced_batches:
        parts = [P.balanced_order(part, cfg.seed) for part in parts]
    items = [p for part in parts for p in part]
    if cfg.negatives_curriculum:
        source["curriculum_pairs"] = [len(part) for part in parts]
    source["order"] = "balanced" if cfg.balanced_batches else "shuffled"
    if not items:
        raise ValueError("the training data holds no pairs (check dataset/split/jsonl and max_* caps)")
    if cfg.reward_weights.get("graded_correctness") and any(p.teacher is None for p in items):
        raise ValueError("reward_weights.graded_correctness: the jsonl pairs need a 'teacher' score each")
    source.update({"pairs": len(items), "labels": P.label_counts(items), "seed": cfg.seed})
    return items, source


def _with_teacher(part: list, spec: DataSource, data: Any, encoder: Any, cfg: WarmupConfig,
                  progress: bool) -> tuple[list, dict[str, Any]]:
    """``part``'s pairs with the stage-2 teacher's score of each (query, document)."""
    import dataclasses

    from prorank.train.score_data import bm25_run, teacher_scores
    from prorank.train.sources import LoadedSource

    source = LoadedSource(spec, data, sorted({p.qid for p in part}))
    scores, info = teacher_scores(source, encoder, bm25_run(source, cfg.negatives_depth), cfg.teacher_weight,
                                  progress)
    return [dataclasses.replace(p, teacher=scores[p.qid][p.docid]) for p in part], info


def grpo_args(cfg: WarmupConfig) -> Any:
    """``trl.GRPOConfig`` from the ``grpo`` block plus ProRank defaults it does not set."""
    import torch
    from trl import GRPOConfig

    args = {k: _yaml_float(v) for k, v in cfg.grpo.items()}
    on_cpu = bool(args.get("use_cpu")) or not torch.cuda.is_available()
    args.setdefault("output_dir", str(Path(cfg.output_dir) / "trainer"))
    args.setdefault("seed", cfg.seed)
    args.setdefault("max_completion_length", 4)
    args.setdefault("logging_steps", 1)
    args.setdefault("report_to", "none")
    if on_cpu:
        args.setdefault("use_cpu", True)
        args.setdefault("bf16", False)  # TRL defaults bf16 on; fp32 is what CPUs train in
    args["reward_weights"] = [weight for _, weight in reward_plan(cfg)]
    if cfg.balanced_batches:
        args["shuffle_dataset"] = False
    try:
        out = GRPOConfig(**args)
    except TypeError as err:
        raise ValueError(f"grpo: {err} (keys are trl.GRPOConfig fields)") from None
    prompts = out.generation_batch_size // out.num_generations
    if cfg.balanced_batches and prompts % 2:
        raise ValueError(f"balanced_batches: each generation batch holds {prompts} prompts "
                         "(grpo.generation_batch_size / grpo.num_generations); make it even")
    return out


def end_of_answer_bias(builder: Any, bias: float) -> list[list[Any]]:
    """``GenerationConfig.sequence_bias`` adding ``bias`` to the end-of-turn logit right after
    each answer label (and nowhere else): ``[[[id("0"), eos], bias], [[id("1"), eos], bias]]``."""
    eos = builder.tokenizer.eos_token_id
    if eos is None:
        raise ValueError("end_of_answer_bias: the tokenizer has no end-of-turn (eos) token")
    return [[[int(label_id), int(eos)], float(bias)] for label_id in builder.answer_token_ids]


def _exploration_schedule(cfg: WarmupConfig, builder: Any, max_completion_length: int) -> Any:
    """Callback driving the two exploration aids of ``WarmupConfig`` (see its fields).

    Before each step it sets the trainer's generation length (1 token in the answer-first phase)
    and the end-of-answer sampling bonus; after each logged step it updates both from the sampled
    format rate. ``phase``, ``generated_tokens`` and ``end_of_answer_bias`` go to the log.
    """
    from transformers import TrainerCallback

    start = float(cfg.end_of_answer_bias)

    class ExplorationSchedule(TrainerCallback):
        trainer: Any = None

        def __init__(self) -> None:
            self.phase = 1 if cfg.answer_first_phase else 2
            self.bias = start
            self.streak = 0

        def on_step_begin(self, args, state, control, **kwargs):
            gen = self.trainer.generation_config
            gen.max_new_tokens = 1 if self.phase == 1 else max_completion_length
            bias = self.bias if self.phase == 2 else 0.0
            gen.sequence_bias = end_of_answer_bias(builder, bias) if bias > 0 else None
            if self.trainer.generation_kwargs is not None:
                self.trainer.generation_kwargs["max_new_tokens"] = gen.max_new_tokens
                self.trainer.generation_kwargs["sequence_bias"] = gen.sequence_bias

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs:
                return
            logs.update({"phase": self.phase, "generated_tokens": 1 if self.phase == 1 else max_completion_length,
                         "end_of_answer_bias": round(self.bias if self.phase == 2 else 0.0, 3)})
            rate = logs.get(METRIC_ALIASES["format_rate"])
            if not isinstance(rate, (int, float)):
                return
            if self.phase == 1:
                self.streak = self.streak + 1 if rate >= 0.875 else 0
                if self.streak >= 2:
                    self.phase = 2
            elif rate >= 0.75:
                self.bias = max(0.0, self.bias - 2.0)
            elif rate <= 0.25 and self.bias > 0:
                self.bias = min(start + 4.0, self.bias + 1.0)

    return ExplorationSchedule()


def _resume_arg(cfg: WarmupConfig, trainer_dir: Path) -> str | bool | None:
    value = cfg.resume_from_checkpoint
    if value in (None, False):
        return None
    if value is True or str(value).lower() in ("true", "latest"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(trainer_dir)) if trainer_dir.is_dir() else None
        if last is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint: no checkpoint-N folder in {trainer_dir} to resume from"
            )
        return last
    path = Path(str(value))
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a folder")
    return str(path)


def main(cfg: WarmupConfig) -> dict[str, Any]:
    """Build the data, run GRPO, save the merged checkpoint; returns a summary dict."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    from prorank.checkpoint import read_metadata, save_checkpoint
    from prorank.registry import resolve_model
    from prorank.prompt import PromptBuilder
    from prorank.train.pairs import prompt_rows, read_jsonl_pairs, write_jsonl_pairs
    from prorank.train.rewards import REWARDS
    from prorank.train.trainlog import trainer_callback

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    started = time.time()
    out = Path(cfg.output_dir)
    args = grpo_args(cfg)
    model_path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    builder = PromptBuilder(tokenizer, cfg.max_length)

    # under accelerate launch the main process builds the pairs (BM25 negatives) once; the others
    # wait, then read the very pairs it wrote, so every process holds the same dataset
    is_main = args.process_index == 0
    with args.main_process_first(local=False, desc="training pairs"):
        if is_main:
            pairs, data_info = build_pairs(cfg)
            out.mkdir(parents=True, exist_ok=True)
            write_jsonl_pairs(pairs, out / "pairs.jsonl")
            atomic_write_json(out / "data.json", data_info)
        else:
            pairs = read_jsonl_pairs(out / "pairs.jsonl")
            data_info = json.loads((out / "data.json").read_text(encoding="utf-8"))
    rows = prompt_rows(pairs, builder, cfg.instruction)
    if tokenizer(rows[0]["prompt"])["input_ids"] != builder.encode(
        pairs[0].query, pairs[0].document, cfg.instruction
    ).input_ids:
        raise RuntimeError(
            "the tokenizer adds special tokens around the rendered prompt, so TRL would train on a "
            "different prompt than the reranker scores"
        )
    dataset = Dataset.from_list(rows)

    from prorank.train.lora import lora_config

    peft_config = None if cfg.lora is None else lora_config(cfg.lora)

    reward_funcs = [REWARDS[name] for name, _ in reward_plan(cfg)]
    resume = _resume_arg(cfg, Path(args.output_dir))
    callbacks = [trainer_callback(
        out / "log.jsonl", out / "curves.png", LOG_KEYS, title="ProRank stage 1 (GRPO warmup)",
        aliases=METRIC_ALIASES, plot_every_save=cfg.plot_every_save, truncate=resume is None and is_main,
        deadline=None if cfg.max_minutes is None else time.time() + 60 * cfg.max_minutes)]
    schedule = None
    if cfg.end_of_answer_bias or cfg.answer_first_phase:
        schedule = _exploration_schedule(cfg, builder, args.max_completion_length)
        callbacks.insert(0, schedule)  # runs first, so what it logs reaches log.jsonl
    if cfg.probe is not None and is_main:  # only the main process measures (and logs)
        from prorank.train.probe import probe_callback, probe_pairs

        callbacks.insert(0, probe_callback(cfg.probe, probe_pairs(cfg.probe, cfg.data_dir, cfg.seed), builder,
                                           cfg.instruction))
    from prorank.train.baseline import grpo_trainer_class
    from prorank.train.label_balance import with_label_balance

    trainer_class = grpo_trainer_class(cfg.baseline, builder.answer_token_ids)
    if cfg.label_balance:
        trainer_class = with_label_balance(trainer_class, builder.answer_token_ids, cfg.label_balance,
                                           cfg.label_balance_answer)
    trainer = trainer_class(
        model=model_path,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if schedule is not None:
        schedule.trainer = trainer
    result = trainer.train(resume_from_checkpoint=resume)

    model = trainer.accelerator.unwrap_model(trainer.model)
    trainer.accelerator.wait_for_everyone()
    summary: dict[str, Any] = {
        "output_dir": str(out), "checkpoint": str(out / "model"),
        "global_step": trainer.state.global_step, "train_runtime_s": round(time.time() - started, 1),
        "metrics": dict(result.metrics), "data": data_info, "resumed_from": resume,
    }
    if trainer.accelerator.is_main_process:
        if cfg.lora is not None and cfg.merge_lora:
            model = model.merge_and_unload()
        elif cfg.lora is not None:  # the adapter alone, its base named as the config names it
            for peft_cfg in model.peft_config.values():
                peft_cfg.base_model_name_or_path = cfg.model
        base_meta = read_metadata(model_path) or {}
        metadata = {
            "stage": "warmup",
            "base_model": base_meta.get("base_model", cfg.model),
            "parent": cfg.model if base_meta else None,
            "data": data_info,
            "config": to_dict(cfg),
            "grpo": {k: v for k, v in args.to_dict().items() if _jsonable(v)},
            "lora": cfg.lora,
            "train": {"global_step": trainer.state.global_step, **dict(result.metrics)},
            "versions": {"trl": trl.__version__, "torch": torch.__version__},
        }
        save_checkpoint(model, tokenizer, out / "model", metadata)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        # after the last collective call: the other ranks may exit while rank 0 measures
        from prorank.train.warmup_record import measure

        del trainer, model
        summary.update(measure(cfg))
    return summary


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` as a string; TRL needs the number."""
    return float(value) if isinstance(value, str) and _FLOAT.match(value) else value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))
