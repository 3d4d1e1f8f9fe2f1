"""Throughput of ProRank's ``Reranker`` vs a plain transformers loop vs ``mxbai-rerank`` 0.1.6.

One command, one process run: the same real model (``smollm2-135m-instruct`` by default) and the
same (query, document) pairs — SciFact test queries with their top BM25 candidates from the
corpus, documents cut to ``--doc-tokens`` tokens — scored end to end (strings in, scores out) by

- ``prorank``      ``Reranker.from_pretrained(...).score_pairs(pairs)``
- ``transformers`` a plain loop over the same prompt texts in input order (no length sorting),
                   right padding, full-vocabulary logits, logit("1") - logit("0") at the last real token
- ``mxbai``        ``MxbaiRerankV2`` (the routine behind its ``rank()``) on its own prompts, in a
                   worker process of a separate venv (transformers 4.57.6; ``mxbai_worker.py``)
- ``prorank-shared``, ``prorank-unshared``, ``prorank-compiled``, ``prorank-1stream`` (opt-in
                   through ``--methods``): the Reranker with ``share_prefix=True`` / ``False``,
                   ``compile=True`` or ``streams=1``; warmed up by one untimed full pass

Methods alternate within every repeat (the order rotates); medians of the repeats are reported.
Run from the repository root::

    python benchmarks/throughput.py                 # device auto-detected (CUDA -> bf16)
    python benchmarks/throughput.py --device cpu --repeats 3 --queries 3
    python benchmarks/throughput.py --methods prorank,prorank-shared,prorank-compiled,transformers,mxbai
    # speed of an architecture whose weights are not here: random weights, SmolLM2's tokenizer
    python benchmarks/throughput.py --random-init benchmarks/qwen2.5-0.5b-instruct-config.json

The mxbai venv is created at ``<repo>/.venv-mxbai`` on first use (pip: torch 2.13.0, transformers 4.57.6,
mxbai-rerank 0.1.6, gguf 0.19.0)
unless ``--mxbai-python`` names an interpreter that has mxbai-rerank 0.1.6; ``--no-mxbai``
skips that method. Results go to ``benchmarks/results/throughput-<device>.json``.

On a CPU shared with other work, prefix ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads then sleep
instead of spinning while they wait, which keeps wall times sane under load and makes the
reported CPU seconds (pairs/CPU-s, the load-robust column) measure work, not spinning.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MXBAI_REQUIREMENTS = ["torch==2.13.0", "transformers==4.57.6", "mxbai-rerank==0.1.6", "gguf==0.19.0"]
METHODS = ("prorank", "transformers", "mxbai")
# ProRank with a non-default option, opt-in through --methods: the Reranker keyword it sets
VARIANTS = {"prorank-1stream": {"streams": 1}, "prorank-shared": {"share_prefix": True},
            "prorank-unshared": {"share_prefix": False}, "prorank-compiled": {"compile": True}}
MXBAI_DEFAULT_BATCH_SIZE = 32  # mxbai-rerank 0.1.6: rank(..., batch_size=32)


@dataclass
class ThroughputConfig:
    model: str = "smollm2-135m-instruct"
    random_init: str = ""  # architecture config: random weights of it, tokenizer of `model`
    data_dir: str = ""  # default: $PRORANK_DATA_DIR or <repo>/../shared/data
    dataset: str = "scifact"
    queries: int = 2  # first N test queries (qrels order)
    docs_per_query: int = 16  # top BM25 candidates per query
    doc_tokens: int = 300  # documents cut to this many tokens (same text for every method)
    batch_size: int = 0  # ProRank and the plain loop; 0 = ProRank's default for the device
    mxbai_batch_size: int = 0  # 0 = mxbai-rerank's own default (MXBAI_DEFAULT_BATCH_SIZE)
    max_length: int = 512
    repeats: int = 3
    device: str = "auto"  # auto | cpu | cuda[:N]
    threads: int = 0  # torch intra-op threads in both processes; 0 = torch default
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    mxbai_python: str = ""  # default: <repo>/.venv-mxbai/bin/python (created when missing)
    output: str = ""  # default: benchmarks/results/throughput-<device type>.json
    tolerance: float = 1e-3  # max |prorank - transformers| allowed in float32


# ----------------------------------------------------------------------------- pairs
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def select_pairs(cfg: ThroughputConfig, tokenizer: Any) -> list[tuple[str, str, str, str]]:
    """Deterministic (query_id, doc_id, query, document) tuples: BM25 (k1=0.9, b=0.4) top-k."""
    root = Path(cfg.data_dir or os.environ.get("PRORANK_DATA_DIR") or REPO.parent / "shared" / "data")
    folder = root / cfg.dataset
    if not (folder / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"data_dir: no {cfg.dataset}/corpus.jsonl under {root}")
    corpus = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(folder / "queries.jsonl", encoding="utf-8"))}
    qids: list[str] = []
    for line in open(folder / "qrels" / "test.tsv", encoding="utf-8"):
        qid = line.split("\t")[0]
        if qid in queries and qid not in qids:
            qids.append(qid)
    texts = [f"{d.get('title', '').strip()}\n{d['text']}".strip() for d in corpus]
    bags = [Counter(_words(t)) for t in texts]
    lengths = [sum(b.values()) for b in bags]
    avg = sum(lengths) / len(lengths)
    df = Counter(w for b in bags for w in b)
    idf = {w: math.log(1 + (len(bags) - n + 0.5) / (n + 0.5)) for w, n in df.items()}
    pairs = []
    for qid in qids[: cfg.queries]:
        terms = [w for w in set(_words(queries[qid])) if w in idf]
        scores = [
            sum(idf[w] * b[w] * 1.9 / (b[w] + 0.9 * (0.6 + 0.4 * n / avg)) for w in terms if w in b)
            for b, n in zip(bags, lengths)
        ]
        top = sorted(range(len(bags)), key=lambda i: (-scores[i], i))[: cfg.docs_per_query]
        for i in top:
            ids = tokenizer(texts[i], add_special_tokens=False)["input_ids"]
            doc = texts[i] if len(ids) <= cfg.doc_tokens else tokenizer.decode(ids[: cfg.doc_tokens])
            pairs.append((qid, corpus[i]["_id"], queries[qid], doc))
    return pairs


# ----------------------------------------------------------------------------- methods
def plain_transformers_scores(model: Any, tokenizer: Any, builder: Any, pairs, batch_size: int) -> dict:
    """Baseline: input order, right padding, full logits, read the last real token."""
    import torch

    zero, one = builder.answer_token_ids
    texts = [e.text for e in builder.encode_many(pairs)]
    scores: list[float] = []
    real = padded = 0
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(texts[start : start + batch_size], add_special_tokens=False,
                                padding=True, return_tensors="pt").to(model.device)
                logits = model(**enc).logits  # [B, L, vocab]
                last = enc["attention_mask"].sum(dim=1) - 1
                rows = logits[torch.arange(logits.shape[0], device=logits.device), last].float()
                scores += (rows[:, one] - rows[:, zero]).tolist()
                real += int(enc["attention_mask"].sum())
                padded += int(enc["input_ids"].numel())
    finally:
        tokenizer.padding_side = side
    return {"scores": scores, "real_tokens": real, "padded_tokens": padded}


def prompts_by_query(builder: Any, pairs) -> dict[str, list[list[int]]]:
    """ProRank's prompt ids of ``pairs``, grouped by query (as ``score_pairs`` groups them)."""
    by_query: dict[str, list[list[int]]] = {}
    for (q, _), encoded in zip(pairs, builder.encode_many(pairs)):
        by_query.setdefault(q, []).append(encoded.input_ids)
    return by_query


def prorank_token_counts(reranker: Any, by_query: dict[str, list[list[int]]]) -> dict:
    """Prompt tokens of ``score_pairs``, and the positions it runs through the model: per query,
    the shared prefix once, then the rest of each prompt in length-sorted batches of batch_size."""
    from prorank.reranker import shared_prefix_length

    real = sum(len(p) for prompts in by_query.values() for p in prompts)
    padded = 0
    for prompts in by_query.values():
        shared = shared_prefix_length(prompts) if reranker.share_prefix else 0
        lengths = sorted((len(p) - shared for p in prompts), reverse=True)
        bs = reranker.batch_size
        padded += shared + sum(len(lengths[i : i + bs]) * lengths[i] for i in range(0, len(lengths), bs))
    return {"real_tokens": real, "padded_tokens": padded}


class MxbaiWorker:
    """``mxbai_worker.py`` running in the mxbai venv, spoken to with JSON lines."""

    def __init__(self, python: Path, gguf: Path | None, model_dir: Path, device: str, dtype: str,
                 threads: int, max_length: int) -> None:
        cmd = [str(python), str(Path(__file__).with_name("mxbai_worker.py")),
               *(["--gguf", str(gguf)] if gguf else []),
               "--model-dir", str(model_dir), "--device", device, "--dtype", dtype,
               "--threads", str(threads), "--max-length", str(max_length)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mxbai worker exited with code {self.proc.wait()} (see its stderr above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"mxbai worker: {reply['error']}")
        return reply

    def call(self, **request: Any) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.call(op="quit")
            self.proc.wait(timeout=60)


def ensure_mxbai_python(cfg: ThroughputConfig) -> Path:
    """Return the mxbai interpreter; create ``<repo>/.venv-mxbai`` (pinned) when it is missing."""
    if cfg.mxbai_python:
        python = Path(cfg.mxbai_python)
        if not python.is_file():
            raise FileNotFoundError(f"mxbai_python: {python} does not exist")
        return python
    venv = REPO / ".venv-mxbai"
    python = venv / "bin" / "python"
    marker = venv / ".prorank-bench-ready"
    if python.is_file() and marker.is_file() and marker.read_text().strip() == " ".join(MXBAI_REQUIREMENTS):
        return python
    print(f"[bench] preparing {venv} with {' '.join(MXBAI_REQUIREMENTS)} (once) ...", file=sys.stderr)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *MXBAI_REQUIREMENTS], check=True)
    marker.write_text(" ".join(MXBAI_REQUIREMENTS) + "\n")
    return python


# ----------------------------------------------------------------------------- reporting
def _machine(device: Any) -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
    except (OSError, StopIteration):
        flags = []
    info = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "cpu_flags": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags],
            "torch_threads": torch.get_num_threads(), "loadavg_start": list(os.getloadavg())}
    info["env"] = _machine_env()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _machine_env() -> dict:
    return {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ}


def _git() -> dict:
    def run(*args: str) -> str | None:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain", "--", "prorank", "benchmarks"))}


def _correlation(x: list[float], y: list[float]) -> dict:
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    pearson = statistics.correlation(x, y) if len(x) > 1 else float("nan")
    spearman = statistics.correlation(ranks(x), ranks(y)) if len(x) > 1 else float("nan")
    return {"pearson": pearson, "spearman": spearman,
            "max_abs_diff": max(abs(a - b) for a, b in zip(x, y)),
            "mean_abs_diff": statistics.fmean(abs(a - b) for a, b in zip(x, y))}


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result["machine"]
    model = result["config"]["model"]
    if result["config"].get("random_init"):
        model = f"random {Path(result['config']['random_init']).stem} (tokenizer: {Path(model).name})"
    title = f"{model} · {result['pairs']} pairs · {result['device']} {result['dtype']} · {m.get('gpu') or m['cpu']} · {m['torch_threads']} threads"
    table = Table(title=title)
    for col in ("method", "batch", "pairs/s", "prompt tok/s", "s/pass (median)", "min–max s", "pairs/CPU-s", "mean prompt tok",
                "fwd tok/prompt tok", "vs mxbai", "vs transformers", "vs mxbai (CPU-s)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, r in result["methods"].items():
        table.add_row(name, str(r["batch_size"]), f"{r['pairs_per_s']:.3f}", f"{r['prompt_tokens_per_s']:.0f}", f"{r['median_s']:.2f}",
                      f"{min(r['seconds']):.1f}–{max(r['seconds']):.1f}", f"{r['pairs_per_cpu_s']:.3f}",
                      f"{r['mean_prompt_tokens']:.0f}", f"{r['forward_per_prompt_token']:.2f}", _fmt(r.get("speedup_vs_mxbai")),
                      _fmt(r.get("speedup_vs_transformers")), _fmt(r.get("cpu_speedup_vs_mxbai")))
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    for key, value in result["agreement"].items():
        console.print(f"[bold]{key}[/]: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()))


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


# ----------------------------------------------------------------------------- main
def main(cfg: ThroughputConfig) -> dict:
    """Run the benchmark, print the table, write the JSON; return the result dict."""
    import torch
    import transformers

    import prorank
    from prorank import Reranker
    from prorank.atomic import atomic_write_json
    from prorank.registry import REGISTRY, gguf_path

    unknown = set(cfg.methods) - set(METHODS) - set(VARIANTS)
    if unknown or not cfg.methods:
        raise ValueError(f"methods: choose from {METHODS + tuple(VARIANTS)}, got {cfg.methods}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else "cpu" if cfg.device == "auto" else cfg.device)
    loadavg_start = list(os.getloadavg())
    model_path = cfg.model
    if cfg.random_init:
        from prorank.registry import resolve_model
        from random_model import random_model_dir

        model_path = str(random_model_dir(cfg.random_init, resolve_model(cfg.model)))
        print(f"[bench] random weights of {cfg.random_init}: {model_path}", file=sys.stderr)
    rerankers = {name: Reranker.from_pretrained(model_path, device=device, max_length=cfg.max_length,
                                                batch_size=cfg.batch_size or None, **options)
                 for name, options in {"prorank": {}, **VARIANTS}.items()
                 if name == "prorank" or name in cfg.methods}
    reranker = rerankers["prorank"]
    batch_sizes = {**{name: r.batch_size for name, r in rerankers.items()}, "transformers": reranker.batch_size,
                   "mxbai": cfg.mxbai_batch_size or MXBAI_DEFAULT_BATCH_SIZE}
    dtype = next(reranker.model.parameters()).dtype
    tokenizer, builder = reranker.tokenizer, reranker.builder
    rows = select_pairs(cfg, tokenizer)
    pairs = [(q, d) for _, _, q, d in rows]
    print(f"[bench] {len(pairs)} pairs, device={device}, dtype={dtype}, threads={torch.get_num_threads()}", file=sys.stderr)

    worker = None
    if "mxbai" in cfg.methods:
        if cfg.random_init:  # the same folder (written for transformers 4.x too)
            gguf, mx_dir = None, Path(model_path)
        elif cfg.model in REGISTRY:  # its GGUF, converted by transformers 4.57 itself
            from prorank.paths import prorank_home

            gguf = gguf_path(cfg.model)
            mx_dir = prorank_home() / "bench" / f"{cfg.model}-transformers-4.57.6"
        else:
            raise ValueError("model: the mxbai side needs a registered alias (its GGUF is converted "
                             f"with transformers 4.57) or --random-init; {cfg.model!r} is neither "
                             f"({sorted(REGISTRY)}); use --no-mxbai")
        python = ensure_mxbai_python(cfg)
        worker = MxbaiWorker(python, gguf, mx_dir, str(device),
                             "bfloat16" if dtype == torch.bfloat16 else "float32",
                             torch.get_num_threads(), cfg.max_length)
        worker.call(op="set_pairs", queries=[q for q, _ in pairs], documents=[d for _, d in pairs])

    def run(name: str, limit: int | None = None) -> dict:
        subset = pairs[:limit] if limit else pairs
        if name == "mxbai":
            return worker.call(op="score", batch_size=batch_sizes["mxbai"], limit=limit)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        if name in rerankers:
            out = {"scores": rerankers[name].score_pairs(subset)}
        else:
            out = plain_transformers_scores(reranker.model, tokenizer, builder, subset, batch_sizes["transformers"])
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu
        return out

    try:
        for name in cfg.methods:  # warm-up (kernels, allocator, compilation), untimed
            run(name, limit=min(2, len(pairs)))
            if name in VARIANTS:  # every shape class a pass will meet
                run(name)
        runs: dict[str, list[dict]] = {name: [] for name in cfg.methods}
        for rep in range(cfg.repeats):
            order = cfg.methods[rep % len(cfg.methods):] + cfg.methods[: rep % len(cfg.methods)]
            for name in order:
                out = run(name)
                runs[name].append(out)
                print(f"[bench] repeat {rep + 1}/{cfg.repeats} {name:12s} {out['seconds']:7.2f} s "
                      f"(cpu {out['cpu_seconds']:.2f} s, load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        mx_ids = worker.call(op="encode")["input_ids"] if worker else None
        mx_info = worker.info if worker else None
    finally:
        if worker:
            worker.close()

    by_query = prompts_by_query(builder, pairs)  # the same prompts for every ProRank path
    counts = {name: prorank_token_counts(r, by_query) for name, r in rerankers.items()}
    for name in ("transformers", "mxbai"):
        if name in runs:
            counts[name] = {k: runs[name][0][k] for k in ("real_tokens", "padded_tokens")}
    methods: dict[str, dict] = {}
    for name, outs in runs.items():
        seconds = [o["seconds"] for o in outs]
        cpu_seconds = [o["cpu_seconds"] for o in outs]
        med = statistics.median(seconds)
        c = counts[name]
        methods[name] = {
            "batch_size": batch_sizes[name], "seconds": seconds, "median_s": med, "pairs_per_s": len(pairs) / med,
            "cpu_seconds": cpu_seconds, "pairs_per_cpu_s": len(pairs) / statistics.median(cpu_seconds),
            "prompt_tokens_per_s": c["real_tokens"] / med, "mean_prompt_tokens": c["real_tokens"] / len(pairs),
            # positions run through the model (padding included, shared prefixes once) per prompt token
            "real_tokens": c["real_tokens"], "forward_tokens": c["padded_tokens"],
            "forward_per_prompt_token": c["padded_tokens"] / c["real_tokens"],
        }
    for name, r in methods.items():
        for base in ("mxbai", "transformers"):
            if base in methods and base != name:
                r[f"speedup_vs_{base}"] = r["pairs_per_s"] / methods[base]["pairs_per_s"]
                r[f"cpu_speedup_vs_{base}"] = r["pairs_per_cpu_s"] / methods[base]["pairs_per_cpu_s"]

    agreement: dict[str, dict] = {}
    scores = {name: outs[-1]["scores"] for name, outs in runs.items()}
    tol = cfg.tolerance if dtype == torch.float32 else max(cfg.tolerance, 0.1)
    for name in rerankers:
        if name in scores and "transformers" in scores:
            diff = max(abs(a - b) for a, b in zip(scores[name], scores["transformers"]))
            agreement[f"{name} vs transformers (same prompts)"] = {"max_abs_diff": diff, "tolerance": tol, "ok": diff <= tol}
    if mx_ids is not None:
        ours_on_mx = reranker.score_token_ids(mx_ids)
        same = _correlation(ours_on_mx, scores["mxbai"])
        same["ok"] = same["max_abs_diff"] <= tol
        agreement["mxbai vs prorank on mxbai's own token ids (4.57 vs 5.x weights)"] = same
        ours = scores.get("prorank") or reranker.score_pairs(pairs)
        agreement["mxbai vs prorank, each on its own prompt"] = _correlation(ours, scores["mxbai"])
    for name, outs in runs.items():
        spread = max(max(abs(a - b) for a, b in zip(o["scores"], outs[0]["scores"])) for o in outs)
        agreement[f"{name} repeat-to-repeat"] = {"max_abs_diff": spread}

    result = {
        "benchmark": "throughput", "command": " ".join([f"{k}={v}" for k, v in _machine_env().items()] + ["python", *sys.argv]),
        "git": _git(), "config": asdict(cfg), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "pairs": len(pairs), "queries": sorted({r[0] for r in rows}, key=[r[0] for r in rows].index),
        "doc_ids": [r[1] for r in rows],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "prorank": prorank.__version__,
                     "mxbai_side": mx_info and {**mx_info["versions"], "dtype": mx_info["dtype"],
                                                "attn_implementation": mx_info["attn_implementation"],
                                                "threads": mx_info["threads"]}},
        "machine": {**_machine(device), "loadavg_start": loadavg_start, "loadavg_end": list(os.getloadavg())},
        "methods": methods, "agreement": agreement,
        "prompt_examples": {"prorank": builder.encode(*pairs[0]).text,
                            "mxbai": tokenizer.decode(mx_ids[0]) if mx_ids else None},
        "scores": {name: s for name, s in scores.items()},
    }
    print_table(result)
    out = Path(cfg.output or REPO / "benchmarks" / "results" / f"throughput-{device.type}.json")
    atomic_write_json(out, result)
    print(f"[bench] wrote {out}", file=sys.stderr)
    return result


def parse_args(argv: list[str] | None = None) -> ThroughputConfig:
    d = ThroughputConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", default=d.model, help="alias (its GGUF also feeds the mxbai side), folder or hub id")
    p.add_argument("--random-init", default=d.random_init, metavar="CONFIG_JSON",
                   help="benchmark random weights of this architecture (e.g. benchmarks/qwen2.5-0.5b-instruct-config.json) "
                        "with --model's tokenizer; speed only, for where real weights cannot go")
    p.add_argument("--data-dir", default=d.data_dir, help="folder holding <dataset>/ in BEIR format")
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--queries", type=int, default=d.queries, help="number of test queries")
    p.add_argument("--docs-per-query", type=int, default=d.docs_per_query, help="BM25 candidates per query")
    p.add_argument("--doc-tokens", type=int, default=d.doc_tokens, help="cut documents to this many tokens")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="pairs per forward pass of prorank and the plain loop (0: prorank's device default)")
    p.add_argument("--mxbai-batch-size", type=int, default=d.mxbai_batch_size,
                   help=f"pairs per forward pass of mxbai (0: its default, {MXBAI_DEFAULT_BATCH_SIZE})")
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--device", default=d.device, help="auto (CUDA if available, bf16 there), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads in both processes (0: default)")
    p.add_argument("--methods", default=",".join(d.methods),
                   help=f"comma-separated subset of {','.join(METHODS + tuple(VARIANTS))} (the prorank-* variants: opt-in)")
    p.add_argument("--no-mxbai", action="store_true", help="skip mxbai-rerank (no second venv)")
    p.add_argument("--mxbai-python", default=d.mxbai_python,
                   help="python of a venv with mxbai-rerank==0.1.6 + transformers==4.57.6 (default: <repo>/.venv-mxbai, created if missing)")
    p.add_argument("--output", default=d.output, help="JSON path (default benchmarks/results/throughput-<device>.json)")
    p.add_argument("--tolerance", type=float, default=d.tolerance, help="max |prorank - transformers| in float32")
    a = p.parse_args(argv)
    methods = [m for m in a.methods.split(",") if m and not (a.no_mxbai and m == "mxbai")]
    return ThroughputConfig(a.model, a.random_init, a.data_dir, a.dataset, a.queries, a.docs_per_query, a.doc_tokens, a.batch_size,
                            a.mxbai_batch_size,
                            a.max_length, a.repeats, a.device, a.threads, methods, a.mxbai_python, a.output, a.tolerance)


if __name__ == "__main__":
    main(parse_args())
