"""Load test of a running ProRank service, against the in-process ``Reranker`` on the same pairs.

    prorank serve --config configs/serve.yaml --max-length 256 &      # or any deployment
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --concurrency 16 --duration 180 \\
        --out benchmarks/results/load_test_cpu.json

Phase 1 (service): ``--concurrency`` closed-loop clients send ``POST /v1/rerank`` requests of
``--docs-per-request`` documents (random BEIR documents for BEIR queries, fixed seed) for
``--warmup`` seconds (not counted), then ``--duration`` seconds. Requests that complete inside
the measured window count towards latency percentiles and rates; the rates are taken from the
first to the last completion in the window (requests finish in bursts, one per model batch, so
this removes the error of where the window's edges fall). Requests still in flight at the end
are awaited (their errors count) but not counted. Every non-200 answer or transport failure is
an error.

Phase 2 (in-process, same process, after the load has stopped): the model the service reports
at ``/v1/models`` is loaded with the same ``max_length``, ``batch_size``, ``streams``, dtype and device, and
scores exactly the pairs of the counted requests with one ``Reranker.score_pairs`` call
(length-sorted batches: the best case for a batch job; without prefix sharing, which the service's
mixed batches do not use either). Its scores are compared with the
service's as a correctness check.

Besides wall-clock rates, both phases report pairs per CPU-second: for a local service, the CPU
time of its whole process tree (launcher, Ray's processes, proxy, replicas) over the measured
window; for the in-process run, this process's CPU time. On a machine shared with other work,
wall-clock rates move with the background load, while pairs per CPU-second measure the
service's overhead itself. The JSON written to ``--out`` holds the command, git commit,
machine, library versions and all numbers. Nothing here is CPU- or GPU-specific.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from prorank.evaluation.provenance import portable_path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    request: int  # index into the request pool
    start: float
    end: float
    status: int  # HTTP status, or 0 for a transport error
    error: str | None = None
    scores: list[float] | None = None  # by document index


@dataclass
class Pool:
    """Deterministic requests: (query, documents) pairs built from a BEIR folder."""

    requests: list[tuple[str, list[dict[str, str]]]] = field(default_factory=list)

    @classmethod
    def from_beir(cls, folder: Path, docs_per_request: int, size: int, seed: int) -> "Pool":
        from prorank.data import load_folder

        data = load_folder(folder)
        rng = random.Random(seed)
        qids = sorted(data.queries)
        dids = sorted(data.corpus)
        out = cls()
        for i in range(size):
            query = data.queries[qids[i % len(qids)]]
            docs = [data.corpus[d] for d in rng.sample(dids, docs_per_request)]
            out.requests.append((query, [{"title": d.get("title", ""), "text": d["text"]} for d in docs]))
        return out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def run_load(url: str, pool: Pool, concurrency: int, warmup: float, duration: float,
                   headers: dict[str, str], timeout: float) -> tuple[list[Outcome], float, float]:
    """Closed-loop clients; returns all outcomes and the measured window (t0, t1)."""
    outcomes: list[Outcome] = []
    counter = 0
    t_start = time.perf_counter()
    t0 = t_start + warmup
    t1 = t0 + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < t1:
                idx = counter % len(pool.requests)
                counter += 1
                query, docs = pool.requests[idx]
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/rerank", json={"query": query, "documents": docs})
                    end = time.perf_counter()
                    if r.status_code == 200:
                        scores = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
                        outcomes.append(Outcome(idx, start, end, 200, scores=[scores[i] for i in range(len(docs))]))
                    else:
                        outcomes.append(Outcome(idx, start, end, r.status_code, error=r.text[:300]))
                except httpx.HTTPError as err:
                    outcomes.append(Outcome(idx, start, time.perf_counter(), 0, error=f"{type(err).__name__}: {err}"))

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return outcomes, t0, t1


def service_processes(port: int) -> list[Any]:
    """The local service's process tree: from the process listening on ``port`` up to the
    launcher (``prorank serve`` / ``serve run``), and all its descendants. Empty when the service
    is not on this machine or psutil is missing (CPU accounting is then skipped)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        listener = next(c.pid for c in psutil.net_connections("tcp")
                        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid)
        proc = psutil.Process(listener)
        while proc.parent() is not None and proc.parent().pid != 1:
            cmd = " ".join(proc.cmdline())
            if "prorank serve" in cmd or "serve run" in cmd or "serve deploy" in cmd:
                break
            proc = proc.parent()
        return [proc, *proc.children(recursive=True)]
    except (StopIteration, psutil.Error):
        return []


def cpu_seconds(processes: list[Any]) -> dict[int, float]:
    """User + system CPU seconds so far, per pid (processes that ended are skipped)."""
    out = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
        except Exception:  # noqa: BLE001 - a process that exited
            pass
    return out


def metric_values(url: str, headers: dict[str, str]) -> dict[str, float]:
    """Unlabelled samples of the service's /metrics (batch sizes, pairs scored)."""
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith("prorank_") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def in_process(info: dict[str, Any], pairs: list[tuple[str, dict[str, str]]], threads: int | None) -> dict[str, Any]:
    import resource

    import torch

    from prorank.calibration import Calibration
    from prorank.reranker import Reranker

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    device = str(info["device"]).split(":")[0]
    reranker = Reranker.from_pretrained(info["source"], device=device, dtype=info["dtype"],
                                        max_length=info["max_length"], batch_size=info["batch_size"],
                                        streams=info.get("streams"),
                                        calibration=Calibration.from_dict(info["calibration"])
                                        if info.get("calibration") else None,  # the service's scale
                                        share_prefix=False)  # as the service: it scores mixed batches
    reranker.score_pairs(pairs[: max(2, info["batch_size"])])  # warm-up (allocator, kernels)
    if device == "cuda":
        torch.cuda.synchronize()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    scores = reranker.score_pairs(pairs)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    scores = [reranker.output(s, info.get("normalize", False)) for s in scores]
    return {"pairs": len(pairs), "seconds": round(seconds, 3), "pairs_per_s": len(pairs) / seconds,
            "cpu_seconds": round(cpu, 2), "cores_used": cpu / seconds, "pairs_per_cpu_s": len(pairs) / cpu,
            "device": device, "dtype": info["dtype"], "torch_threads": torch.get_num_threads(), "scores": scores}


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    commit = git("rev-parse", "HEAD")
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "ray", "fastapi", "httpx", "prorank"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = {"platform": platform.platform(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)),
               "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    try:
        import torch

        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"git_commit": commit if commit else "none", "git_dirty": bool(git("status", "--porcelain")),
            "machine": machine, "versions": versions}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=180.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of load before measuring")
    p.add_argument("--docs-per-request", type=int, default=4)
    p.add_argument("--dataset", default=None, help="BEIR folder (default: $PRORANK_DATA_DIR/cranfield)")
    p.add_argument("--pool-size", type=int, default=2000, help="distinct requests (cycled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="client timeout per request (s)")
    p.add_argument("--api-key-env", default=None, help="env var holding the service's API key")
    p.add_argument("--threads", type=int, default=None, help="torch threads in-process (default: all cores)")
    p.add_argument("--skip-in-process", action="store_true")
    p.add_argument("--out", default=None, help="JSON file to write (atomically)")
    args = p.parse_args(argv)

    data_root = Path(os.environ.get("PRORANK_DATA_DIR") or REPO.parent / "shared" / "data")
    dataset = Path(args.dataset) if args.dataset else data_root / "cranfield"
    headers = {"Authorization": f"Bearer {os.environ[args.api_key_env]}"} if args.api_key_env else {}
    info = httpx.get(f"{args.url}/v1/models", headers=headers, timeout=60).json()["data"][0]
    pool = Pool.from_beir(dataset, args.docs_per_request, args.pool_size, args.seed)
    print(f"service model {info['id']} on {info['device']} (max_length {info['max_length']}, "
          f"batch_size {info['batch_size']}); {args.concurrency} clients, {args.warmup:g}s warm-up + "
          f"{args.duration:g}s measured", file=sys.stderr)

    load_before = os.getloadavg()
    metrics_before = metric_values(args.url, headers)
    procs = service_processes(httpx.URL(args.url).port or 80)
    cpu_marks: dict[str, dict[int, float]] = {}

    async def mark_cpu() -> None:  # service CPU time at the edges of the measured window
        await asyncio.sleep(args.warmup)
        cpu_marks["t0"] = cpu_seconds(procs)
        await asyncio.sleep(args.duration)
        cpu_marks["t1"] = cpu_seconds(procs)

    async def load_and_mark():
        marker = asyncio.create_task(mark_cpu())
        result = await run_load(args.url, pool, args.concurrency, args.warmup, args.duration, headers, args.timeout)
        await marker
        return result

    outcomes, t0, t1 = asyncio.run(load_and_mark())
    metrics_after = metric_values(args.url, headers)
    load_after = os.getloadavg()

    counted = sorted((o for o in outcomes if t0 <= o.end <= t1 and o.status == 200), key=lambda o: o.end)
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.status != 200:
            errors[str(o.status)] = errors.get(str(o.status), 0) + 1
    latencies = [o.end - o.start for o in counted]
    pairs = sum(len(pool.requests[o.request][1]) for o in counted)
    # Rates between the first and the last completion in the window: requests finish in bursts
    # (one per model batch), and counting from completion to completion removes the error of
    # where the window's edges fall between bursts.
    span = counted[-1].end - counted[0].end if len(counted) > 1 else float("nan")
    later = counted[1:]
    later_pairs = sum(len(pool.requests[o.request][1]) for o in later)
    served = {
        "requests": len(counted),
        "pairs": pairs,
        "requests_per_s": len(later) / span,
        "pairs_per_s": later_pairs / span,
        "window_rate_pairs_per_s": pairs / args.duration,
        "completion_span_s": span,
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "p99": percentile(latencies, 99), "mean": statistics.fmean(latencies) if latencies else None,
                      "max": max(latencies, default=None)},
        "errors": sum(errors.values()),
        "errors_by_status": errors,
        "error_samples": sorted({o.error for o in outcomes if o.error})[:5],
        "requests_sent": len(outcomes),
    }
    if procs and cpu_marks.get("t0") and cpu_marks.get("t1"):
        cpu = sum(cpu_marks["t1"][p] - cpu_marks["t0"][p] for p in cpu_marks["t1"] if p in cpu_marks["t0"])
        # CPU seconds the whole service (Ray and all) used in the window: an efficiency measure
        # that background load on a shared machine does not distort the way wall-clock rates are
        served["cpu_seconds"] = round(cpu, 2)
        served["cores_used"] = cpu / args.duration
        served["processes"] = len(procs)
        served["pairs_per_cpu_s"] = served["pairs_per_s"] / served["cores_used"] if cpu > 0 else None
    deltas = {k: metrics_after.get(k, 0.0) - metrics_before.get(k, 0.0) for k in metrics_after}
    if deltas.get("prorank_batch_pairs_count"):
        served["mean_batch_pairs"] = deltas["prorank_batch_pairs_sum"] / deltas["prorank_batch_pairs_count"]
        served["mean_batch_requests"] = deltas["prorank_batch_chunks_sum"] / deltas["prorank_batch_chunks_count"]
    print(f"service: {served['requests_per_s']:.3f} req/s, {served['pairs_per_s']:.3f} pairs/s, "
          f"p50 {served['latency_s']['p50']:.2f}s p95 {served['latency_s']['p95']:.2f}s, errors {served['errors']}",
          file=sys.stderr)

    result: dict[str, Any] = {
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **environment(),
        "service": {"url": args.url, "model": info},
        "load": {"concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup,
                 "docs_per_request": args.docs_per_request, "dataset": portable_path(dataset), "seed": args.seed,
                 "loadavg_before": load_before, "loadavg_after": load_after,
                 "loadavg_after_in_process": None},
        "served": served,
    }
    if not args.skip_in_process and counted:
        pair_list = [(pool.requests[o.request][0], d) for o in counted for d in pool.requests[o.request][1]]
        local = in_process(info, pair_list, args.threads)
        result["load"]["loadavg_after_in_process"] = os.getloadavg()
        service_scores = [s for o in counted for s in o.scores]
        local["max_abs_score_diff_vs_service"] = max(abs(a - b) for a, b in zip(local.pop("scores"), service_scores))
        result["in_process"] = local
        ratio = served["pairs_per_s"] / local["pairs_per_s"]
        result["service_over_in_process"] = ratio
        result["target"] = {"ratio_at_least": 0.9, "zero_errors": True,
                            "met": ratio >= 0.9 and served["errors"] == 0}
        if served.get("pairs_per_cpu_s"):
            result["service_over_in_process_per_cpu_s"] = served["pairs_per_cpu_s"] / local["pairs_per_cpu_s"]
        print(f"in-process: {local['pairs_per_s']:.3f} pairs/s; service/in-process = {ratio:.3f}; "
              f"per CPU-second: {result.get('service_over_in_process_per_cpu_s', float('nan')):.3f}; "
              f"max |score diff| {local['max_abs_score_diff_vs_service']:.2e}", file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.out:
        from prorank.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0 if served["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
