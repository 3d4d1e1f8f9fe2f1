"""Quality of the shipped reranker: BM25 | zero-shot base | teacher hybrid | shipped | shipped fused.

Every system reranks the same BM25 top-``top_k`` candidates of the same queries (all judged queries
of each collection's split unless ``max_queries``), through ``prorank eval``'s code (score cache, so
a repeated or interrupted run does no model work twice). The teacher row is the stage-2 teacher
(all-MiniLM-L6-v2 cosine fused with BM25, ``prorank.teacher``) with the BM25 weight the shipped
checkpoint's training tuned on that collection's training queries (the mean of them for a
collection it did not train on). The fused row uses the checkpoint's fusion weight, tuned on its
dev queries. Nothing here is tuned on test queries.

    PRORANK_DATA_DIR=../shared/data python benchmarks/quality.py \
        --datasets '[scifact:test, nfcorpus:dev, cranfield:test, cacm:test, med:test]'

writes ``benchmarks/results/quality-<dataset>.json`` (rows ``[{system, metrics: {nDCG@10, MRR@10,
Recall@100, MAP}, p_vs_bm25}]``) and prints each table as Markdown.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from prorank.evaluation.compare import METRICS, SIGNIFICANCE  # noqa: E402


@dataclass
class QualityConfig:
    model: str = "prorank-smollm2-135m"  # the shipped reranker (or any checkpoint)
    base: str | None = "smollm2-135m-instruct"  # zero-shot row; null skips it
    teacher: str | None = "all-minilm-l6-v2"  # teacher row; null skips it
    datasets: list[str] = field(default_factory=lambda: ["scifact:test"])  # name or path, ":split"
    max_queries: int | None = None  # first N judged queries (natural id order); None = all
    top_k: int = 20
    max_length: int | None = None  # None: the checkpoint's training length
    output: str = "runs/quality"
    results: str = "benchmarks/results"
    data_dir: str | None = None
    cache: str | None = None  # score cache (default: the shared one)


def _eval(cfg: QualityConfig, dataset: str, split: str, model: str, name: str,
          max_length: int | None) -> dict[str, Any]:
    from prorank.evaluation.job import EvalConfig, main

    out = Path(cfg.output) / f"{Path(dataset).name}-{split}-{name}"
    return main(EvalConfig(datasets=[dataset], split=split, model=model, top_k=cfg.top_k, max_queries=cfg.max_queries,
                           reranker={"max_length": max_length}, output=str(out), data_dir=cfg.data_dir, cache=cfg.cache))


def _row(system: str, metrics: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {"system": system, "metrics": {m: round(metrics[m], 4) for m in METRICS}, **extra}


def teacher_weight(metadata: dict[str, Any], dataset: str) -> tuple[float, str]:
    """The BM25 weight the checkpoint's training tuned for ``dataset`` (else the mean of all)."""
    sources = ((metadata.get("data") or {}).get("sources") or {})
    tuned = {k.split(":")[0]: v["teacher"]["bm25_weight"] for k, v in sources.items() if v.get("teacher")}
    if not tuned:
        raise ValueError("the checkpoint's metadata holds no tuned teacher weight (data.sources.*.teacher)")
    if Path(dataset).name in tuned:
        return tuned[Path(dataset).name], f"tuned on {Path(dataset).name} training queries"
    return sum(tuned.values()) / len(tuned), f"mean of the weights tuned on {sorted(tuned)} training queries"


def teacher_run(cfg: QualityConfig, dataset: str, split: str, bm25_run_file: Path, weight: float,
                qids: list[str]) -> tuple[dict, dict]:
    """The teacher's reranking of the BM25 top-k (the BM25 tail kept below it, as the models'),
    evaluated on ``qids`` (a judged query BM25 found nothing for scores 0, as in the other rows)."""
    from prorank.data import load_dataset
    from prorank.dense import DenseEncoder
    from prorank.evaluation.metrics import evaluate
    from prorank.evaluation.rerank import ranked_list, run_hits
    from prorank.evaluation.trec import read_run
    from prorank.teacher import HybridTeacher

    data = load_dataset(dataset, split=split, data_dir=cfg.data_dir)
    encoder = DenseEncoder.load(cfg.teacher)
    teacher = HybridTeacher(encoder, encoder.corpus_vectors(data.corpus), weight)
    bm25 = read_run(bm25_run_file)
    hits = run_hits(bm25)
    head = {q: [h.docid for h in h_[: cfg.top_k]] for q, h_ in hits.items()}
    scores = teacher.score_many({q: data.queries[q] for q in hits}, head, bm25)
    run = {q: ranked_list(hits[q][: cfg.top_k], [scores[q][d] for d in head[q]], hits[q][cfg.top_k:]) for q in hits}
    return run, evaluate(data.qrels, {q: dict(v) for q, v in run.items()}, qids)


def run_dataset(cfg: QualityConfig, spec: str) -> dict[str, Any]:
    from prorank.evaluation.compare import add_pvalues, read_per_query
    from prorank.evaluation.metrics import mean_metrics

    dataset, _, split = spec.partition(":")
    split = split or "test"
    key = Path(dataset).name
    rows: list[dict[str, Any]] = []
    per_query: dict[str, dict[str, float]] = {}
    shipped = _eval(cfg, dataset, split, cfg.model, "shipped", cfg.max_length)
    max_length = shipped["model"]["max_length"]  # every model gets the shipped model's prompt length
    ds = shipped["datasets"][key]
    out = Path(cfg.output) / f"{key}-{split}-shipped"
    rows.append(_row("BM25", ds["metrics"]["bm25"]))
    per_query["BM25"] = read_per_query(out, key, "bm25")
    if cfg.base:
        base = _eval(cfg, dataset, split, cfg.base, "zero-shot", max_length)
        rows.append(_row("zero-shot base", base["datasets"][key]["metrics"]["reranker"], model=cfg.base,
                         fingerprint=base["model"]["fingerprint"]))
        per_query["zero-shot base"] = read_per_query(Path(cfg.output) / f"{key}-{split}-zero-shot", key, "reranker")
    meta = shipped["model"]["metadata"]
    if cfg.teacher:
        weight, how = teacher_weight(meta, dataset)
        _, teacher_pq = teacher_run(cfg, dataset, split, out / key / "bm25.trec", weight, list(per_query["BM25"]))
        rows.append(_row("teacher hybrid", mean_metrics(teacher_pq), model=cfg.teacher, bm25_weight=weight,
                         weight_from=how))
        per_query["teacher hybrid"] = {q: v["nDCG@10"] for q, v in teacher_pq.items()}
    rows.append(_row("shipped model", ds["metrics"]["reranker"], model=cfg.model,
                     fingerprint=shipped["model"]["fingerprint"]))
    per_query["shipped model"] = read_per_query(out, key, "reranker")
    if "fused" in ds["metrics"]:
        fusion = shipped["model"]["fusion"]
        rows.append(_row("shipped model fused", ds["metrics"]["fused"], fusion=fusion))
        per_query["shipped model fused"] = read_per_query(out, key, "fused")
    add_pvalues(rows, per_query, ("BM25",))
    return {"format": "prorank-quality-v1", "dataset": key, "path": ds["path"], "split": split,
            "queries": ds["queries"], "top_k": cfg.top_k, "max_length": max_length,
            "files": ds["files"], "rows": rows, "significance": SIGNIFICANCE,
            "provenance": shipped["provenance"]}


def main(cfg: QualityConfig) -> dict[str, Any]:
    from prorank.atomic import atomic_write_json
    from prorank.config import to_dict
    from prorank.evaluation.compare import markdown

    started = time.time()
    report = {}
    for spec in cfg.datasets:
        table = run_dataset(cfg, spec)
        table["command"] = " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith("quality.py") else None
        table["config"] = to_dict(cfg)
        table["seconds"] = round(time.time() - started, 1)
        atomic_write_json(Path(cfg.results) / f"quality-{table['dataset']}.json", table)
        print(markdown(f"{table['dataset']} ({table['split']}, {table['queries']} queries, BM25 top-{table['top_k']} "
                       f"reranked, max_length {table['max_length']})", table["rows"], ("BM25",)))
        print()
        report[table["dataset"]] = table
    return report


if __name__ == "__main__":
    from prorank.config import config_from_argv

    main(config_from_argv(QualityConfig, sys.argv[1:]))
