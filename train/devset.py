"""The stage-2 dev set: held-out queries with their BM25 candidates, scored as at inference.

:func:`build_devset` takes the dev sources of ``prorank.train.sources`` (queries never trained on)
and keeps, per collection, each query's BM25 top-``top_k`` with scores, its judgments and the
candidate documents; it is written to ``dev.json`` (:meth:`DevSet.save`) and read back on resume.
:func:`evaluate` reranks the candidates with the model through the ``Reranker`` (the inference
code path) and returns nDCG@10 per collection and over all dev queries, plus the fusion weight
with BM25 that is best on these queries (``prorank.fusion.tune_weight``) -- the weight a
checkpoint carries into evaluation and serving.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from prorank.atomic import atomic_write_json
from prorank.evaluation.judged_pairs import DEFAULT_TOP_K


@dataclass
class DevCollection:
    name: str
    path: str  # portable path
    split: str
    qids: list[str]
    query_text: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, list[tuple[str, float]]]  # qid -> [(docid, BM25 score)] best first
    docs: dict[str, Any]
    bm25_ndcg: float = 0.0


@dataclass
class DevSet:
    top_k: int = 10
    collections: list[DevCollection] = field(default_factory=list)

    @property
    def queries(self) -> int:
        return sum(len(c.qids) for c in self.collections)

    @property
    def bm25_ndcg(self) -> float | None:
        n = self.queries
        return sum(c.bm25_ndcg * len(c.qids) for c in self.collections) / n if n else None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> "DevSet":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        cols = [DevCollection(**{**c, "candidates": {q: [tuple(x) for x in v] for q, v in c["candidates"].items()}})
                for c in raw.get("collections", [])]
        return cls(top_k=raw.get("top_k", 10), collections=cols)

    def describe(self) -> dict[str, Any]:
        return {"queries": self.queries, "top_k": self.top_k, "bm25_ndcg@10": self.bm25_ndcg,
                "collections": [{"dataset": c.name, "path": c.path, "split": c.split, "queries": len(c.qids),
                                 "bm25_ndcg@10": c.bm25_ndcg} for c in self.collections]}


def build_devset(sources: Sequence[Any], top_k: int) -> DevSet:
    """BM25 top-``top_k`` of every dev source's queries (``LoadedSource`` objects)."""
    from prorank.evaluation.metrics import evaluate, mean_metrics
    from prorank.evaluation.provenance import portable_path
    from prorank.train.score_data import bm25_run

    out = DevSet(top_k=top_k)
    for source in sources:
        data, qids = source.data, list(source.qids)
        run = bm25_run(source, top_k, qids)
        bm25 = mean_metrics(evaluate(data.qrels, {q: {h.docid: h.score for h in run[q]} for q in qids}, qids))
        out.collections.append(DevCollection(
            name=data.name, path=portable_path(data.path), split=source.spec.split, qids=qids,
            query_text={q: data.queries[q] for q in qids}, qrels={q: data.qrels[q] for q in qids},
            candidates={q: [(h.docid, h.score) for h in run[q]] for q in qids},
            docs={h.docid: data.corpus[h.docid] for q in qids for h in run[q]}, bm25_ndcg=bm25["nDCG@10"]))
    return out


@dataclass
class DevResult:
    ndcg: float  # model alone, over all dev queries
    per_collection: dict[str, float]
    fusion_weight: float  # best interpolation weight of BM25 on these queries
    fused_ndcg: float
    fusion_table: dict[float, float]
    pairs: Any = None  # prorank.evaluation.judged_pairs.JudgedPairs: every candidate's raw score and judgments

    def log_record(self) -> dict[str, float]:
        rec = {"dev_ndcg@10": self.ndcg, "dev_fused_ndcg@10": self.fused_ndcg, "dev_fusion_weight": self.fusion_weight}
        rec.update({f"dev_ndcg@10/{name}": v for name, v in self.per_collection.items()})
        return rec


def score_lists(reranker: Any, dev: DevSet, instruction: str | None = None
                ) -> tuple[dict[str, tuple[list[str], list[float], list[float]]], dict[str, dict[str, int]]]:
    """Every dev query's candidates scored by ``reranker``: ``"collection/qid" -> (docids, model
    scores, BM25 scores)`` in BM25 order, and the judgments under the same keys
    (the input of ``prorank.fusion.tune_weight``)."""
    from tqdm.auto import tqdm

    lists: dict[str, tuple[list[str], list[float], list[float]]] = {}
    qrels: dict[str, dict[str, int]] = {}
    with tqdm(total=sum(len(col.qids) for col in dev.collections), desc="dev", unit="query", leave=False) as bar:
        for col in dev.collections:
            for qid in col.qids:
                ids = [d for d, _ in col.candidates[qid]]
                scores = reranker.score(col.query_text[qid], [col.docs[d] for d in ids], instruction=instruction)
                key = f"{col.name}/{qid}"
                lists[key] = (ids, [float(x) for x in scores], [s for _, s in col.candidates[qid]])
                qrels[key] = col.qrels[qid]
                bar.update(1)
    return lists, qrels


def judged_pairs(reranker: Any, dev: DevSet, instruction: str | None = None, cache: Any = None) -> Any:
    """The dev candidates scored raw, as ``prorank.evaluation.judged_pairs.JudgedPairs`` (what a
    calibration is fitted on); through the score ``cache`` (``prorank.evaluation.cache``) when given."""
    from prorank.evaluation.judged_pairs import JudgedPairs, score_devset

    if cache is not None:
        return score_devset(reranker, dev, cache, instruction)
    lists, qrels = score_lists(reranker, dev, instruction)
    collections = [{"dataset": c.name, "split": c.split, "path": c.path, "queries": len(c.qids)}
                   for c in dev.collections]
    return JudgedPairs(lists, qrels, collections, dev.top_k, scored=sum(len(v[0]) for v in lists.values()))


def evaluate(reranker: Any, dev: DevSet, instruction: str | None = None, cache: Any = None) -> DevResult:
    """Rerank every dev query's candidates with ``reranker`` (raw scores; through the score
    ``cache`` when given); model and fused nDCG@10, and the scored pairs."""
    from prorank.evaluation.metrics import evaluate as metrics_of
    from prorank.fusion import tune_weight

    pairs = judged_pairs(reranker, dev, instruction, cache)
    lists, qrels = pairs.lists, pairs.qrels
    per_collection: dict[str, float] = {}
    all_ndcg: list[float] = []
    for col in dev.collections:
        run = {qid: dict(zip(lists[f"{col.name}/{qid}"][0], lists[f"{col.name}/{qid}"][1])) for qid in col.qids}
        values = [m["nDCG@10"] for m in metrics_of(col.qrels, run, col.qids).values()]
        per_collection[f"{col.name}:{col.split}"] = sum(values) / len(values)
        all_ndcg += values
    weight, table = tune_weight(lists, qrels, "interpolate")
    return DevResult(ndcg=sum(all_ndcg) / len(all_ndcg), per_collection=per_collection, fusion_weight=weight,
                     fused_ndcg=table[weight], fusion_table=table, pairs=pairs)


def checkpoint_dev(metadata: Mapping[str, Any], top_k: int | None = None, data_dir: str | None = None) -> DevSet:
    """The dev queries of a stage-2 checkpoint with their BM25 top-``top_k`` (default: the depth
    it was tuned at, ``dev_top_k``, else 20). Raises ``ValueError`` when ``prorank.json`` names none."""
    from prorank.train.sources import DataSource, load_sources

    config = (metadata or {}).get("config") or {}
    if not config.get("dev"):
        raise ValueError("its prorank.json names no dev queries (config.dev: a stage-2 checkpoint has them); "
                         "name the data with --dataset NAME:SPLIT")
    specs = [DataSource(**spec) for spec in config["dev"]]
    _, sources = load_sources([], specs, data_dir or config.get("data_dir"), config.get("seed", 0))
    return build_devset(sources, top_k or config.get("dev_top_k") or DEFAULT_TOP_K)


def named_queries(datasets: Sequence[str], top_k: int = DEFAULT_TOP_K, max_queries: int | None = None,
                  data_dir: str | None = None, seed: int = 0) -> DevSet:
    """Judged queries of ``datasets`` (``name`` or ``name:split``, default split train; a folder
    works too) with their BM25 top-``top_k``: all of them, or a seeded sample of ``max_queries``."""
    import dataclasses

    from prorank.train.sources import DataSource, load_sources

    if not datasets:
        raise ValueError("name at least one dataset")
    specs = [dataclasses.replace(DataSource.from_string(d), max_queries=max_queries) for d in datasets]
    _, sources = load_sources([], specs, data_dir, seed)
    return build_devset(sources, top_k)
