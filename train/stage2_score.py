"""Stage 2: fine-grained score learning (no new layers).

The model keeps the shared ProRank prompt; its score is ``logit("1") - logit("0")`` at the
answer position, computed by :func:`prorank.scoring.relevance_scores` -- the very function the
``Reranker`` uses at inference -- on prompts from ``PromptBuilder.encode_many``. Stage 2 fine-tunes
the model (fully, its top layers, or with LoRA) so that this score orders documents: each
training group ``[positive, hard negatives...]`` (:mod:`prorank.train.score_data`) gives one row
of a ``[groups, docs]`` score tensor and a loss (or weighted mix) from :mod:`prorank.train.losses`
is minimised -- distilling the hybrid teacher (:mod:`prorank.teacher`) and/or the qrels labels.

``main(cfg)`` reads top to bottom: build data -> load model -> restore state -> train steps with
periodic dev evaluation (the best checkpoint is kept, with the fusion weight tuned on the dev
queries) -> summary. It runs on CPU (fp32), one GPU (bf16 autocast) or several processes under
``accelerate launch`` (DDP through ``accelerate.Accelerator``; tested with two CPU processes in
``tests/test_ddp.py``). There the main process alone builds the data (BM25 negatives, teacher
scores) that all processes then read, runs the dev evaluation (the others wait) and writes every
file below; process ``r`` of ``n`` trains on slice ``r`` of the batch one process with ``n`` times
``groups_per_batch`` would read, so the run follows the same loss curve and ends at the same
weights (up to float rounding) as that single process.

Output folder layout (``output_dir``)::

    model/        best checkpoint on the dev set (the last one without a dev set); a LoRA adapter
                  when ``merge_lora: false`` -> Reranker.from_pretrained(output_dir/"model")
    state/        resume state (model, optimizer, scheduler, RNG, step), replaced atomically
                  (:mod:`prorank.train.score_state`)
    groups.jsonl  the training groups (reused on resume)
    dev.json      the dev queries and their BM25 candidates (prorank.train.devset.DevSet)
    data.json     where the data came from (sources, counts, teacher weights)
    log.jsonl     one record per step (loss, learning_rate, ...) and per evaluation
    curves.png    plot of loss and dev nDCG@10
    summary.json  what was trained, best step and dev history
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from prorank.atomic import atomic_write_json
from prorank.config import option, to_dict
from prorank.evaluation.provenance import portable_path
from prorank.train.devset import DevResult, DevSet, build_devset
from prorank.train.devset import evaluate as evaluate_dev
from prorank.train.groups import encode_groups, read_jsonl_groups, scatter_scores, write_jsonl_groups
from prorank.train.losses import compute_loss, loss_needs_teacher, loss_weights
from prorank.train.score_state import (TRAINER_FILE, check_resumable, restarts_after_resume, restore_state,
                                       save_state, schedule, state_dir, sync_learning_rate)
from prorank.train.sources import DataSource, describe, load_sources
from prorank.train.trainlog import TrainLog, plot_curves

__all__ = ["ScoreConfig", "LOG_KEYS", "main"]

LOG_KEYS = ("loss", "dev_ndcg@10", "dev_fused_ndcg@10", "learning_rate", "grad_norm")


@dataclass
class ScoreConfig:
    """Stage-2 settings; YAML keys equal these field names (see ``configs/score*.yaml``)."""

    model: str = option("smollm2-135m-instruct", "base model, or a stage-1 checkpoint (runs/warmup/model)")
    output_dir: str = option("runs/score", "run folder: model/ (the checkpoint), state/ (resume), log.jsonl, curves")
    # --- data: BEIR collections (each with its split, mixed with seeded sampling), or JSONL groups
    datasets: list[DataSource] = option([DataSource("scifact")], "training collections, each {dataset, split, "
                                        "max_queries, max_positives_per_query, negatives_from} "
                                        "(prorank.train.sources.DataSource), mixed")
    dev: list[DataSource] = option([], "dev collections whose sampled queries tune and choose the model "
                                   "(nDCG@10 every eval_every steps), held out of matching training data")
    data_dir: str | None = option(None, "where dataset names are looked up (default: $PRORANK_DATA_DIR)")
    jsonl: str | None = option(None, "training groups from this JSONL file instead of datasets")
    max_groups: int | None = option(None, "cap on the training groups after shuffling (either source)")
    negatives: int = option(3, "hard negatives per group (the group is 1 + negatives documents)")
    negatives_pool: int = option(8, "BM25 negatives mined per query; each group samples `negatives` of them")
    negatives_depth: int = option(100, "BM25 results retrieved per query to mine negatives from")
    negatives_window: list[int] = option([0, 100], "BM25 ranks [start, end) the negatives are drawn from")
    exclude_judged: bool = option(False, "also never sample documents judged non-relevant")
    instruction: str | None = option(None, "optional task instruction line of the prompt")
    max_length: int = option(512, "prompt tokens (also the checkpoint's default at inference)")
    # --- teacher (distillation targets): dense encoder fused with BM25, see prorank.teacher
    teacher: str | None = option(None, "dense model alias/folder of the teacher, e.g. all-minilm-l6-v2; "
                                 "null = no teacher")
    teacher_bm25_weight: float | None = option(None, "BM25's share of the teacher's fused score in [0, 1] "
                                               "(null: tuned per collection on its training queries)")
    teacher_scale: float = option(10.0, "teacher logits = scale x teacher score (in [0, 1] per query)")
    # --- loss
    loss: str | dict = option("listwise", "a name of prorank.train.losses.LOSSES or a weighted mix "
                              "{kl: 1.0, listwise: 0.5}")
    temperature: float = option(1.0, "softmax temperature of the listwise and kl losses")
    # --- optimisation
    learning_rate: float = option(2e-5, "AdamW learning rate (peak of the schedule)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    lr_scheduler: Literal["linear", "cosine", "constant"] = option("linear", "learning-rate schedule after warmup")
    warmup_ratio: float = option(0.1, "share of max_steps spent warming the learning rate up")
    max_steps: int = option(100, "optimizer steps")
    restarts: list[int] = option([], "steps where an earlier schedule ended: the learning rate follows the "
                                 "schedule of length restarts[0] up to it, then the next one's, ..., then "
                                 "max_steps' (a finished run re-run with a larger max_steps records its old "
                                 "length here, so its config retrains it from scratch)")
    groups_per_batch: int = option(2, "groups per device and micro-batch")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: no clipping)")
    train_layers: int | None = option(None, "train only the top N decoder layers (+ final norm); null = all")
    lora: dict | None = option(None, "peft.LoraConfig kwargs over prorank.train.lora.LORA_DEFAULTS; null = no LoRA")
    merge_lora: bool = option(True, "with lora: merge the adapter into the weights (false: the checkpoint is the "
                              "adapter alone, small, over its base)")
    train_answer_rows: bool = option(False, "with lora: also train the embedding rows of the answer labels 0 and 1 "
                                     "(PEFT trainable tokens; with tied embeddings the output rows the score reads)")
    gradient_checkpointing: bool = option(False, "trade compute for memory (long prompts, big groups)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = option("auto", "auto: bf16 on CUDA, no on CPU")
    cpu: bool = option(False, "force CPU even when a GPU is visible")
    num_threads: int | None = option(None, "torch CPU threads (default: torch's)")
    # --- periodic evaluation: nDCG@10 of reranked BM25 top-k on the dev queries
    dev_top_k: int = option(20, "BM25 candidates reranked per dev query")
    eval_every: int = option(50, "steps between dev evaluations (and at the end)")
    eval_at_start: bool = option(True, "also evaluate the untrained model")
    eval_batch_size: int | None = option(None, "pairs per forward pass of the dev evaluation (default: the "
                                         "device's)")
    fusion: Literal["interpolate", "none"] = option("interpolate", "fusion with BM25, its weight tuned on dev and "
                                                    "saved in the checkpoint")
    # --- checkpoints and logs
    save_every: int = option(50, "steps between resume states (and at the end); 0 = only at the end")
    resume: bool = option(True, "continue from output_dir/state when present")
    isolate_data: bool = option(True, "build the groups and dev set in a child process when they load collections "
                                "(datasets or dev): BM25's JVM, the teacher and the corpora then never stay "
                                "resident in the training process")
    log_every: int = option(1, "steps between log.jsonl lines")
    seed: int = option(0, "seed of the data, batches and initialisation")

    def __post_init__(self) -> None:
        if self.jsonl is None and not self.datasets:
            raise ValueError("set either datasets (BEIR collections) or jsonl (a groups file)")
        loss_weights(self.loss)  # raises naming the loss
        for name in ("max_steps", "groups_per_batch", "gradient_accumulation_steps", "negatives",
                     "dev_top_k", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(not 0 < r < self.max_steps for r in self.restarts) or self.restarts != sorted(set(self.restarts)):
            raise ValueError(f"restarts must be increasing steps between 0 and max_steps={self.max_steps}, "
                             f"got {self.restarts}")
        if self.save_every < 0:
            raise ValueError("save_every must be >= 0")
        if len(self.negatives_window) != 2:
            raise ValueError(f"negatives_window must be [start, end], got {self.negatives_window}")
        if self.train_layers is not None and self.train_layers < 1:
            raise ValueError(f"train_layers must be >= 1 or null, got {self.train_layers}")
        if self.train_layers is not None and self.lora is not None:
            raise ValueError("train_layers and lora exclude each other; set one of them")
        if self.train_answer_rows and self.lora is None:
            raise ValueError("train_answer_rows needs lora (full fine-tuning trains those rows already)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.teacher_bm25_weight is not None and not 0.0 <= self.teacher_bm25_weight <= 1.0:
            raise ValueError(f"teacher_bm25_weight must be in [0, 1] or null, got {self.teacher_bm25_weight}")
        if loss_needs_teacher(self.loss) and self.teacher is None and self.jsonl is None:
            raise ValueError(f"loss {self.loss!r} distils a teacher: set teacher (e.g. all-minilm-l6-v2)")


# ------------------------------------------------------------------------------ 1. data
def prepare_data(cfg: ScoreConfig, out: Path) -> dict[str, Any]:
    """``build_data``, in a child process when ``cfg.isolate_data`` and it loads collections (BM25,
    the teacher; ``prorank.train.isolated``; JSONL groups alone are read here);
    ``data.json`` records which process built it and that process's peak resident memory."""
    from prorank.train.memory import peak_rss_mb

    loads_collections = (cfg.jsonl is None and bool(cfg.datasets)) or bool(cfg.dev)
    if cfg.isolate_data and loads_collections:
        from prorank.train.isolated import run_isolated

        info, peak = run_isolated(build_data, cfg, out)
        process = "child"
    else:
        info, peak, process = build_data(cfg, out), peak_rss_mb(), "training"
    info["built_by"] = {"process": process, "peak_rss_mb": peak}
    atomic_write_json(out / "data.json", info)
    return info


def build_data(cfg: ScoreConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Training groups and dev set -> ``groups.jsonl``, ``dev.json``; returns their description
    (``prepare_data`` writes it to ``data.json``)."""
    import random

    from prorank.train.score_data import training_groups

    info: dict[str, Any] = {}
    train_sources, dev_sources = load_sources([] if cfg.jsonl else cfg.datasets, cfg.dev, cfg.data_dir, cfg.seed)
    if cfg.jsonl is not None:
        groups = read_jsonl_groups(cfg.jsonl)
        random.Random(f"prorank-score-groups:{cfg.seed}").shuffle(groups)
        groups = groups[: cfg.max_groups] if cfg.max_groups is not None else groups
        info["jsonl"] = portable_path(cfg.jsonl)
    else:
        encoder = None
        if cfg.teacher is not None:
            from prorank.dense import DenseEncoder

            encoder = DenseEncoder.load(cfg.teacher)
        groups, info["sources"] = training_groups(
            train_sources, n_negatives=cfg.negatives, pool=cfg.negatives_pool, depth=cfg.negatives_depth,
            window=cfg.negatives_window, exclude_judged=cfg.exclude_judged, seed=cfg.seed, encoder=encoder,
            teacher_bm25_weight=cfg.teacher_bm25_weight, max_groups=cfg.max_groups, progress=progress)
        info["datasets"] = describe(train_sources)
    if cfg.instruction:
        import dataclasses

        groups = [dataclasses.replace(g, instruction=cfg.instruction) for g in groups]
    if not groups:
        raise ValueError("no training groups: the data holds no query with a positive and a negative")
    write_jsonl_groups(groups, out / "groups.jsonl")
    info["groups"] = len(groups)
    info["docs_per_group"] = max(len(g.docs) for g in groups)
    info["negatives"] = {"depth": cfg.negatives_depth, "window": list(cfg.negatives_window),
                         "pool": cfg.negatives_pool, "per_group": cfg.negatives}
    dev = build_devset(dev_sources, cfg.dev_top_k)
    dev.save(out / "dev.json")
    info["dev"] = dev.describe()
    return info


# ----------------------------------------------------------------------------- 2. model
def load_trainable(cfg: ScoreConfig) -> tuple[Any, Any, dict[str, Any]]:
    """The model with the parameters ``cfg`` trains (all, the top layers, or LoRA), its tokenizer
    and the parent checkpoint's metadata."""
    from prorank.loading import load_model

    loaded = load_model(cfg.model, dtype=torch.float32)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.config.use_cache = False
    if cfg.lora is not None:
        from peft import get_peft_model

        from prorank.prompt import LABELS, answer_token_id
        from prorank.train.lora import lora_config

        extra = {"trainable_token_indices": [answer_token_id(tokenizer, label) for label in LABELS]} \
            if cfg.train_answer_rows else {}
        config = lora_config(cfg.lora, **extra)
        try:
            model = get_peft_model(model, config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"lora: {err} (keys are peft.LoraConfig fields)") from None
    elif cfg.train_layers is not None:
        layers = model.get_decoder().layers
        if cfg.train_layers > len(layers):
            raise ValueError(f"train_layers={cfg.train_layers} but the model has {len(layers)} layers")
        model.requires_grad_(False)
        for layer in layers[len(layers) - cfg.train_layers:]:
            layer.requires_grad_(True)
        norm = getattr(model.get_decoder(), "norm", None)
        if norm is not None:
            norm.requires_grad_(True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    return model, tokenizer, loaded.metadata


def checkpoint_model(model: Any, cfg: ScoreConfig, base_model: str) -> Any:
    """What to write: the model, LoRA merged into a copy, or (``merge_lora: false``) the adapter
    with its base named portably (the alias or hub id, never a local path)."""
    if cfg.lora is None:
        return model
    if cfg.merge_lora:
        import copy

        return copy.deepcopy(model).merge_and_unload()
    from prorank.checkpoint import read_metadata
    from prorank.loading import ADAPTER_CONFIG
    from prorank.registry import resolve_model

    parent = Path(resolve_model(cfg.model))
    if read_metadata(parent) is not None and not (parent / ADAPTER_CONFIG).is_file():
        base_model = str(cfg.model)  # trained over a full checkpoint (stage 1 fully fine-tuned): that is its base
    for peft_cfg in model.peft_config.values():
        peft_cfg.base_model_name_or_path = base_model
    return model


def _batch(groups: list, micro: int, cfg: ScoreConfig, rank: int, world: int) -> list:
    """Groups of micro-batch ``micro`` for process ``rank``: a seeded permutation per epoch.

    Positions ``[(micro * world + rank) * size, + size)`` of the permuted stream: ``world``
    processes of ``size`` groups read, together, exactly the groups (in order) that one process
    of ``world * size`` groups reads -- process ``r`` takes slice ``r`` of that batch."""
    import random

    size = cfg.groups_per_batch
    start = (micro * world + rank) * size
    out = []
    for pos in range(start, start + size):
        epoch, idx = divmod(pos, len(groups))
        order = list(range(len(groups)))
        random.Random(f"prorank-score-epoch:{cfg.seed}:{epoch}").shuffle(order)
        out.append(groups[order[idx]])
    return out


def dev_calibration(pairs: Any, max_length: int) -> dict[str, Any]:
    """``{"calibration": ...}``: Platt scaling of the raw score to P(relevant), fitted on the dev
    pairs the checkpoint was just evaluated on (``prorank.calibration``), so the checkpoint serves
    calibrated scores without a ``prorank calibrate`` run; ``{"calibration_error": ...}`` instead
    when these pairs cannot be fitted (e.g. an untrained model whose scores fall as relevance rises)."""
    from prorank.calibration import fit_calibration

    try:
        fitted = fit_calibration(pairs.scores, pairs.labels, fitted_on=pairs.describe(),
                                 model={"max_length": max_length, "fitted_by": "stage 2's dev evaluation"})
    except ValueError as err:
        return {"calibration_error": str(err)}
    return {"calibration": fitted.to_dict()}


# ------------------------------------------------------------------------------ 3. the run (state: prorank.train.score_state)
class ScoreRun:
    """One stage-2 run: the prepared model and optimizer, the data and the run state."""

    def __init__(self, cfg: ScoreConfig) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from prorank.prompt import PromptBuilder

        self.cfg, self.out = cfg, Path(cfg.output_dir)
        use_cpu = cfg.cpu or not torch.cuda.is_available()
        precision = cfg.mixed_precision
        if precision == "auto":
            precision = "bf16" if not use_cpu and torch.cuda.is_bf16_supported() else "no"
        self.precision = precision
        self.acc = Accelerator(cpu=use_cpu, mixed_precision=precision,
                               gradient_accumulation_steps=cfg.gradient_accumulation_steps)
        self.main_proc = self.acc.is_main_process
        folder = state_dir(self.out) if cfg.resume else None
        if folder is not None:
            saved = json.loads((folder / TRAINER_FILE).read_text(encoding="utf-8"))
            check_resumable(saved, cfg)
            cfg.restarts = restarts_after_resume(saved.get("config", {}), saved["step"], cfg)
        if self.main_proc:  # data: built once by the main process, read by all, reused on resume
            self.out.mkdir(parents=True, exist_ok=True)
            if folder is None or not (self.out / "groups.jsonl").is_file():
                prepare_data(cfg, self.out)
        self.acc.wait_for_everyone()
        self.groups = read_jsonl_groups(self.out / "groups.jsonl")
        self.dev = DevSet.load(self.out / "dev.json")
        self.data_info = json.loads((self.out / "data.json").read_text(encoding="utf-8"))
        if loss_needs_teacher(cfg.loss) and any(g.teacher is None for g in self.groups):
            raise ValueError(f"loss {cfg.loss!r} needs teacher scores ('scores' in every group)")

        set_seed(cfg.seed)
        model, self.tokenizer, parent = load_trainable(cfg)
        self.builder = PromptBuilder(self.tokenizer, cfg.max_length)
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = schedule(cfg, optimizer, self.acc.num_processes)
        self.model, self.optimizer, self.scheduler = self.acc.prepare(model, optimizer, scheduler)
        self.state = restore_state(self.acc, self.out, cfg)
        sync_learning_rate(self.scheduler)
        self.log = TrainLog(self.out / "log.jsonl")
        self.micro = self.state.step * cfg.gradient_accumulation_steps
        parent = parent or {}
        self.metadata = {
            "stage": "score", "base_model": parent.get("base_model", cfg.model),
            "parent": cfg.model if parent else None, "parent_stage": parent.get("stage"),
            "loss": cfg.loss, "max_length": cfg.max_length, "data": self.data_info, "config": to_dict(cfg),
        }
        self.trainable = sum(p.numel() for p in self.params)

    # one optimizer step (gradient_accumulation_steps micro-batches)
    def train_step(self) -> dict[str, Any]:
        from prorank.scoring import collate, relevance_scores

        cfg, acc = self.cfg, self.acc
        losses, grad_norm = [], None
        while True:
            with acc.accumulate(self.model):
                batch = encode_groups(_batch(self.groups, self.micro, cfg, acc.process_index, acc.num_processes),
                                      self.builder)
                ids, mask = collate(batch.prompts, self.tokenizer.pad_token_id, acc.device)
                with acc.autocast():
                    flat = relevance_scores(self.model, ids, mask, self.builder.answer_token_ids)
                scores = scatter_scores(flat.float(), batch.mask)
                dev_ = scores.device
                teacher = batch.teacher.to(dev_) * cfg.teacher_scale if batch.teacher is not None else None
                loss = compute_loss(cfg.loss, scores, batch.labels.to(dev_), batch.mask.to(dev_), teacher,
                                    cfg.temperature)
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm > 0:
                    grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
            self.micro += 1
            losses.append(float(acc.gather(loss.detach()).mean()))
            if acc.sync_gradients:
                break
        self.state.step += 1
        return {"loss": sum(losses) / len(losses), "learning_rate": self.scheduler.get_last_lr()[0],
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "groups_seen": self.micro * cfg.groups_per_batch * acc.num_processes}

    def save_model(self, result: DevResult | None) -> None:
        from prorank.checkpoint import save_checkpoint

        train = {"step": self.state.step, "dev_ndcg@10": None if result is None else result.ndcg,
                 "trainable_params": self.trainable}
        meta = {**self.metadata, "train": train}
        if result is not None and self.cfg.fusion != "none":
            meta["fusion"] = {"method": self.cfg.fusion, "weight": result.fusion_weight,
                              "tuned_on": f"dev: {self.dev.queries} queries, BM25 top-{self.dev.top_k}",
                              "dev_fused_ndcg@10": result.fused_ndcg}
        if result is not None and result.pairs is not None:
            meta.update(dev_calibration(result.pairs, self.cfg.max_length))
        plain = checkpoint_model(self.acc.unwrap_model(self.model), self.cfg, self.metadata["base_model"])
        save_checkpoint(plain, self.tokenizer, self.out / "model", meta, finish=self.chain_parent)

    def chain_parent(self, folder: Path) -> None:
        """An adapter trained over an adapter checkpoint (stage 1 with LoRA) is written as one
        adapter over that checkpoint's base (``prorank.adapter_chain``), exact and self-contained."""
        from prorank.adapter_chain import chain_adapters
        from prorank.loading import ADAPTER_CONFIG
        from prorank.registry import resolve_model

        parent = Path(resolve_model(self.cfg.model))
        if self.cfg.lora is not None and not self.cfg.merge_lora and (parent / ADAPTER_CONFIG).is_file():
            chain_adapters(parent, folder, folder)

    def evaluate_and_save(self) -> DevResult | None:
        """Dev nDCG@10 (model alone and fused); a new best is written to ``model/``."""
        from prorank.reranker import Reranker

        result = None
        if self.main_proc and self.dev.queries:
            model = self.acc.unwrap_model(self.model)
            was_training = model.training
            reranker = Reranker(model, self.tokenizer, max_length=self.cfg.max_length,
                                batch_size=self.cfg.eval_batch_size)
            with self.acc.autocast():
                result = evaluate_dev(reranker, self.dev, self.cfg.instruction)
            model.train(was_training)
            self.log.log(self.state.step, **result.log_record())
            self.state.history.append({"step": self.state.step, **result.log_record()})
            if self.state.best is None or result.ndcg > self.state.best:
                self.state.best, self.state.best_step = result.ndcg, self.state.step
                self.save_model(result)
            self.plot()
        self.acc.wait_for_everyone()
        return result

    def plot(self) -> None:
        plot_curves(self.out / "log.jsonl", self.out / "curves.png", LOG_KEYS, title=f"stage 2 ({self.cfg.loss})",
                    smooth=10)


def main(cfg: ScoreConfig, *, stop_at: int | None = None) -> dict[str, Any]:
    """Train (or resume), keep the best dev checkpoint in ``output_dir/model``; return a summary.

    ``stop_at`` ends this call after that optimizer step as an interruption would (the resume
    state is saved there, nothing else is finalised); calling ``main`` again continues the run.
    """
    from tqdm.auto import tqdm

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    started = time.time()
    run = ScoreRun(cfg)
    state, has_dev = run.state, run.dev.queries > 0
    if state.step == 0 and has_dev and run.main_proc:
        run.log.log(0, **{"dev_bm25_ndcg@10": run.dev.bm25_ndcg})  # the first stage, for reference
    if state.step == 0 and has_dev and cfg.eval_at_start:
        run.evaluate_and_save()
    run.model.train()
    tic = time.time()
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="score", disable=not run.main_proc)
    while state.step < cfg.max_steps:
        record = run.train_step()
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        if run.main_proc and (state.step % cfg.log_every == 0 or state.step == cfg.max_steps):
            run.log.log(state.step, **record, seconds=round(time.time() - tic, 2))
        if has_dev and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
            run.evaluate_and_save()
            run.model.train()
        interrupted = stop_at is not None and stop_at <= state.step < cfg.max_steps
        if (cfg.save_every and state.step % cfg.save_every == 0) or state.step == cfg.max_steps or interrupted:
            save_state(run.acc, run.out, state, cfg)
        if interrupted:
            bar.close()
            return {"output_dir": str(run.out), "steps": state.step, "interrupted": True}
    bar.close()
    if not has_dev and run.main_proc:
        state.best_step = state.step
        run.save_model(None)
    run.acc.wait_for_everyone()
    summary = {
        "output_dir": str(run.out), "checkpoint": str(run.out / "model"), "steps": state.step,
        "best_step": state.best_step, "best_dev_ndcg@10": state.best, "dev_bm25_ndcg@10": run.dev.bm25_ndcg,
        "dev_history": state.history, "data": run.data_info, "trainable_params": run.trainable,
        "precision": run.precision, "processes": run.acc.num_processes,
        "runtime_s": round(time.time() - started, 1), "resumed_from_step": state.resumed_from,
    }
    if run.main_proc:
        run.plot()
        atomic_write_json(run.out / "summary.json", summary)
    return summary
