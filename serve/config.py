"""``ServeConfig``: every knob of the reranking service, and the loader for its YAML file.

One file drives both launchers. ``configs/serve.yaml`` is a Ray Serve config file (the format of
``serve run`` / ``serve deploy``): ``http_options`` holds host and port, the single application's
``args`` block holds the ``ServeConfig`` fields (keys == field names) and its ``import_path``
points at :func:`prorank.serve.app.app_builder`. ``prorank serve --config configs/serve.yaml``
reads the same file through :func:`load_serve_config`; a flat YAML of ``ServeConfig`` fields is
accepted too. Command-line overrides (``--port 9000 max_batch_size=32``) address the flat
field names in either layout.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from prorank.config import ConfigError, apply_overrides, check_positive, from_dict, nested, option, read_yaml
from prorank.options import RerankerOptions
from prorank.registry import DEFAULT_MODEL

IMPORT_PATH = "prorank.serve.app:app_builder"
# the scale of relevance_score unless the config says otherwise: P(relevant), in [0, 1], which a RAG
# client's threshold needs (a model without a calibration: set reranker.normalize, or run `prorank calibrate`)
SERVE_NORMALIZE = "calibrated"


def serve_reranker_options() -> RerankerOptions:
    """The service's default ``reranker`` block: ``RerankerOptions``' defaults, calibrated scores."""
    return RerankerOptions(normalize=SERVE_NORMALIZE)


@dataclass
class ServeConfig:
    """Settings of one reranking application (model, index, batching, scaling, limits)."""

    # -- what is served
    model: str = option(DEFAULT_MODEL, "alias, hub id, local folder, .gguf or checkpoint to serve")
    model_name: str | None = option(None, "name reported in responses and /v1/models (default: model)")
    index: str | None = option(None, "pyserini BM25 index folder (from `prorank index`) for /v1/search")
    # -- where it listens (ignored under `serve run`/`serve deploy`: http_options rule there)
    host: str = option("127.0.0.1", "HTTP address; 0.0.0.0 listens on every interface, and then so do "
                       "the ports of a Ray started here (else they stay on loopback)")
    port: int = option(8000, "HTTP port")
    app_name: str = option("prorank", "Ray Serve application name")
    route_prefix: str = option("/", "URL prefix of every endpoint")
    # -- the model replica
    reranker: RerankerOptions = dataclasses.field(
        default_factory=serve_reranker_options,
        metadata={"help": "device, dtype, max_length, batch_size, streams, compile, normalize (here by default "
                  "calibrated: relevance_score = P(relevant) in [0, 1]; false: the raw score, which a request "
                  "also gets with raw_scores: true), calibration, fusion, ... (prorank.options.RerankerOptions; "
                  "flags --max-length, --normalize, ...)"})
    num_threads: int | None = option(None, "torch threads per replica (default: every core the replica sees)")
    # -- dynamic batching across concurrent requests (@serve.batch)
    max_batch_size: int = option(32, "pairs per batched model call (requests are cut into chunks of at most this)")
    batch_wait_timeout_s: float = option(0.05, "seconds a batch waits to fill")
    # -- scaling and resources
    num_replicas: int = option(1, "model replicas (ignored when autoscaling is set)")
    autoscaling: dict | None = option(None, "Ray Serve autoscaling_config (min_replicas, max_replicas, ...)")
    num_gpus: float = option(0.0, "GPUs per model replica; fractions share a GPU (e.g. 0.5)")
    num_cpus: float = option(1.0, "CPUs reserved per model replica")
    ingress_replicas: int = option(1, "FastAPI ingress replicas (the limits below are per ingress replica)")
    # -- limits and overload
    max_documents: int = option(1000, "documents per rerank request; more: 422")
    max_candidates: int = option(1000, "BM25 depth per search request; more: 422")
    max_request_bytes: int = option(16 * 1024 * 1024, "request bodies above this get 413")
    max_ongoing_requests: int = option(64, "scoring requests one ingress replica works on at once")
    max_queued_requests: int = option(64, "scoring requests waiting for one of those slots (-1: no limit); "
                                      "beyond this: 503")
    retry_after_s: int = option(1, "Retry-After header of 503 responses, in seconds")
    request_timeout_s: float = option(300.0, "per request, waiting for a slot included; beyond this: 504 "
                                      "and the remaining work is cancelled")
    api_key_env: str | None = option(None, "name of an environment variable holding the API key "
                                     "(then every endpoint but /health needs 'Authorization: Bearer <key>')")
    # -- Ray
    ray_address: str | None = option(None, "existing cluster to join, 'auto' or 'ray://...' (default: start a local one)")
    dashboard: bool = option(False, "start the Ray dashboard (on 127.0.0.1) with a local cluster")

    def __post_init__(self) -> None:
        positive_ints = (
            "port", "max_batch_size", "ingress_replicas",
            "max_documents", "max_candidates", "max_request_bytes", "max_ongoing_requests",
        )
        for name in positive_ints:
            check_positive(name, getattr(self, name), error=ConfigError, where="serve config: ")
        if isinstance(self.reranker, dict):  # a block given in code keeps the service's defaults, as in YAML
            self.reranker = {**dataclasses.asdict(serve_reranker_options()), **self.reranker}
        self.reranker = nested(self.reranker, RerankerOptions, "serve config: reranker")
        if self.port > 65535:
            raise ConfigError(f"serve config: port must be <= 65535, got {self.port}")
        if self.max_queued_requests < -1:
            raise ConfigError("serve config: max_queued_requests must be >= 0, or -1 for no limit")
        if self.num_replicas < 1 and self.autoscaling is None:
            raise ConfigError("serve config: num_replicas must be >= 1")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("serve config: num_threads must be >= 1 or null")
        for name in ("batch_wait_timeout_s", "num_gpus", "num_cpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"serve config: {name} must be >= 0")
        if self.request_timeout_s <= 0:
            raise ConfigError("serve config: request_timeout_s must be > 0")
        if self.retry_after_s < 0:
            raise ConfigError("serve config: retry_after_s must be >= 0")
        if not self.route_prefix.startswith("/"):
            raise ConfigError(f"serve config: route_prefix must start with '/', got {self.route_prefix!r}")
        if self.api_key_env is not None and not self.api_key_env.strip():
            raise ConfigError("serve config: api_key_env must name an environment variable or be null")

    @property
    def served_name(self) -> str:
        return self.model_name or self.model

    @property
    def chunk_size(self) -> int:
        """Pairs per call from the ingress to the model (a request is cut into such chunks):
        ``batch_size`` when set, else a whole dynamic batch (the model splits it into batches)."""
        return min(self.reranker.batch_size or self.max_batch_size, self.max_batch_size)

    def api_key(self) -> str | None:
        """The API key from ``api_key_env`` (None when auth is off); raises if the variable is unset."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"serve config: api_key_env={self.api_key_env!r} but that environment variable "
                "is unset or empty (set it, or set api_key_env to null to disable auth)"
            )
        return key


def _flatten_serve_yaml(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn a Ray Serve config file (one ProRank application) into flat ``ServeConfig`` fields."""
    apps = data.get("applications")
    if not isinstance(apps, list) or len(apps) != 1 or not isinstance(apps[0], dict):
        raise ConfigError(f"{source}: 'applications' must hold exactly one application")
    app = apps[0]
    if app.get("import_path") != IMPORT_PATH:
        raise ConfigError(
            f"{source}: applications[0].import_path must be {IMPORT_PATH!r}, got {app.get('import_path')!r}"
        )
    args = app.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{source}: applications[0].args must be a mapping")
    flat = dict(args)
    http = data.get("http_options") or {}
    for key in ("host", "port"):
        if key in http:
            if key in flat and flat[key] != http[key]:
                raise ConfigError(f"{source}: {key} differs between http_options and args")
            flat[key] = http[key]
    if "name" in app:
        flat.setdefault("app_name", app["name"])
    if "route_prefix" in app:
        flat.setdefault("route_prefix", app["route_prefix"])
    return flat


def load_serve_config(
    path: str | Path | None = None, overrides: Sequence[str] | dict[str, Any] | None = None
) -> ServeConfig:
    """Read a Ray Serve config file or a flat ``ServeConfig`` YAML, then apply ``overrides``."""
    data: dict[str, Any] = {}
    source = "serve config"
    if path is not None:
        source = str(path)
        loaded = read_yaml(path)
        data = _flatten_serve_yaml(loaded, source) if "applications" in loaded else loaded
    return from_dict(ServeConfig, apply_overrides(data, overrides), source)


def config_from_args(args: dict[str, Any] | None) -> ServeConfig:
    """``ServeConfig`` from the ``args`` Ray passes to the application builder.

    ``args`` holds ``ServeConfig`` fields, or ``{"config": "path/to/serve.yaml", **overrides}``
    (for ``serve run prorank.serve.app:app_builder config=configs/serve.yaml``).
    """
    args = dict(args or {})
    path = args.pop("config", None)
    if path is not None:
        return load_serve_config(path, args)
    return from_dict(ServeConfig, args, "application args")


def config_dict(cfg: ServeConfig) -> dict[str, Any]:
    """Plain dict of ``cfg`` (what the deployments receive)."""
    return dataclasses.asdict(cfg)
