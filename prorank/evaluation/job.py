"""``prorank eval``: BM25 first stage, reranking, metrics, run files and a provenance summary.

>>> main(EvalConfig(datasets=["scifact"], model="none"))            # doctest: +SKIP

For each dataset: load the BEIR folder, build (or reuse) its Lucene index, retrieve ``depth``
BM25 candidates for every judged query (the first ``max_queries`` in natural id order, when
set), rerank the ``top_k`` best with the model (scores cached on disk, so an interrupted run
resumes and a repeated one does no model work), evaluate both runs and write under ``output``.
With ``engine: ray`` the pairs are scored by a Ray Data actor pool (``prorank.evaluation.ray_engine``);
everything else, the cache included, stays in this process:

    <output>/summary.json            config, metrics, provenance (also copied to ``summary``)
    <output>/<dataset>/bm25.trec     TREC run of BM25
    <output>/<dataset>/rerank.trec   TREC run after reranking (not with --model none)
    <output>/<dataset>/per_query.tsv per-query metrics of both systems
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from prorank.atomic import atomic_write_json
from prorank.config import check_positive, nested, option, to_dict
from prorank.data import BeirDataset, load_dataset
from prorank.evaluation import provenance
from prorank.evaluation.cache import ScoreCache, open_cache
from prorank.evaluation.metrics import METRICS, evaluate, mean_metrics
from prorank.evaluation.report import delta, print_table, print_throughput, write_per_query
from prorank.evaluation.rerank import LocalScoring, RerankStats, fuse_run, rerank_chunks
from prorank.evaluation.trec import write_run
from prorank.model_info import model_info
from prorank.options import RerankerOptions
from prorank.paths import sha256_file
from prorank.registry import DEFAULT_MODEL

SUMMARY_FORMAT = "prorank-eval-v1"
SEARCH_CHUNK = 50  # queries per batch_search call (progress granularity)


RAY_OPTIONS = ("address", "actors", "cpus_per_actor", "gpus_per_actor")  # engine: ray only


@dataclass
class EvalConfig:
    """Settings of one evaluation (``prorank eval``); ``model="none"`` evaluates BM25 alone."""

    datasets: list[str] = option([], "BEIR folders or names (names are looked up in data_dir)")
    model: str = option(DEFAULT_MODEL, "alias, hub id, folder, .gguf or checkpoint to rerank with, or 'none' "
                        f"for BM25 alone (default: {DEFAULT_MODEL}, the shipped reranker)")
    top_k: int = option(100, "BM25 candidates reranked per query")
    depth: int = option(100, "BM25 candidates retrieved per query (raised to top_k if smaller)")
    split: str = option("test", "qrels split")
    max_queries: int | None = option(None, "first N judged queries in natural id order (default: all)")
    output: str | None = option(None, "output folder (default: runs/eval-<time>-<model>)")
    summary: str | None = option(None, "extra copy of summary.json (e.g. benchmarks/results/x.json)")
    data_dir: str | None = option(None, "where dataset names are looked up (default: $PRORANK_DATA_DIR)")
    reranker: RerankerOptions = option(RerankerOptions(), "device, dtype, max_length, batch_size, fusion, ... of "
                                       "the model (prorank.options.RerankerOptions; YAML block `reranker:`)")
    instruction: str | None = option(None, "optional task instruction line of the prompt")
    first_stage: Literal["bm25", "hybrid", "run"] = option(
        "bm25", "candidates to rerank: bm25, hybrid (BM25 + dense: pyserini HybridSearcher) or run (set by run_file)")
    run_file: str | None = option(None, "a TREC run of one dataset's queries to rerank instead of BM25's candidates")
    dense_model: str = option("all-minilm-l6-v2", "the hybrid first stage's bi-encoder")
    hybrid_alpha: float = option(1.0, "hybrid score = alpha * normalised BM25 + normalised dense")
    k1: float = option(0.9, "BM25 term saturation")
    b: float = option(0.4, "BM25 length normalisation")
    threads: int = option(2, "BM25 search and indexing threads")
    cache: str | None = option(None, "score cache file (default: $PRORANK_HOME/cache/scores.sqlite); 'none' "
                               "disables it")
    exclude_self: bool = option(False, "drop hits whose docid equals the qid (pyserini --remove-query)")
    strict: bool = option(False, "judgments naming unknown ids raise instead of being dropped")
    engine: Literal["local", "ray"] = option(
        "local", "where pairs are scored: this process, or a Ray Data actor pool (prorank.evaluation.ray_engine); "
        "the first stage, cache and metrics stay here either way")
    address: str | None = option(None, "ray: the cluster to join, 'auto' for the one `ray start` runs here "
                                 "(default: a local Ray)")
    actors: int | None = option(None, "ray: Reranker actors in the pool (default 1)")
    cpus_per_actor: int | None = option(None, "ray: CPUs reserved per actor, also its torch threads (default 1)")
    gpus_per_actor: float | None = option(None, "ray: GPUs reserved per actor, fractions share a GPU "
                                          "(default: CPU actors)")

    def __post_init__(self) -> None:
        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        if not self.datasets:
            raise ValueError("datasets: give at least one dataset (path or name)")
        for name in ("top_k", "depth", "threads"):
            check_positive(name, getattr(self, name))
        check_positive("max_queries", self.max_queries, optional=True)
        self.reranker = nested(self.reranker, RerankerOptions, "reranker")
        if not self.model:
            raise ValueError("model: give a model name or path, or 'none' for BM25 alone")
        if self.first_stage not in ("bm25", "hybrid", "run"):
            raise ValueError(f"first_stage must be bm25, hybrid or run, got {self.first_stage!r}")
        if self.run_file is not None:
            if self.first_stage == "hybrid":
                raise ValueError("run_file: the candidates come from the run file; first_stage cannot be hybrid")
            if len(self.datasets) != 1:
                raise ValueError(f"run_file: a run file holds one dataset's queries; got {len(self.datasets)} datasets")
            if not Path(self.run_file).is_file():
                raise ValueError(f"run_file: no such file: {self.run_file}")
            self.first_stage = "run"
        elif self.first_stage == "run":
            raise ValueError("first_stage 'run' needs run_file (a TREC run file)")
        self._check_engine()

    def _check_engine(self) -> None:
        """Fill and check the pool options of engine ``ray`` (defaults: 1 actor, 1 CPU each); engine
        ``local`` takes none of them."""
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be local or ray, got {self.engine!r}")
        if self.engine == "local":
            for name in RAY_OPTIONS:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only used with engine 'ray' (engine is 'local')")
            return
        if self.bm25_only:
            raise ValueError("engine: 'ray' distributes reranking; with model 'none' there is none (use engine local)")
        self.actors = check_positive("actors", 1 if self.actors is None else self.actors)
        self.cpus_per_actor = check_positive("cpus_per_actor", 1 if self.cpus_per_actor is None else self.cpus_per_actor)
        gpus = self.gpus_per_actor
        if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not gpus > 0):
            raise ValueError(f"gpus_per_actor must be a positive number or null (CPU actors), got {gpus!r}")
        if self.address is not None and not str(self.address).strip():
            raise ValueError("address: give a Ray address (e.g. auto or ray://head:10001) or leave it unset")

    @property
    def bm25_only(self) -> bool:
        return self.model.lower() == "none"

    def load_reranker(self) -> Any:
        """The Reranker this evaluation scores with (the local engine's, and each Ray actor's)."""
        from prorank.reranker import Reranker

        return Reranker.from_options(self.model, self.reranker)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name or text).strip("-")[:40] or "model"


def default_output(cfg: EvalConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"eval-{stamp}-{'bm25' if cfg.bm25_only else _slug(cfg.model)}"


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _bm25(cfg: EvalConfig, dataset: BeirDataset, qids: list[str], progress: Progress) -> tuple[dict, dict]:
    from prorank.retrieval import BM25Searcher
    from prorank.retrieval.index import read_index_info

    task = progress.add_task(f"{dataset.name}: index", total=None)
    depth = max(cfg.depth, cfg.top_k)
    hits: dict = {}
    with BM25Searcher.for_dataset(dataset, k1=cfg.k1, b=cfg.b, threads=cfg.threads) as searcher:
        index = searcher.index
        progress.update(task, description=f"{dataset.name}: BM25", total=len(qids), completed=0)
        for start in range(0, len(qids), SEARCH_CHUNK):
            chunk = {q: dataset.queries[q] for q in qids[start : start + SEARCH_CHUNK]}
            found = searcher.batch_search(chunk, k=depth + int(cfg.exclude_self), threads=cfg.threads)
            for qid, result in found.items():
                if cfg.exclude_self:
                    result = [h for h in result if h.docid != qid]
                hits[qid] = result[:depth]
            progress.advance(task, len(chunk))
        built = read_index_info(index)
        if built and "corpus" in built:
            built = {**built, "corpus": provenance.portable_path(built["corpus"])}
        info = {"path": provenance.portable_path(index), "num_docs": searcher.num_docs, "k1": cfg.k1, "b": cfg.b, "depth": depth,
                "built": built}
    return hits, info


def _hybrid(cfg: EvalConfig, dataset: BeirDataset, qids: list[str], progress: Progress) -> tuple[dict, dict]:
    """BM25 + dense candidates fused by pyserini's HybridSearcher (``prorank.retrieval.hybrid``)."""
    from prorank.dense import DenseEncoder
    from prorank.retrieval.hybrid import HybridRetriever

    encoder = DenseEncoder.load(cfg.dense_model)
    task = progress.add_task(f"{dataset.name}: dense + hybrid", total=len(qids))
    depth = max(cfg.depth, cfg.top_k)
    hits: dict = {}
    with HybridRetriever(dataset, encoder, alpha=cfg.hybrid_alpha) as hybrid:
        for qid in qids:
            found = hybrid.search(dataset.queries[qid], k=depth + int(cfg.exclude_self))
            hits[qid] = [h for h in found if not (cfg.exclude_self and h.docid == qid)][:depth]
            progress.advance(task)
    return hits, {"dense_model": encoder.name, "fingerprint": encoder.fingerprint[:16], "alpha": cfg.hybrid_alpha,
                  "depth": depth, "fusion": "pyserini HybridSearcher, normalization=True"}


def _from_run_file(cfg: EvalConfig, dataset: BeirDataset, qids: list[str], progress: Progress) -> tuple[dict, dict]:
    """The candidates of a TREC run file (``run_file``), best first; a judged query it lacks gets none."""
    from prorank.evaluation.rerank import run_hits
    from prorank.evaluation.trec import read_run

    run = read_run(cfg.run_file)
    if not set(run) & set(qids):
        raise ValueError(f"run_file {cfg.run_file}: none of its query ids is a judged query of {dataset.name} "
                         f"({cfg.split}); e.g. {sorted(run)[:3]} vs {qids[:3]}")
    unknown = {d for q in qids for d in run.get(q, {}) if d not in dataset.corpus}
    if unknown:
        raise ValueError(f"run_file {cfg.run_file}: {len(unknown)} document ids are not in {dataset.name}'s corpus, "
                         f"e.g. {sorted(unknown)[:3]}")
    depth = max(cfg.depth, cfg.top_k)
    ranked = run_hits(run)
    hits = {qid: ranked.get(qid, [])[:depth] for qid in qids}
    progress.add_task(f"{dataset.name}: run file", total=len(qids), completed=len(qids))
    missing = sum(1 for q in qids if q not in run)
    return hits, {"run_file": provenance.portable_path(cfg.run_file), "sha256": sha256_file(cfg.run_file),
                  "depth": depth, "judged_queries_missing": missing}


def _evaluate_dataset(cfg: EvalConfig, name: str, scoring: Any, cache: ScoreCache | None,
                      out_dir: Path, progress: Progress) -> dict[str, Any]:
    """One dataset: first stage, reranking with ``scoring`` (``LocalScoring``, ``RayScoring`` or
    None for BM25 alone), metrics and run files."""
    started = time.time()
    dataset = load_dataset(name, split=cfg.split, data_dir=cfg.data_dir, strict=cfg.strict)
    qids = dataset.judged_query_ids(cfg.max_queries)
    hits, index_info = _bm25(cfg, dataset, qids, progress)
    bm25_seconds = time.time() - started
    bm25_lists = {q: [(h.docid, h.score) for h in hits[q]] for q in qids}
    write_run(out_dir / "bm25.trec", bm25_lists, tag="prorank-bm25")
    per_query = {"bm25": evaluate(dataset.qrels, {q: dict(v) for q, v in bm25_lists.items()}, qids)}
    first_stage_info = None
    if cfg.first_stage != "bm25":  # rerank (and fuse with) these candidates instead of BM25's
        retrieve = _hybrid if cfg.first_stage == "hybrid" else _from_run_file
        hits, first_stage_info = retrieve(cfg, dataset, qids, progress)
        lists = {q: [(h.docid, h.score) for h in hits[q]] for q in qids}
        write_run(out_dir / f"{cfg.first_stage}.trec", lists, tag=f"prorank-{cfg.first_stage}")
        per_query[cfg.first_stage] = evaluate(dataset.qrels, {q: dict(v) for q, v in lists.items()}, qids)
    stats = RerankStats()
    if scoring is not None:
        total = sum(min(len(hits[q]), cfg.top_k) for q in qids)
        task = progress.add_task(f"{dataset.name}: rerank ({cfg.engine})", total=total)
        reranked, stats = rerank_chunks(scoring, dataset.queries, {q: hits[q] for q in qids}, dataset.corpus,
                                        cfg.top_k, cache=cache, on_pairs=lambda n: progress.advance(task, n))
        write_run(out_dir / "rerank.trec", reranked, tag="prorank-rerank")
        per_query["reranker"] = evaluate(dataset.qrels, {q: dict(v) for q, v in reranked.items()}, qids)
        if scoring.fusion.active:
            fused = fuse_run(reranked, {q: hits[q] for q in qids}, cfg.top_k, scoring.fusion)
            write_run(out_dir / "fused.trec", fused, tag="prorank-fused")
            per_query["fused"] = evaluate(dataset.qrels, {q: dict(v) for q, v in fused.items()}, qids)
    write_per_query(out_dir / "per_query.tsv", per_query)
    metrics = {system: mean_metrics(values) for system, values in per_query.items()}
    if scoring is not None:
        metrics["delta"] = delta(metrics["reranker"], metrics["bm25"])
    if "fused" in metrics:
        metrics["fused_delta"] = delta(metrics["fused"], metrics["bm25"])
    if cfg.first_stage != "bm25":
        metrics[f"{cfg.first_stage}_delta"] = delta(metrics[cfg.first_stage], metrics["bm25"])
    return {
        "path": provenance.portable_path(dataset.path),
        "split": cfg.split,
        "queries": len(qids),
        "judged_queries": len(dataset.qrels),
        "corpus_docs": len(dataset.corpus),
        "dropped_judgments": dataset.dropped,
        "files": provenance.file_checksums(dataset.files),
        "index": index_info,
        "first_stage": None if first_stage_info is None else {"kind": cfg.first_stage, **first_stage_info},
        "metrics": metrics,
        "rerank": None if scoring is None else _rerank_stats(cfg, stats),
        "seconds": {"load_index_bm25": round(bm25_seconds, 3), "total": round(time.time() - started, 3)},
        "outputs": {key: f"{out_dir.name}/{file}" for key, file in
                    (("bm25_run", "bm25.trec"), ("hybrid_run", "hybrid.trec"), ("first_stage_run", "run.trec"),
                     ("rerank_run", "rerank.trec"),
                     ("fused_run", "fused.trec"),
                     ("per_query", "per_query.tsv"))
                    if (out_dir / file).exists()},
    }


def _rate(pairs: int, seconds: float) -> float | None:
    return round(pairs / seconds, 3) if pairs and seconds > 0 else None


def _rerank_stats(cfg: EvalConfig, stats: Any) -> dict[str, Any]:
    """Counts and speeds of one dataset's reranking. ``pairs_per_second``: per worker's model time
    (summed over workers); ``wall_pairs_per_second``: pairs scored over the whole reranking pass
    (with Ray: starting the actor pool and loading the model in each actor included)."""
    return {
        "engine": cfg.engine, "top_k": cfg.top_k, "pairs": stats.pairs, "scored": stats.scored, "cached": stats.cached,
        "model_seconds": round(stats.model_seconds, 3),
        "pairs_per_second": _rate(stats.scored, stats.model_seconds),
        "wall_seconds": round(stats.wall_seconds, 3),
        "wall_pairs_per_second": _rate(stats.scored, stats.wall_seconds),
        "workers": {name: {"pairs": pairs, "model_seconds": round(seconds, 3), "pairs_per_second": _rate(pairs, seconds)}
                    for name, (pairs, seconds) in sorted(stats.workers.items())},
    }


def _scoring(cfg: EvalConfig, reranker: Any, console: Console) -> tuple[Any, dict[str, Any] | None]:
    """What scores the pairs (None for BM25 alone) and the summary's ``model`` entry."""
    if cfg.engine == "ray":
        if reranker is not None:
            raise ValueError("engine: 'ray' actors load cfg.model themselves; a reranker in memory needs engine local")
        from prorank.evaluation import ray_engine

        with console.status(f"connecting to Ray ({cfg.address or 'local'}), loading {cfg.model} in a worker ..."):
            remote = ray_engine.connect(cfg)
        return remote, remote.model
    if reranker is None and not cfg.bm25_only:
        with console.status(f"loading {cfg.model} ..."):
            reranker = cfg.load_reranker()
    if reranker is None:
        return None, None
    name = reranker.name if cfg.bm25_only else cfg.model
    return LocalScoring(reranker, cfg.instruction), model_info(reranker, name, cfg.instruction)


def main(cfg: EvalConfig, reranker: Any = None, console: Console | None = None) -> dict[str, Any]:
    """Run the evaluation described by ``cfg``; return the summary (also written to disk).

    ``reranker`` overrides loading ``cfg.model`` (e.g. a model already in memory; engine local).
    """
    console = console or Console()
    started, began, cpu_began = provenance.now_utc(), time.time(), time.process_time()
    output = Path(cfg.output) if cfg.output else default_output(cfg)
    scoring, model = _scoring(cfg, reranker, console)
    cache = open_cache(cfg.cache) if scoring is not None else None
    names: dict[str, int] = {}
    datasets: dict[str, Any] = {}
    try:
        with _progress(Console(stderr=True)) as progress:
            for spec in cfg.datasets:
                base = _slug(str(spec))
                names[base] = names.get(base, 0) + 1
                key = base if names[base] == 1 else f"{base}-{names[base]}"
                datasets[key] = _evaluate_dataset(cfg, spec, scoring, cache, output / key, progress)
    finally:
        if cache is not None:
            cache.close()
        if hasattr(scoring, "close"):
            scoring.close()
    systems = ["bm25"] + ([cfg.first_stage] if cfg.first_stage != "bm25" else []) + ([] if scoring is None else ["reranker"])
    if scoring is not None and scoring.fusion.active:
        systems.append("fused")
    average = {s: {m: sum(d["metrics"][s][m] for d in datasets.values()) / len(datasets) for m in METRICS}
               for s in systems}
    if scoring is not None:
        average["delta"] = delta(average["reranker"], average["bm25"])
    for system in ("fused", "hybrid", "run"):
        if system in average:
            average[f"{system}_delta"] = delta(average[system], average["bm25"])
    scored = sum(d["rerank"]["scored"] for d in datasets.values()) if scoring is not None else 0
    model_seconds = sum(d["rerank"]["model_seconds"] for d in datasets.values()) if scoring is not None else 0.0
    summary = {
        "format": SUMMARY_FORMAT,
        "config": to_dict(cfg),
        "model": model,
        "top_k": cfg.top_k,
        "reranked_run": "the top_k BM25 candidates sorted by model score, then the other BM25 "
                        "candidates in BM25 order (so Recall@100 counts the same 100 documents)",
        "bm25": {"k1": cfg.k1, "b": cfg.b, "depth": max(cfg.depth, cfg.top_k), "exclude_self": cfg.exclude_self,
                 "index": "Anserini BeirFlatCollection: contents = title + ' ' + text, default English analyzer"},
        "metrics": {"names": list(METRICS), "library": "pytrec_eval (trec_eval)",
                    "queries": "judged queries only; unanswered judged queries score 0"},
        "datasets": datasets,
        "average": average,
        "provenance": {
            "git": provenance.git_state(),
            "versions": provenance.versions(),
            "hardware": provenance.hardware(None if model is None else model["device"]),
            "engine": cfg.engine,
            "ray": getattr(scoring, "cluster", None),
            "started": started,
            "finished": provenance.now_utc(),
            "seconds": round(time.time() - began, 3),
            "cpu_seconds": round(time.process_time() - cpu_began, 1),  # all threads of this process
            "pairs_scored": scored,
            "pairs_per_second": _rate(scored, model_seconds),  # per worker's model time
        },
        "output": provenance.portable_path(output),
    }
    atomic_write_json(output / "summary.json", summary)
    if cfg.summary:
        atomic_write_json(cfg.summary, summary)
    print_table(summary, console)
    print_throughput(summary, console)
    console.print(f"outputs: {output}")
    return summary
