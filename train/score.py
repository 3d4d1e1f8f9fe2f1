"""Stage 2: fine-grained score learning (no new layers).

The model keeps the shared ProRank prompt; its score is ``logit("1") - logit("0")`` at the
answer position, computed by :func:`prorank.scoring.relevance_scores` -- the very function the
``Reranker`` uses at inference -- on prompts from ``PromptBuilder.encode``. Stage 2 fine-tunes
the model (fully, its top layers, or with LoRA) so that this score orders documents: each
training group ``[positive, hard negatives...]`` (:mod:`prorank.train.groups`) gives one row of
a ``[groups, docs]`` score tensor and a loss from :mod:`prorank.train.losses` is minimised.

``main(cfg)`` runs on CPU (fp32), one GPU (bf16 autocast) or several under
``accelerate launch`` (DDP through ``accelerate.Accelerator``), without code changes.

Output folder layout (``output_dir``)::

    model/        best checkpoint on the dev subset (the last one without a dev set)
                  -> Reranker.from_pretrained(output_dir/"model")
    state/        resume state (model, optimizer, scheduler, RNG, step), replaced atomically
    groups.jsonl  the training groups (reused on resume)
    dev.json      the dev queries and their BM25 candidates
    log.jsonl     one record per step (loss, learning_rate, ...) and per evaluation (dev_ndcg@10)
    curves.png    plot of loss and dev nDCG@10
    summary.json  what was trained, best step and dev nDCG@10 history
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prorank.config import to_dict
from prorank.evaluation.provenance import portable_path

__all__ = ["ScoreConfig", "LOG_KEYS", "main"]

LOG_KEYS = ("loss", "dev_ndcg@10", "learning_rate", "grad_norm")
STATE_DIR = "state"
TRAINER_FILE = "trainer.json"
# config fields that must not change when a run is resumed
RESUME_KEYS = ("model", "dataset", "split", "jsonl", "loss", "negatives", "groups_per_batch",
               "gradient_accumulation_steps", "lora", "train_layers", "seed", "max_length")


@dataclass
class ScoreConfig:
    """Stage-2 settings; YAML keys equal these field names (see ``configs/score*.yaml``)."""

    model: str = "smollm2-135m-instruct"  # base model, or a stage-1 checkpoint (runs/warmup/model)
    output_dir: str = "runs/score"
    # --- data: a BEIR folder with a train split, or plain JSONL groups (prorank.train.groups)
    dataset: str | None = "scifact"
    data_dir: str | None = None
    split: str = "train"
    jsonl: str | None = None  # when set, training groups come from this file instead
    max_queries: int | None = None  # seeded sample of the judged training queries
    max_groups: int | None = None  # cap after shuffling (either source)
    negatives: int = 3  # hard negatives per group (the group is 1 + negatives documents)
    negatives_pool: int = 8  # BM25 negatives mined per query; each group samples `negatives`
    negatives_depth: int = 100
    negatives_window: list[int] = field(default_factory=lambda: [0, 100])  # ranks [start, end)
    exclude_judged: bool = False
    instruction: str | None = None
    max_length: int = 512
    # --- loss (prorank.train.losses.LOSSES)
    loss: Literal["listwise", "bce", "ranknet", "kl", "margin_mse"] = "listwise"
    temperature: float = 1.0
    # --- optimisation
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = 0.1
    max_steps: int = 100  # optimizer steps
    groups_per_batch: int = 2  # per device and micro-batch
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    train_layers: int | None = None  # train only the top N decoder layers (+ final norm); None = all
    lora: dict | None = None  # peft.LoraConfig kwargs; None = no LoRA (merged into the output)
    gradient_checkpointing: bool = False
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, no on CPU
    cpu: bool = False  # force CPU even when a GPU is visible
    num_threads: int | None = None  # torch CPU threads
    # --- periodic evaluation: nDCG@10 of reranked BM25 top-k on a dev subset
    dev_dataset: str | None = None  # default: `dataset`
    dev_split: str | None = None  # None: hold out `dev_queries` queries of `split` (not trained on)
    dev_queries: int = 20  # 0 disables evaluation (the last step is kept)
    dev_top_k: int = 20
    eval_every: int = 50
    eval_at_start: bool = True
    eval_batch_size: int = 16
    # --- checkpoints and logs
    save_every: int = 50  # resume state every N steps (and at the end)
    resume: bool = True  # continue from output_dir/state when present
    log_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        from prorank.train.losses import LOSSES

        if self.jsonl is None and not self.dataset:
            raise ValueError("set either dataset (a BEIR folder/name) or jsonl (a groups file)")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        for name in ("max_steps", "groups_per_batch", "gradient_accumulation_steps", "negatives",
                     "dev_top_k", "eval_every", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dev_queries < 0 or self.save_every < 0:
            raise ValueError("dev_queries and save_every must be >= 0")
        if len(self.negatives_window) != 2:
            raise ValueError(f"negatives_window must be [start, end], got {self.negatives_window}")
        if self.train_layers is not None and self.train_layers < 1:
            raise ValueError(f"train_layers must be >= 1 or null, got {self.train_layers}")
        if self.train_layers is not None and self.lora is not None:
            raise ValueError("train_layers and lora exclude each other; set one of them")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


# ------------------------------------------------------------------------------------ data
def _build_data(cfg: ScoreConfig, out: Path, progress: bool) -> dict[str, Any]:
    """Build training groups and the dev set; write ``groups.jsonl`` and ``dev.json``."""
    import dataclasses
    import random

    from prorank.data import load_dataset
    from prorank.train import groups as G

    info: dict[str, Any] = {}
    train_set = None
    dev_qids: list[str] = []
    if cfg.dataset is not None:
        train_set = load_dataset(cfg.dataset, split=cfg.split, data_dir=cfg.data_dir, download=False)
        judged = [q for q in train_set.qrels if q in train_set.queries]
        if cfg.dev_queries and cfg.dev_split is None and cfg.jsonl is None:
            judged, dev_qids = G.split_queries(judged, cfg.dev_queries, cfg.seed)
        info["dataset"] = {"name": train_set.name, "path": portable_path(train_set.path), "split": cfg.split}
    if cfg.jsonl is not None:
        groups = G.read_jsonl_groups(cfg.jsonl)
        info["jsonl"] = str(cfg.jsonl)
    else:
        assert train_set is not None
        rng = random.Random(f"prorank-score-queries:{cfg.seed}")
        if cfg.max_queries is not None:
            judged = sorted(rng.sample(sorted(judged), min(cfg.max_queries, len(judged))))
        searcher = _searcher(train_set)
        groups = G.beir_groups(
            train_set.corpus, {q: train_set.queries[q] for q in judged}, train_set.qrels, searcher,
            n_negatives=cfg.negatives, pool=cfg.negatives_pool, depth=cfg.negatives_depth,
            window=cfg.negatives_window, exclude_judged=cfg.exclude_judged, seed=cfg.seed,
            progress=progress,
        )
        info["train_queries"] = len(judged)
        if cfg.instruction:
            groups = [dataclasses.replace(g, instruction=cfg.instruction) for g in groups]
    random.Random(f"prorank-score-groups:{cfg.seed}").shuffle(groups)
    if cfg.max_groups is not None:
        groups = groups[: cfg.max_groups]
    if not groups:
        raise ValueError("no training groups: the data holds no query with a positive and a negative")
    G.write_jsonl_groups(groups, out / "groups.jsonl")
    info["groups"] = len(groups)
    info["docs_per_group"] = max(len(g.docs) for g in groups)
    info["negatives"] = {"depth": cfg.negatives_depth, "window": list(cfg.negatives_window),
                         "pool": cfg.negatives_pool, "per_group": cfg.negatives}
    dev = _build_dev(cfg, train_set, dev_qids)
    from prorank.atomic import atomic_write_json

    atomic_write_json(out / "dev.json", dev)
    info["dev"] = {k: dev[k] for k in ("dataset", "split", "queries", "top_k", "bm25_ndcg@10") if k in dev}
    atomic_write_json(out / "data.json", info)
    return info


def _searcher(dataset: Any) -> Any:
    from prorank.retrieval import BM25Searcher, ensure_index

    return BM25Searcher(ensure_index(dataset))


def _build_dev(cfg: ScoreConfig, train_set: Any, held_out: list[str]) -> dict[str, Any]:
    """Dev queries with their BM25 top-``dev_top_k`` candidates (empty when disabled)."""
    from prorank.data import load_dataset
    from prorank.train.groups import split_queries

    if cfg.dev_queries == 0:
        return {"queries": 0, "qids": []}
    if cfg.dev_split is None and cfg.dev_dataset is None and held_out:
        data, qids, split = train_set, held_out, cfg.split
    else:
        name = cfg.dev_dataset or cfg.dataset
        if name is None:
            return {"queries": 0, "qids": []}
        split = cfg.dev_split or cfg.split
        data = load_dataset(name, split=split, data_dir=cfg.data_dir, download=False)
        judged = [q for q in data.qrels if q in data.queries]
        qids = judged if len(judged) <= cfg.dev_queries else split_queries(judged, cfg.dev_queries, cfg.seed)[1]
    from prorank.evaluation.metrics import evaluate, mean_metrics

    searcher = _searcher(data)
    hits = searcher.batch_search({q: data.queries[q] for q in qids}, k=cfg.dev_top_k)
    bm25 = evaluate(data.qrels, {q: {h.docid: h.score for h in hits[q]} for q in qids}, qids)
    return {
        "dataset": data.name, "path": portable_path(data.path), "split": split, "queries": len(qids),
        "top_k": cfg.dev_top_k, "bm25_ndcg@10": mean_metrics(bm25)["nDCG@10"], "qids": sorted(qids),
        "candidates": {q: [h.docid for h in hits[q]] for q in sorted(qids)},
        "query_text": {q: data.queries[q] for q in qids},
        "qrels": {q: data.qrels[q] for q in qids},
        "docs": {d: data.corpus[d] for q in qids for d in (h.docid for h in hits[q])},
    }


# ------------------------------------------------------------------------------- model
def _load_model(cfg: ScoreConfig) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    from prorank.loading import load_model

    loaded = load_model(cfg.model, dtype=torch.float32)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.config.use_cache = False
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear",
                "task_type": "CAUSAL_LM", **cfg.lora}
        try:
            model = get_peft_model(model, LoraConfig(**lora))
        except TypeError as err:
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


def _to_save(model: Any, lora: bool) -> Any:
    """The plain causal LM to write: LoRA merged into a copy, else the model itself."""
    if not lora:
        return model
    import copy

    return copy.deepcopy(model).merge_and_unload()


# --------------------------------------------------------------------------- evaluation
def evaluate_dev(model: Any, tokenizer: Any, dev: dict[str, Any], cfg: ScoreConfig) -> float:
    """Mean nDCG@10 of the dev queries' BM25 top-k reranked by ``model`` (inference code path)."""
    from prorank.evaluation.metrics import evaluate, mean_metrics
    from prorank.evaluation.rerank import rerank_run
    from prorank.reranker import Reranker
    from prorank.retrieval.bm25 import Hit

    was_training = model.training
    reranker = Reranker(model, tokenizer, max_length=cfg.max_length, batch_size=cfg.eval_batch_size)
    candidates = {q: [Hit(d, 0.0) for d in dev["candidates"][q]] for q in dev["qids"]}
    run, _ = rerank_run(reranker, dev["query_text"], candidates, dev["docs"], cfg.dev_top_k,
                        instruction=cfg.instruction)
    per_query = evaluate(dev["qrels"], {q: dict(v) for q, v in run.items()}, dev["qids"])
    model.train(was_training)
    return float(mean_metrics(per_query)["nDCG@10"])


# ------------------------------------------------------------------------------- state
def _save_state(accelerator: Any, out: Path, trainer: dict[str, Any]) -> None:
    """Replace ``out/state`` atomically (a crash leaves the previous state or ``state.old``)."""
    from prorank.atomic import atomic_write_json

    tmp, final, old = out / f"{STATE_DIR}.tmp", out / STATE_DIR, out / f"{STATE_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)
    if accelerator.is_main_process:
        atomic_write_json(tmp / TRAINER_FILE, trainer)
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _state_dir(out: Path) -> Path | None:
    for name in (STATE_DIR, f"{STATE_DIR}.old"):  # .old only exists after a crash mid-swap
        if (out / name / TRAINER_FILE).is_file():
            return out / name
    return None


def _check_resumable(saved: dict[str, Any], cfg: ScoreConfig) -> None:
    now = to_dict(cfg)
    changed = [k for k in RESUME_KEYS if saved.get("config", {}).get(k) != now.get(k)]
    if changed:
        raise ValueError(
            f"cannot resume {cfg.output_dir}: {changed} changed since the saved state; "
            "use another output_dir or set resume: false"
        )


def _schedule(cfg: ScoreConfig, optimizer: Any, num_processes: int) -> Any:
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(cfg.lr_scheduler, cfg.lr_scheduler)
    # accelerate steps a prepared scheduler once per process per optimizer step
    total = cfg.max_steps * num_processes
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total),
                         num_training_steps=total)


def _batch(groups: list, micro: int, cfg: ScoreConfig, rank: int, world: int) -> list:
    """Groups of micro-batch ``micro`` for process ``rank``: a seeded permutation per epoch."""
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


def _plot(out: Path, cfg: ScoreConfig) -> None:
    from prorank.train.trainlog import plot_curves

    plot_curves(out / "log.jsonl", out / "curves.png", LOG_KEYS, title=f"stage 2 ({cfg.loss})", smooth=10)


# -------------------------------------------------------------------------------- main
def main(cfg: ScoreConfig, *, stop_at: int | None = None) -> dict[str, Any]:
    """Train (or resume), keep the best dev checkpoint in ``output_dir/model``; return a summary.

    ``stop_at`` ends this call after that optimizer step as an interruption would (the resume
    state is saved there, nothing else is finalised); calling ``main`` again continues the run.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from prorank.atomic import atomic_write_json
    from prorank.checkpoint import save_checkpoint
    from prorank.scoring import collate, relevance_scores
    from prorank.train.groups import encode_groups, read_jsonl_groups, scatter_scores
    from prorank.train.losses import compute_loss, loss_needs_teacher
    from prorank.train.trainlog import TrainLog, read_log

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    started = time.time()
    out = Path(cfg.output_dir)
    use_cpu = cfg.cpu or not torch.cuda.is_available()
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if not use_cpu and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=precision,
                              gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    main_proc = accelerator.is_main_process
    state_dir = _state_dir(out) if cfg.resume else None
    saved: dict[str, Any] = {}
    if state_dir is not None:
        saved = json.loads((state_dir / TRAINER_FILE).read_text(encoding="utf-8"))
        _check_resumable(saved, cfg)

    # data: built once by the main process, read by all (and reused on resume)
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        if state_dir is None or not (out / "groups.jsonl").is_file():
            _build_data(cfg, out, progress=True)
    accelerator.wait_for_everyone()
    groups = read_jsonl_groups(out / "groups.jsonl")
    dev = json.loads((out / "dev.json").read_text(encoding="utf-8"))
    data_info = json.loads((out / "data.json").read_text(encoding="utf-8"))
    if loss_needs_teacher(cfg.loss) and any(g.teacher is None for g in groups):
        raise ValueError(f"loss {cfg.loss!r} needs teacher scores ('scores' in every jsonl group)")

    set_seed(cfg.seed)
    model, tokenizer, parent_meta = _load_model(cfg)
    from prorank.prompt import PromptBuilder

    builder = PromptBuilder(tokenizer, cfg.max_length)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = _schedule(cfg, optimizer, accelerator.num_processes)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step, best, best_step, history = 0, -math.inf, None, []
    if state_dir is not None:
        accelerator.load_state(str(state_dir))
        step, best_step = saved["step"], saved.get("best_step")
        best = saved["best"] if saved.get("best") is not None else -math.inf
        history = saved.get("history", [])
        from prorank.checkpoint import read_metadata

        written = ((read_metadata(out / "model") or {}).get("train") or {})
        if written.get("dev_ndcg@10") is not None and written["dev_ndcg@10"] > best:
            best, best_step = written["dev_ndcg@10"], written.get("step")  # saved after the state
    log = TrainLog(out / "log.jsonl")
    if main_proc and (out / "log.jsonl").exists():  # drop records logged after the saved state
        from prorank.atomic import atomic_write_text

        kept = [r for r in read_log(out / "log.jsonl") if r.get("step", 0) <= step] if step else []
        atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    base_meta = parent_meta or {}
    metadata = {
        "stage": "score",
        "base_model": base_meta.get("base_model", cfg.model),
        "parent": cfg.model if base_meta else None,
        "parent_stage": base_meta.get("stage"),
        "loss": cfg.loss,
        "data": data_info,
        "config": to_dict(cfg),
    }
    trainable = sum(p.numel() for p in params)

    def save_best(value: float | None) -> None:
        if main_proc:
            plain = _to_save(accelerator.unwrap_model(model), cfg.lora is not None)
            meta = {**metadata, "train": {"step": step, "dev_ndcg@10": value, "trainable_params": trainable}}
            save_checkpoint(plain, tokenizer, out / "model", meta)

    def run_eval() -> float | None:
        nonlocal best, best_step
        value = None
        if main_proc and dev.get("qids"):
            with accelerator.autocast():
                value = evaluate_dev(accelerator.unwrap_model(model), tokenizer, dev, cfg)
            log.log(step, **{"dev_ndcg@10": value})
            history.append({"step": step, "dev_ndcg@10": value})
            if value > best:
                best, best_step = value, step
                save_best(value)
            _plot(out, cfg)
        accelerator.wait_for_everyone()
        return value

    has_dev = bool(dev.get("qids"))
    if step == 0 and has_dev and main_proc and dev.get("bm25_ndcg@10") is not None:
        log.log(0, **{"dev_bm25_ndcg@10": dev["bm25_ndcg@10"]})  # the first stage, for reference
    if step == 0 and has_dev and cfg.eval_at_start:
        run_eval()
    model.train()
    micro = step * cfg.gradient_accumulation_steps
    pad_id = tokenizer.pad_token_id
    losses: list[float] = []
    tic = time.time()
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=step, desc="score", disable=not main_proc)
    while step < cfg.max_steps:
        with accelerator.accumulate(model):
            batch = encode_groups(_batch(groups, micro, cfg, accelerator.process_index,
                                         accelerator.num_processes), builder)
            ids, mask = collate(batch.prompts, pad_id, accelerator.device)
            with accelerator.autocast():
                flat = relevance_scores(model, ids, mask, builder.answer_token_ids)
            scores = scatter_scores(flat.float(), batch.mask)
            dev_ = scores.device
            teacher = batch.teacher.to(dev_) if batch.teacher is not None else None
            loss = compute_loss(cfg.loss, scores, batch.labels.to(dev_), batch.mask.to(dev_),
                                teacher, cfg.temperature)
            accelerator.backward(loss)
            grad_norm = None
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        micro += 1
        losses.append(float(accelerator.gather(loss.detach()).mean()))
        if not accelerator.sync_gradients:
            continue
        step += 1
        bar.update(1)
        if main_proc and (step % cfg.log_every == 0 or step == cfg.max_steps):
            seconds = time.time() - tic
            log.log(step, loss=sum(losses) / len(losses), learning_rate=scheduler.get_last_lr()[0],
                    grad_norm=None if grad_norm is None else float(grad_norm),
                    groups_seen=micro * cfg.groups_per_batch * accelerator.num_processes,
                    seconds=round(seconds, 2))
            bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}")
        losses = []
        if has_dev and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            run_eval()
            model.train()
        interrupted = stop_at is not None and step >= stop_at and step < cfg.max_steps
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps or interrupted:
            _save_state(accelerator, out, {
                "step": step, "best": None if best == -math.inf else best, "best_step": best_step,
                "history": history, "config": to_dict(cfg), "time": time.time(),
            })
        if interrupted:
            bar.close()
            return {"output_dir": str(out), "steps": step, "interrupted": True}
    bar.close()
    if not has_dev and main_proc:
        best_step = step
        save_best(None)
    accelerator.wait_for_everyone()
    summary = {
        "output_dir": str(out), "checkpoint": str(out / "model"), "steps": step,
        "best_step": best_step, "best_dev_ndcg@10": None if best == -math.inf else best,
        "dev_bm25_ndcg@10": dev.get("bm25_ndcg@10"),
        "dev_history": history, "data": data_info, "trainable_params": trainable,
        "precision": precision, "processes": accelerator.num_processes,
        "runtime_s": round(time.time() - started, 1), "resumed_from_step": saved.get("step"),
    }
    if main_proc:
        _plot(out, cfg)
        atomic_write_json(out / "summary.json", summary)
    return summary
