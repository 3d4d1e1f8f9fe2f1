"""Stage 1: GRPO prompt warmup (binary relevance with verifiable rewards).

A small instruct model does not follow the relevance prompt: it answers with prose or repeats
the prompt. GRPO samples a few short completions per prompt and rewards (1) answering with exactly
``0`` or ``1`` and (2) being right, so the model learns to answer the shared ProRank prompt with
the label token, the position the stage-2 score is read from. The trainer is TRL's
``GRPOTrainer`` with the adopted recipe's additions (the expected baseline, the restoring term on
the label bias, exploration, the probe): ``prorank.train.grpo_trainer.WarmupTrainer``.

``WarmupConfig`` holds only what TRL lacks (data, negatives, reward weights, the recipe's
additions, LoRA, held-out measurement); everything about the optimisation goes in its ``grpo``
block, passed unchanged to ``trl.GRPOConfig(**grpo)``. Its defaults are the adopted recipe's
(``baseline: expected``, ``label_balance: 1.0``, ``balanced_batches: true``; configs/warmup-cpu.yaml).
``main(cfg)`` works on CPU (``use_cpu`` is set when no GPU is visible), on one GPU and under
``accelerate launch`` on several processes (TRL's DDP; run with two CPU processes in
``tests/test_ddp.py``): the main process builds the pairs once and writes every file below,
``per_device_train_batch_size`` is per process, and TRL's ``generation_batch_size`` (default: that
batch x processes x ``steps_per_generation``) must be a multiple of ``num_generations``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prorank.atomic import atomic_write_json
from prorank.config import nested, option, to_dict
from prorank.evaluation.provenance import portable_path
from prorank.train.probe import ProbeConfig
from prorank.train.sources import DataSource

__all__ = ["WarmupConfig", "BASELINES", "build_pairs", "grpo_args", "main"]

BASELINES = ("group", "expected")  # TRL's group mean, or the policy's expected reward (grpo_trainer)


@dataclass
class WarmupConfig:
    """Stage-1 settings not covered by ``trl.GRPOConfig`` (which gets the ``grpo`` block)."""

    model: str = option("smollm2-135m-instruct", "alias, local folder or HF id of the model to warm up "
                        "(prorank.registry.resolve_model)")
    output_dir: str = option("runs/warmup", "run folder: model/, trainer/, pairs.jsonl, log.jsonl, summary.json, ...")
    # --- data
    datasets: list[DataSource] = option([DataSource("scifact")], "training collections, each {dataset, split, "
                                        "max_queries, max_positives_per_query, negatives_from} "
                                        "(prorank.train.sources.DataSource), mixed")
    data_dir: str | None = option(None, "where dataset names are looked up (default: $PRORANK_DATA_DIR)")
    jsonl: str | None = option(None, "a JSONL file of {query, document, label} pairs, used instead of datasets")
    hold_out: list[DataSource] = option([], "dev queries of a later stage, sampled exactly as stage 2 samples its "
                                        "`dev` sources, never trained on here (`prorank train pipeline` sets it "
                                        "to stage 2's dev list)")
    max_pairs: int | None = option(None, "cap on the training pairs after shuffling (either source)")
    negatives_depth: int = option(100, "BM25 results retrieved per query")
    negatives_window: list[int] = option([0, 100], "BM25 ranks [start, end) the negatives are drawn from")
    negatives_per_positive: int = option(1, "negatives per positive (pos:neg ratio 1:n)")
    exclude_judged: bool = option(False, "also never sample documents judged non-relevant")
    instruction: str | None = option(None, "optional task instruction line of the prompt")
    max_length: int = option(512, "prompt tokens (query and document truncated by the prompt builder)")
    seed: int = option(0, "seed of the pairs, their order and TRL's sampling")
    # --- the recipe's additions to GRPO (prorank.train.grpo_trainer)
    balanced_batches: bool = option(True, "read the pairs in order 1, 0, 1, 0 (grpo.shuffle_dataset off): every "
                                    "generation batch of an even number of prompts holds both labels equally")
    baseline: Literal["group", "expected"] = option(
        "expected", "advantage baseline: each prompt's expected reward under the policy's own answer "
        "probabilities (expected; needs grpo.scale_rewards: none), or the mean of its sampled group (group, TRL's GRPO)")
    label_balance: float = option(1.0, "weight of the restoring term on the label bias (KL of the step's mean "
                                  "P(answer 1) / P(answer 0 or 1) from 1/2, on whole answers); 0 = off; needs "
                                  "balanced_batches")
    reward_weights: dict = option({"format": 1.0, "correctness": 1.0}, "reward name "
                                  "(prorank.train.rewards.REWARDS) -> weight, handed to GRPOConfig.reward_weights")
    answer_first_phase: bool = option(False, "exploration: sample only the answer token until the sampled format "
                                      "rate is >= 0.875 two logged steps in a row, then grpo.max_completion_length")
    end_of_answer_bias: float = option(0.0, "exploration: logit bonus on ending the turn right after a label, adapted "
                                       "to keep about half the samples ending there (fades to 0); 0 = off")
    # --- model and run
    lora: dict | None = option(None, "peft.LoraConfig kwargs; null = full fine-tuning")
    merge_lora: bool = option(True, "with lora: merge the adapter into the weights (false: save the adapter alone "
                              "over its base; stage 2 from it writes one adapter holding both stages)")
    num_threads: int | None = option(None, "torch CPU threads (default: torch's)")
    resume_from_checkpoint: str | bool | None = option(None, "a trainer/checkpoint-N folder, or true for the latest "
                                                       "in output_dir/trainer")
    plot_every_save: bool = option(True, "redraw curves.png at every checkpoint save")
    max_minutes: float | None = option(None, "stop training (and save) after this much wall time")
    # --- measurements
    heldout: dict | None = option(None, "held-out before/after measurement (prorank.train.heldout.HeldoutConfig "
                                  "fields; models default to [base model, trained checkpoint]); null skips it")
    dev: dict | None = option(None, "the same on the first training split's queries this run did not train on "
                              "(defaults: that split, exclude_queries_of [output_dir/pairs.jsonl], output "
                              "output_dir/dev.json, no ranking effect): what to choose a recipe by; null skips it")
    probe: ProbeConfig | None = option(None, "a cheap held-out probe during training (prorank.train.probe."
                                       "ProbeConfig fields): score AUC and label shares every `every` steps, into "
                                       "log.jsonl; null skips it")
    summary: str | None = option(None, "extra copy of the run record (e.g. benchmarks/results/warmup-cpu.json); the "
                                 "curves PNG is copied next to it")
    grpo: dict = option({}, "trl.GRPOConfig fields, passed as is; output_dir (output_dir/trainer), seed, "
                        "max_completion_length (4), num_generations (2), logging_steps (1), scale_rewards (none with "
                        "the expected baseline), use_cpu and bf16 (off) on a CPU get ProRank defaults")

    def __post_init__(self) -> None:
        if self.jsonl is None and not self.datasets:
            raise ValueError("set either datasets (BEIR collections) or jsonl (a pairs file)")
        window = self.negatives_window
        if len(window) != 2 or not 0 <= window[0] < window[1] <= self.negatives_depth:
            raise ValueError(f"negatives window {window}: need [start, end] with 0 <= start < end <= "
                             f"negatives_depth ({self.negatives_depth})")
        if self.max_length < 32:
            raise ValueError(f"max_length must be >= 32, got {self.max_length}")
        from prorank.train.rewards import REWARDS

        unknown = sorted(set(self.reward_weights) - set(REWARDS))
        if unknown or not self.reward_weights:
            raise ValueError(f"reward_weights: unknown reward(s) {unknown}; choose from {sorted(REWARDS)}")
        if "reward_weights" in self.grpo:
            raise ValueError("set reward weights in reward_weights (by name), not grpo.reward_weights")
        self._check_recipe()
        if self.probe is not None:
            self.probe = nested(self.probe, ProbeConfig, "probe")
        from prorank.train.warmup_record import MEASUREMENTS, heldout_config

        for name in MEASUREMENTS:  # a bad dev/heldout block fails here, not after training
            if getattr(self, name) is not None:
                heldout_config(self, name)

    def _check_recipe(self) -> None:
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.baseline == "expected" and self.grpo.get("scale_rewards", "none") != "none":
            raise ValueError("baseline 'expected' gives advantages in reward units: set grpo.scale_rewards: none "
                             "(a batch whose rewards all agree has std 0 but non-zero advantages)")
        if self.label_balance < 0 or (self.label_balance and not self.balanced_batches):
            raise ValueError(f"label_balance must be >= 0 and, when set, needs balanced_batches: true (its "
                             f"target, half the answers 1, holds for balanced batches); got {self.label_balance}")
        if self.balanced_batches and self.grpo.get("shuffle_dataset"):
            raise ValueError("balanced_batches reads the pairs in their balanced order: "
                             "grpo.shuffle_dataset must stay false")


def reward_plan(cfg: WarmupConfig) -> list[tuple[str, float]]:
    """``(name, weight)`` of each reward function handed to TRL, in ``REWARDS`` order: the
    configured ones, plus the ``label_one`` diagnostic at weight 0 (logged, never trained on)."""
    from prorank.train.rewards import REWARDS

    weights = {"label_one": 0.0, **cfg.reward_weights}
    return [(name, float(weights[name])) for name in REWARDS if name in weights]


def build_pairs(cfg: WarmupConfig, *, progress: bool = True) -> tuple[list, dict[str, Any]]:
    """Training pairs and a description of where they came from (for the checkpoint metadata):
    the ``jsonl`` file's rows or those of every ``datasets`` source (``_source_pairs``), shuffled,
    capped at ``max_pairs``, then in balanced order with ``balanced_batches``."""
    import random

    from prorank.train import pairs as P

    if cfg.jsonl is not None:
        items = P.read_jsonl_pairs(cfg.jsonl)
        random.Random(f"prorank-pairs:{cfg.seed}").shuffle(items)
        source: dict[str, Any] = {"source": "jsonl", "path": portable_path(cfg.jsonl)}
    else:
        items, source = _source_pairs(cfg, progress)
    if cfg.max_pairs is not None:
        items = items[: cfg.max_pairs]
    if cfg.balanced_batches:
        items = P.balanced_order(items, cfg.seed)
    source["order"] = "balanced" if cfg.balanced_batches else "shuffled"
    if not items:
        raise ValueError("the training data holds no pairs (check dataset/split/jsonl and max_* caps)")
    source.update({"pairs": len(items), "labels": P.label_counts(items), "seed": cfg.seed})
    return items, source


def _source_pairs(cfg: WarmupConfig, progress: bool) -> tuple[list, dict[str, Any]]:
    """Pairs of every training source, mixed: each loaded as stage 2 loads it
    (``prorank.train.sources``: its data, given candidates, stage 2's dev queries held out), its
    queries and positives drawn by ``prorank.train.pairs.beir_pairs``, negatives from BM25's
    ``negatives_window`` or the given candidates."""
    import random

    from prorank.train import pairs as P
    from prorank.train.sources import describe, held_out, load_data, load_sources, training_source

    held = held_out(load_sources([], cfg.hold_out, cfg.data_dir, cfg.seed)[1])
    items, parts = [], []
    for spec in cfg.datasets:  # several collections, each with its split, mixed below
        source = training_source(spec, load_data(spec, cfg.data_dir))
        excluded = held.get(source.key, set())
        given = source.given_negatives()  # negatives_from: candidates
        part = P.beir_pairs(
            source.data, P.bm25_searcher(Path(source.data.path).resolve()) if given is None else given,
            depth=cfg.negatives_depth, window=cfg.negatives_window if given is None else None,
            negatives_per_positive=cfg.negatives_per_positive, max_queries=spec.max_queries,
            max_positives_per_query=spec.max_positives_per_query, exclude_judged=cfg.exclude_judged,
            seed=cfg.seed, progress=progress, exclude_qids=excluded)
        source.qids = sorted({p.qid for p in part})
        items += part
        parts.append({**describe([source])[0], "pairs": len(part), "held_out_queries": len(excluded)})
    random.Random(f"prorank-pairs-mix:{cfg.seed}").shuffle(items)
    negatives = {"retriever": "bm25", "depth": cfg.negatives_depth, "window": list(cfg.negatives_window),
                 "per_positive": cfg.negatives_per_positive, "exclude_judged": cfg.exclude_judged}
    return items, {"source": "beir", "datasets": parts, "negatives": negatives,
                   "queries": sum(p["queries"] for p in parts)}


def grpo_args(cfg: WarmupConfig) -> Any:
    """``trl.GRPOConfig`` from the ``grpo`` block plus ProRank defaults it does not set."""
    import torch
    from trl import GRPOConfig

    args = {k: _yaml_float(v) for k, v in cfg.grpo.items()}
    on_cpu = bool(args.get("use_cpu")) or not torch.cuda.is_available()
    args.setdefault("output_dir", str(Path(cfg.output_dir) / "trainer"))
    args.setdefault("seed", cfg.seed)
    args.setdefault("max_completion_length", 4)
    args.setdefault("num_generations", 2)  # the recipe's; with TRL's 8, its default batch of 8 is one prompt
    args.setdefault("logging_steps", 1)
    args.setdefault("report_to", "none")
    if cfg.baseline == "expected":
        args.setdefault("scale_rewards", "none")  # advantages in reward units (WarmupConfig checks it)
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


def main(cfg: WarmupConfig) -> dict[str, Any]:
    """Build the data, run GRPO, save the checkpoint, measure it; returns a summary dict."""
    import torch
    from transformers import AutoTokenizer

    from prorank.prompt import PromptBuilder
    from prorank.registry import resolve_model
    from prorank.train.warmup_record import measure

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    started, out = time.time(), Path(cfg.output_dir)

    # 1. settings: TRL's GRPOConfig, the model and the shared prompt of its tokenizer
    args = grpo_args(cfg)
    model_path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    builder = PromptBuilder(tokenizer, cfg.max_length)

    # 2. data: the training pairs (built once, by the main process) as prompt rows
    pairs, data_info = _training_pairs(cfg, args)
    dataset = _prompt_dataset(pairs, builder, cfg.instruction)

    # 3. the trainer: TRL's GRPO with the recipe's additions, logging to log.jsonl and curves.png
    resume = _resume_arg(cfg, Path(args.output_dir))
    trainer = _trainer(cfg, args, builder, model_path, dataset, resume)

    # 4. train
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.accelerator.wait_for_everyone()
    summary: dict[str, Any] = {
        "output_dir": str(out), "checkpoint": str(out / "model"),
        "global_step": trainer.state.global_step, "train_runtime_s": round(time.time() - started, 1),
        "metrics": dict(result.metrics), "data": data_info, "resumed_from": resume,
    }

    # 5. the checkpoint, written by the main process
    if trainer.accelerator.is_main_process:
        _save_model(cfg, trainer, builder, model_path, data_info, result.metrics)
    trainer.accelerator.wait_for_everyone()

    # 6. dev and held-out measurements, summary.json: after the last collective call (the other
    #    processes may exit while the main one measures)
    if trainer.accelerator.is_main_process:
        del trainer
        summary.update(measure(cfg))
    return summary


def _training_pairs(cfg: WarmupConfig, args: Any) -> tuple[list, dict[str, Any]]:
    """The pairs and where they came from: the main process builds them (BM25 negatives) once and
    writes ``pairs.jsonl`` and ``data.json``; under accelerate launch the others wait, then read
    the very pairs it wrote, so every process holds the same dataset."""
    from prorank.train.pairs import read_jsonl_pairs, write_jsonl_pairs

    out = Path(cfg.output_dir)
    with args.main_process_first(local=False, desc="training pairs"):
        if args.process_index == 0:
            pairs, data_info = build_pairs(cfg)
            out.mkdir(parents=True, exist_ok=True)
            write_jsonl_pairs(pairs, out / "pairs.jsonl")
            atomic_write_json(out / "data.json", data_info)
        else:
            pairs = read_jsonl_pairs(out / "pairs.jsonl")
            data_info = json.loads((out / "data.json").read_text(encoding="utf-8"))
    return pairs, data_info


def _prompt_dataset(pairs: list, builder: Any, instruction: str | None) -> Any:
    """TRL's training rows (``prompt``, ``label``, ...): each pair's prompt exactly as the reranker
    scores it, checked on the first pair."""
    from datasets import Dataset

    from prorank.train.pairs import prompt_rows

    rows = prompt_rows(pairs, builder, instruction)
    if builder.tokenizer(rows[0]["prompt"])["input_ids"] != builder.encode(
        pairs[0].query, pairs[0].document, instruction
    ).input_ids:
        raise RuntimeError(
            "the tokenizer adds special tokens around the rendered prompt, so TRL would train on a "
            "different prompt than the reranker scores"
        )
    return Dataset.from_list(rows)


def _trainer(cfg: WarmupConfig, args: Any, builder: Any, model_path: str, dataset: Any,
             resume: str | None) -> Any:
    """``WarmupTrainer`` with the configured rewards, LoRA, probe (main process) and log writer."""
    from prorank.train.grpo_trainer import METRIC_ALIASES, WarmupTrainer
    from prorank.train.lora import lora_config
    from prorank.train.rewards import REWARDS
    from prorank.train.trainlog import trainer_callback
    from prorank.train.warmup_record import LOG_KEYS

    out, is_main = Path(cfg.output_dir), args.process_index == 0
    log = trainer_callback(
        out / "log.jsonl", out / "curves.png", LOG_KEYS, title="ProRank stage 1 (GRPO warmup)",
        aliases=METRIC_ALIASES, plot_every_save=cfg.plot_every_save, truncate=resume is None and is_main,
        deadline=None if cfg.max_minutes is None else time.time() + 60 * cfg.max_minutes)
    probe = None
    if cfg.probe is not None and is_main:  # only the main process measures (and logs)
        from prorank.train.probe import probe_pairs

        probe = probe_pairs(cfg.probe, cfg.data_dir, cfg.seed)
    return WarmupTrainer(
        cfg, builder, probe_pairs=probe,
        model=model_path,
        reward_funcs=[REWARDS[name] for name, _ in reward_plan(cfg)],
        args=args,
        train_dataset=dataset,
        processing_class=builder.tokenizer,
        peft_config=None if cfg.lora is None else lora_config(cfg.lora),
        callbacks=[log],
    )


def _save_model(cfg: WarmupConfig, trainer: Any, builder: Any, model_path: str, data_info: dict[str, Any],
                metrics: dict[str, Any]) -> None:
    """``output_dir/model``: the trained model (LoRA merged), or with ``merge_lora: false`` the
    adapter alone, its base named as the config names it; metadata says how it was trained."""
    import torch
    import trl

    from prorank.checkpoint import read_metadata, save_checkpoint

    model = trainer.accelerator.unwrap_model(trainer.model)
    if cfg.lora is not None and cfg.merge_lora:
        model = model.merge_and_unload()
    elif cfg.lora is not None:
        for peft_cfg in model.peft_config.values():
            peft_cfg.base_model_name_or_path = cfg.model
    base_meta = read_metadata(model_path) or {}
    metadata = {
        "stage": "warmup",
        "base_model": base_meta.get("base_model", cfg.model),
        "parent": cfg.model if base_meta else None,
        "data": data_info,
        "config": to_dict(cfg),
        "grpo": {k: v for k, v in trainer.args.to_dict().items() if _jsonable(v)},
        "lora": cfg.lora,
        "train": {"global_step": trainer.state.global_step, **dict(metrics)},
        "versions": {"trl": trl.__version__, "torch": torch.__version__},
    }
    save_checkpoint(model, builder.tokenizer, Path(cfg.output_dir) / "model", metadata)


def _resume_arg(cfg: WarmupConfig, trainer_dir: Path) -> str | None:
    """The checkpoint folder to resume from (``resume_from_checkpoint``), or None for a new run."""
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


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` as a string; TRL needs the number."""
    return float(value) if isinstance(value, str) and _FLOAT.match(value) else value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))
