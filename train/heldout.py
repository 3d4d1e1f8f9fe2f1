"""Measurement of the stage-1 warmup on held-out data: does the model answer, and answer right?

For each model (typically the base model, then the warmed-up checkpoint):

1. **Answer format and accuracy** on held-out ``(query, document, label)`` pairs: positives from
   the qrels of a test split (scifact test queries by default, never seen in training) and BM25
   negatives (``prorank.train.pairs.beir_pairs``). The model greedily generates up to
   ``max_new_tokens`` tokens after the shared prompt; the format is right when the stripped
   answer is exactly ``0`` or ``1`` (``prorank.train.rewards.parse_label``), and the answer is
   correct when it equals the gold label (a malformed answer counts as wrong). The score
   ``logit("1") - logit("0")`` at the answer position is recorded too (ROC AUC over the pairs).
2. **Ranking effect**: nDCG@10 of the BM25 top-``ranking_top_k`` reranked by the model on the
   first ``ranking_queries`` judged queries of the split (``prorank.evaluation.job``, the
   same subset convention as every other ProRank evaluation), next to BM25 itself.

``main(cfg)`` returns the result and writes it to ``cfg.output`` (JSON) when set.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from prorank.config import option, to_dict
from prorank.options import RerankerOptions

__all__ = ["HeldoutConfig", "heldout_pairs", "generate_answers", "roc_auc", "score_std", "answer_metrics", "main"]

RESULT_FORMAT = "prorank-warmup-heldout-v1"


@dataclass
class HeldoutConfig:
    """``prorank train heldout``: which models, on which pairs, with which settings."""

    models: list[str] = option([], "aliases, folders or checkpoints to measure, in report order")
    names: list[str] | None = option(None, "display names, one per model (default: the model strings)")
    dataset: str = option("scifact", "BEIR folder or name of the held-out pairs and the ranking effect")
    data_dir: str | None = option(None, "where dataset names are looked up (default: $PRORANK_DATA_DIR)")
    jsonl: str | None = option(None, "fixed pairs from a JSONL file of {query, document, label} rows (order kept) "
                               "instead of BM25 over the split: a machine without Java measures pairs recorded on "
                               "one with it (the ranking effect still needs the BEIR split)")
    split: str = option("test", "qrels split of the pairs and the ranking effect")
    max_queries: int | None = option(100, "seeded sample of judged queries for the pairs")
    exclude_queries_of: list[str] = option([], "JSONL pair files (e.g. a warmup's OUTPUT_DIR/pairs.jsonl) whose "
                                           "queries (qid) are left out before sampling: pairs of a training split's "
                                           "queries the run did not see")
    max_pairs: int | None = option(200, "cap on the pairs (positives + BM25 negatives)")
    negatives_depth: int = option(100, "BM25 results retrieved per query")
    negatives_window: list[int] = option([0, 100], "BM25 ranks [start, end) the negatives are drawn from")
    negatives_per_positive: int = option(1, "negatives per positive")
    seed: int = option(0, "seed of the query sample and the negatives")
    reranker: RerankerOptions = option(RerankerOptions(max_length=512, batch_size=8), "the models' settings "
                                       "(prorank.options.RerankerOptions); batch_size is also the generation batch")
    max_new_tokens: int = option(4, "greedy tokens generated per pair")
    ranking_queries: int = option(50, "first judged queries whose BM25 top-k each model reranks (nDCG@10); "
                                  "0 skips the ranking effect")
    ranking_top_k: int = option(20, "BM25 candidates reranked per query for the ranking effect")
    num_threads: int | None = option(None, "torch CPU threads (default: torch's)")
    output: str | None = option(None, "JSON file of the result")
    eval_dir: str | None = option(None, "where the ranking runs go (default: next to output, or runs/)")

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: name at least one model to measure")
        if self.names is not None and len(self.names) != len(self.models):
            raise ValueError(f"names: {len(self.names)} names for {len(self.models)} models")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.exclude_queries_of and self.ranking_queries:
            raise ValueError("ranking_queries: the ranking effect runs on the split's first judged queries and "
                             "cannot leave out exclude_queries_of; set ranking_queries: 0")


def roc_auc(scores: Sequence[float], labels: Sequence[str]) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half).

    >>> roc_auc([0.9, 0.1, 0.5, 0.5], ["1", "0", "1", "0"])
    0.875
    """
    pos = [s for s, y in zip(scores, labels) if y == "1"]
    neg = [s for s, y in zip(scores, labels) if y == "0"]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def generate_answers(reranker: Any, pairs: Sequence[Any], max_new_tokens: int, batch_size: int,
                     progress: bool = True) -> tuple[list[str], list[str], list[float]]:
    """Greedy completions and their first tokens (special tokens removed), and first-step scores."""
    import torch
    from tqdm.auto import tqdm

    from prorank.scoring import collate

    model, tok, builder = reranker.model, reranker.tokenizer, reranker.builder
    neg_id, pos_id = builder.answer_token_ids
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else tok.eos_token_id
    texts: list[str] = []
    firsts: list[str] = []
    scores: list[float] = []
    encoded = [e.input_ids for e in builder.encode_many([(p.query, p.document) for p in pairs])]
    for start in tqdm(range(0, len(encoded), batch_size), desc="generate", disable=not progress):
        ids, mask = collate(encoded[start : start + batch_size], pad_id, device=reranker.device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                num_beams=1, pad_token_id=pad_id, eos_token_id=eos, output_logits=True,
                return_dict_in_generate=True, temperature=None, top_p=None, top_k=None,
            )
        first = out.logits[0].float()
        scores += (first[:, pos_id] - first[:, neg_id]).tolist()
        new = out.sequences[:, ids.shape[1]:]
        texts += tok.batch_decode(new, skip_special_tokens=True)
        firsts += tok.batch_decode(new[:, :1], skip_special_tokens=True)
    return texts, firsts, scores


def score_std(scores: Sequence[float]) -> float:
    """Population standard deviation of the scores (logit units): how much the answer depends on
    the pair; 0 for a model that gives every pair the same score.

    >>> score_std([1.0, 3.0])
    1.0
    """
    if not len(scores):
        raise ValueError("score_std: no scores")
    return statistics.pstdev(scores)


def answer_metrics(completions: Sequence[str], scores: Sequence[float], labels: Sequence[str],
                   first_tokens: Sequence[str] | None = None) -> dict[str, Any]:
    """Format rate, accuracy (malformed = wrong), accuracy among well-formed answers, AUC and the
    scores' spread (``score_std``).

    ``format_rate``/``accuracy`` judge the whole greedy completion (exactly one label, then the
    end of the turn). With ``first_tokens``, ``answer_token_format_rate``/``answer_token_accuracy``
    judge only the first generated token, the position the relevance score is read from.
    """
    from prorank.train.rewards import parse_label

    parsed = [parse_label(c) for c in completions]
    n = len(parsed)
    first = [parse_label(t) for t in first_tokens] if first_tokens is not None else None
    formatted = [i for i, p in enumerate(parsed) if p is not None]
    correct = sum(1 for p, y in zip(parsed, labels) if p == y)
    return {
        "pairs": n,
        "format_rate": sum(p is not None for p in parsed) / n if n else 0.0,
        "accuracy": correct / n if n else 0.0,
        "accuracy_when_formatted": (sum(parsed[i] == labels[i] for i in formatted) / len(formatted)) if formatted else None,
        "answered": {"1": parsed.count("1"), "0": parsed.count("0"), "malformed": parsed.count(None)},
        **({} if first is None else {
            "answer_token_format_rate": sum(p is not None for p in first) / n if n else 0.0,
            "answer_token_accuracy": sum(1 for p, y in zip(first, labels) if p == y) / n if n else 0.0,
        }),
        "score_auc": roc_auc(scores, labels),
        "score_std": score_std(scores) if n else None,
        "top_completions": [[text, count] for text, count in Counter(c.strip() for c in completions).most_common(5)],
    }


def _ranking(cfg: HeldoutConfig, reranker: Any, name: str, eval_root: Path) -> dict[str, Any]:
    from rich.console import Console

    from prorank.evaluation.job import EvalConfig
    from prorank.evaluation.job import main as eval_main

    slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[-60:]
    ecfg = EvalConfig(datasets=[cfg.dataset], model=name, top_k=cfg.ranking_top_k, depth=max(100, cfg.ranking_top_k),
                      split=cfg.split, max_queries=cfg.ranking_queries, output=str(eval_root / slug),
                      data_dir=cfg.data_dir, reranker=cfg.reranker)
    summary = eval_main(ecfg, reranker=reranker, console=Console(stderr=True))
    (data,) = summary["datasets"].values()
    return {"queries": data["queries"], "top_k": cfg.ranking_top_k, "bm25": data["metrics"]["bm25"],
            "reranker": data["metrics"]["reranker"], "pairs_per_second": data["rerank"]["pairs_per_second"],
            "run_dir": summary["output"]}


def heldout_pairs(cfg: HeldoutConfig) -> list[Any]:
    """The held-out pairs: ``cfg.jsonl``'s rows, or positives + BM25 negatives of the split, less
    the queries of ``exclude_queries_of``; at most ``max_pairs``, in order (``prorank.train.pairs.Pair``)."""
    from prorank.train.pairs import beir_pairs, bm25_searcher, load_beir, read_jsonl_pairs

    excluded: set[str] = set()
    for path in cfg.exclude_queries_of:
        qids = {p.qid for p in read_jsonl_pairs(path)}
        if "" in qids:
            raise ValueError(f"exclude_queries_of: {path} has rows without a qid (queries are left out by qid)")
        excluded |= qids
    if cfg.jsonl is not None:
        pairs = [p for p in read_jsonl_pairs(cfg.jsonl) if p.qid not in excluded]
    else:
        data = load_beir(cfg.dataset, cfg.split, cfg.data_dir)
        pairs = beir_pairs(data, bm25_searcher(Path(data.path).resolve()), depth=cfg.negatives_depth,
                           window=cfg.negatives_window, negatives_per_positive=cfg.negatives_per_positive,
                           max_queries=cfg.max_queries, seed=cfg.seed, exclude_qids=excluded)
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs is not None else pairs
    if not pairs:
        raise ValueError(f"no held-out pairs from {cfg.jsonl or f'{cfg.dataset}/{cfg.split}'}")
    return pairs


def main(cfg: HeldoutConfig) -> dict[str, Any]:
    import torch

    from prorank.atomic import atomic_write_json
    from prorank.evaluation import provenance
    from prorank.reranker import Reranker
    from prorank.evaluation.provenance import portable_path
    from prorank.train.pairs import label_counts

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    started, began = provenance.now_utc(), time.time()
    pairs = heldout_pairs(cfg)
    labels = [p.label for p in pairs]
    eval_root = Path(cfg.eval_dir) if cfg.eval_dir else (
        Path(cfg.output).with_suffix("") if cfg.output else Path("runs") / "warmup-heldout")
    names = cfg.names or list(cfg.models)
    results = []
    for model, name in zip(cfg.models, names):
        t0 = time.time()
        reranker = Reranker.from_options(model, cfg.reranker)
        completions, firsts, scores = generate_answers(reranker, pairs, cfg.max_new_tokens, reranker.batch_size)
        entry: dict[str, Any] = {
            "name": name, "model": str(model), "fingerprint": reranker.fingerprint,
            "stage": (reranker.metadata or {}).get("stage", "base"),
            **answer_metrics(completions, scores, labels, firsts),
            "generation_seconds": round(time.time() - t0, 1),
        }
        if cfg.ranking_queries:
            entry["ranking"] = _ranking(cfg, reranker, name, eval_root)
        entry["seconds"] = round(time.time() - t0, 1)
        results.append(entry)
        del reranker
    source = ({"jsonl": portable_path(cfg.jsonl)} if cfg.jsonl is not None else
              {"dataset": Path(cfg.dataset).name, "split": cfg.split,
               "negatives": {"retriever": "bm25", "depth": cfg.negatives_depth,
                             "window": list(cfg.negatives_window), "per_positive": cfg.negatives_per_positive}})
    result = {
        "format": RESULT_FORMAT,
        "config": to_dict(cfg),
        "pairs": {**source, "count": len(pairs), "labels": label_counts(pairs),
                  "queries": len({p.qid for p in pairs}),
                  "generation": {"greedy": True, "max_new_tokens": cfg.max_new_tokens,
                                 "format_ok": "stripped completion is exactly '0' or '1'"}},
        "models": results,
        "provenance": {"git": provenance.git_state(), "versions": provenance.versions(),
                       "hardware": provenance.hardware(cfg.reranker.device), "started": started,
                       "finished": provenance.now_utc(), "seconds": round(time.time() - began, 1)},
    }
    if cfg.output:
        atomic_write_json(cfg.output, result)
    return result
