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

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from prorank.config import check_positive, option

__all__ = ["ProbeConfig", "probe_pairs", "probe_metrics", "probe_scorer"]


@dataclass
class ProbeConfig:
    """The warmup's ``probe`` block."""

    dataset: str = option("nfcorpus", "BEIR folder or name ($PRORANK_DATA_DIR)")
    jsonl: str | None = option(None, "fixed pairs from a JSONL file of {query, document, label} rows instead of "
                               "BM25 (e.g. written on a machine with Java for one without)")
    split: str = option("dev", "a split the warmup does not train on")
    max_queries: int = option(32, "seeded sample of judged queries")
    max_pairs: int = option(64, "positives + BM25 negatives, balanced 1:1")
    negatives_window: list[int] = option([0, 20], "BM25 ranks [start, end) the negatives come from")
    every: int = option(5, "optimizer steps between probes")
    batch_size: int = option(8, "pairs per forward pass")

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


def probe_scorer(cfg: ProbeConfig, pairs: Sequence[Any], builder: Any,
                 instruction: str | None = None) -> Callable[[Any], dict[str, float]]:
    """``measure(model)``: ``probe_metrics`` of the model's scores on ``pairs`` (no gradient; the
    model's train/eval mode is restored). The trainer runs it every ``cfg.every`` steps
    (``prorank.train.grpo_trainer.ProbeCallback``)."""
    import torch

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

    return measure
