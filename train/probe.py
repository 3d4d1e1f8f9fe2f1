"""A cheap held-out probe during the stage-1 warmup: does the policy still separate the labels?

Every ``every`` optimizer steps (and before the first), the model being trained scores a fixed set
of held-out ``(query, document, label)`` pairs with the reranker's score ``logit("1") -
logit("0")`` at the answer position (one forward pass per pair, no generation) and the next logged
step gets:

* ``probe_auc``: ROC AUC of the scores against the labels (0.5 = chance);
* ``probe_label_one``: share of pairs whose greedy answer would be ``1`` (score > 0): a policy
  that collapsed onto one label shows 0 or 1 here, whatever its AUC;
* ``probe_accuracy``: share whose greedy label is the gold one;
* ``probe_score_std``: the scores' standard deviation across the pairs (logit units): how much
  the answer depends on the pair at all. A policy that learnt one answer for every prompt shows
  a small spread whatever its label shares (zero-shot SmolLM2: ~0.6 on the held-out pairs).

The pairs come from a split the warmup does not train on (``ProbeConfig.split``), positives from
the qrels and as many BM25 negatives (``prorank.train.pairs.beir_pairs``); pick a dev split, never
the test split results are reported on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from prorank.config import check_positive

__all__ = ["ProbeConfig", "probe_pairs", "probe_metrics", "probe_callback"]


@dataclass
class ProbeConfig:
    """The warmup's ``probe`` block."""

    dataset: str = "nfcorpus"  # BEIR folder or name ($PRORANK_DATA_DIR)
    # or fixed pairs from a JSONL file of {"query", "document", "label"} rows (e.g. written on a
    # machine with Java for one without; prorank.train.pairs.read_jsonl_pairs), instead of BM25
    jsonl: str | None = None
    split: str = "dev"  # a split the warmup does not train on
    max_queries: int = 32  # seeded sample of judged queries
    max_pairs: int = 64  # positives + BM25 negatives, balanced 1:1
    negatives_window: list[int] = field(default_factory=lambda: [0, 20])  # BM25 ranks [start, end)
    every: int = 5  # optimizer steps between probes
    batch_size: int = 8  # pairs per forward pass

    def __post_init__(self) -> None:
        for name in ("max_queries", "max_pairs", "every", "batch_size"):
            check_positive(name, getattr(self, name), where="probe.")
        if len(self.negatives_window) != 2:
            raise ValueError(f"probe.negatives_window must be [start, end], got {self.negatives_window}")


def probe_pairs(cfg: ProbeConfig, data_dir: str | None, seed: int) -> list[Any]:
    """The fixed probe pairs (``prorank.train.pairs.Pair``), at most ``max_pairs``, both labels."""
    from prorank.train.pairs import balanced_order, beir_pairs, bm25_searcher, load_beir, read_jsonl_pairs

    if cfg.jsonl is not None:
        pairs = read_jsonl_pairs(cfg.jsonl)
    else:
        data = load_beir(cfg.dataset, cfg.split, data_dir)
        pairs = beir_pairs(data, bm25_searcher(data.path), depth=cfg.negatives_window[1],
                           window=cfg.negatives_window, max_queries=cfg.max_queries,
                           max_positives_per_query=1, seed=seed, progress=False)
    pairs = balanced_order(pairs, seed)[: cfg.max_pairs]
    if len({p.label for p in pairs}) < 2:
        where = cfg.jsonl or f"{cfg.dataset}/{cfg.split}"
        raise ValueError(f"probe: {where} gave pairs of one label only; raise max_pairs")
    return pairs


def probe_metrics(scores: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    """``probe_auc``, ``probe_label_one``, ``probe_accuracy`` and ``probe_score_std`` of scores
    against "0"/"1" labels.

    >>> probe_metrics([2.0, -1.0, 0.5, -3.0], ["1", "0", "0", "0"])
    {'probe_auc': 1.0, 'probe_label_one': 0.5, 'probe_accuracy': 0.75, 'probe_score_std': 1.8498}
    """
    from prorank.train.heldout import roc_auc, score_std

    said = ["1" if s > 0 else "0" for s in scores]
    auc = roc_auc(scores, labels)
    return {"probe_auc": float("nan") if auc is None else round(auc, 4),
            "probe_label_one": round(said.count("1") / len(said), 4),
            "probe_accuracy": round(sum(a == b for a, b in zip(said, labels)) / len(said), 4),
            "probe_score_std": round(score_std(scores), 4)}


def probe_callback(cfg: ProbeConfig, pairs: Sequence[Any], builder: Any, instruction: str | None = None) -> Any:
    """A ``transformers.TrainerCallback`` running the probe; insert it before the log writer so its
    values reach the log of the step they were measured at."""
    import torch
    from transformers import TrainerCallback

    from prorank.scoring import collate, relevance_scores

    prompts = [e.input_ids for e in builder.encode_many([(p.query, p.document) for p in pairs], instruction)]
    labels = [p.label for p in pairs]
    pad_id = builder.tokenizer.pad_token_id

    def measure(model: Any) -> dict[str, float]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(prompts), cfg.batch_size):
                ids, mask = collate(prompts[start : start + cfg.batch_size], pad_id, device)
                scores += relevance_scores(model, ids, mask, builder.answer_token_ids).tolist()
        model.train(was_training)
        return probe_metrics(scores, labels)

    class Probe(TrainerCallback):
        def __init__(self) -> None:
            self.pending: dict[str, float] | None = None
            self.history: list[dict[str, float]] = []

        def _run(self, state: Any, model: Any) -> None:
            if state.is_world_process_zero and model is not None:
                self.pending = measure(model)
                self.history.append({"step": state.global_step, **self.pending})

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._run(state, model)  # the starting point, logged with the first step

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % cfg.every == 0:
                self._run(state, model)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is not None and "loss" in logs and self.pending is not None:
                logs.update(self.pending)
                self.pending = None

    return Probe()
