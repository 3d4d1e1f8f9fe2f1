"""A real Ray Serve instance on localhost for the service tests: one Ray, three applications.

* ``main`` at ``/``: the tiny random model with a calibration file (the service's default scale:
  calibrated; ``clients.MAIN_CALIBRATION``), a real BM25 index of cranfield, small limits
  (max_documents=50, max_request_bytes=1 MB) and chunks of 4 pairs batched up to 16 pairs.
* ``strict`` at ``/strict``: an API key, the same index, max_length 512 (room for any
  instruction a schema-driven test sends), at most 2 scoring requests at a time with 1 waiting,
  /v1/search fusing the model's scores with BM25's (interpolate, BM25 weight 0.3), scores on the
  sigmoid scale (``normalize: true``, as before calibrations).
* ``slow`` at ``/slow``: a 3 s request timeout, one-pair forward passes on one thread, and room
  for 2,000 long documents in one batch, so a large request outlasts its timeout on any machine;
  raw scores (``normalize: false``, the config option for them).

Ray is started by the service's own ``init_ray`` (loopback only) and shut down after the last
test of this folder.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from prorank.serve.config import ServeConfig

from .clients import API_KEY, API_KEY_ENV, MAIN_CALIBRATION, MAX_LENGTH


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def cranfield(data_dir):
    from prorank.data import load_folder

    return load_folder(data_dir / "cranfield")


@pytest.fixture(scope="package")
def cranfield_index(tmp_path_factory, cranfield) -> Path:
    from prorank.retrieval.index import build_index

    return build_index(cranfield, tmp_path_factory.mktemp("serve-index") / "cranfield")


@pytest.fixture(scope="package")
def main_calibration(tmp_path_factory, tiny_reranker) -> Path:
    """The main app's calibration file, for the tiny model at MAX_LENGTH tokens (its fingerprint)."""
    from prorank.calibration import Calibration

    assert tiny_reranker.max_length == MAX_LENGTH
    a, b = MAIN_CALIBRATION
    return Calibration(a, b, fitted_on={"note": "fixed for the service tests"},
                       model={"fingerprint": tiny_reranker.fingerprint}).save(
        tmp_path_factory.mktemp("calibration") / "tiny.json")


@pytest.fixture(scope="package")
def service(tiny_model_dir, cranfield_index, main_calibration):
    """Start Ray + Serve with the three applications; shut everything down afterwards."""
    import psutil
    import ray
    from ray import serve

    from prorank.serve.app import build_app, init_ray

    port = _free_port()
    os.environ[API_KEY_ENV] = API_KEY  # inherited by the Ray workers started below
    tiny = {"model": str(tiny_model_dir), "port": port, "num_cpus": 0}
    main_cfg = ServeConfig(
        **tiny, model_name="tiny", index=str(cranfield_index),
        max_batch_size=16, batch_wait_timeout_s=0.5,
        max_documents=50, max_candidates=200, max_request_bytes=1_000_000, request_timeout_s=120,
        reranker={"max_length": MAX_LENGTH, "batch_size": 4,
                  "compile": True,  # the in-process comparisons run eager
                  "streams": 2,  # batches of 4 scored two at a time, each on a thread of its own
                  "calibration": str(main_calibration)},  # normalize: the service's default, calibrated
    )
    strict_cfg = ServeConfig(
        **tiny, model_name="tiny-strict", app_name="strict", route_prefix="/strict", index=str(cranfield_index),
        max_batch_size=16, max_documents=20, max_candidates=50,
        max_ongoing_requests=2, max_queued_requests=1, retry_after_s=2, request_timeout_s=120,
        api_key_env=API_KEY_ENV,
        reranker={"max_length": 512, "batch_size": 4, "normalize": True, "fusion": "interpolate",
                  "fusion_weight": 0.3},
    )
    slow_cfg = ServeConfig(
        **tiny, model_name="tiny-slow", app_name="slow", route_prefix="/slow",
        reranker={"max_length": 512, "streams": 1, "normalize": False}, num_threads=1, max_batch_size=2000, max_documents=2000, request_timeout_s=3,
    )
    from prorank.retrieval import ensure_jvm, jvm_signals
    from prorank.retrieval.java import shutdown_ray_beside_jvm

    ensure_jvm()  # this process runs Lucene too (the BM25 checks)
    jvm = jvm_signals.handler(signal.SIGSEGV)  # the JVM's SIGSEGV handler
    init_ray(main_cfg, num_cpus=2, log_to_driver=False)
    assert jvm_signals.handler(signal.SIGSEGV) == jvm  # Ray's driver must not replace it
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for cfg in (main_cfg, strict_cfg, slow_cfg):
            serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix)
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "main": main_cfg, "strict": strict_cfg,
               "slow": slow_cfg}
    finally:
        serve.shutdown()
        shutdown_ray_beside_jvm(ray.shutdown)
        os.environ.pop(API_KEY_ENV, None)
    deadline = time.time() + 30
    while psutil.Process().children(recursive=True) and time.time() < deadline:
        time.sleep(0.5)
    stray = [p.name() for p in psutil.Process().children(recursive=True)]
    assert not stray, f"processes left after shutdown: {stray}"


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service["url"], timeout=120) as c:
        yield c
