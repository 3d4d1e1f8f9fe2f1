"""The reranking service over real HTTP: a real Ray Serve app on localhost.

One Ray instance for the whole module, two applications on it:

* ``main`` at ``/``: the tiny random model, a real BM25 index of cranfield, small limits
  (max_documents=50, max_request_bytes=1 MB) and chunks of 4 pairs batched up to 16 pairs.
* ``strict`` at ``/strict``: an API key, one request at a time with one queued, a 0.5 s request
  timeout and batches that wait 3 s to fill, so every scored request times out (504) and
  concurrent ones overflow the queue (503) without depending on machine speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml

from prorank.config import ConfigError
from prorank.prompt import PROMPT_VERSION
from prorank.serve.config import ServeConfig, config_from_args, load_serve_config

REPO = Path(__file__).resolve().parents[1]
API_KEY_ENV = "PRORANK_TEST_SERVE_KEY"
API_KEY = "test-key-0123456789"
MAX_LENGTH = 128


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cranfield(data_dir):
    from prorank.data import load_folder

    return load_folder(data_dir / "cranfield")


@pytest.fixture(scope="module")
def cranfield_index(tmp_path_factory, cranfield) -> Path:
    from prorank.retrieval.index import build_index

    return build_index(cranfield, tmp_path_factory.mktemp("serve-index") / "cranfield")


@pytest.fixture(scope="module")
def service(tiny_model_dir, cranfield_index):
    """Start Ray + Serve with both applications; shut everything down afterwards."""
    import psutil
    import ray
    from ray import serve

    from prorank.serve.app import build_app

    port = _free_port()
    os.environ[API_KEY_ENV] = API_KEY  # inherited by the Ray workers started below
    main_cfg = ServeConfig(
        model=str(tiny_model_dir), model_name="tiny", index=str(cranfield_index), port=port,
        max_length=MAX_LENGTH, batch_size=4, max_batch_size=16, batch_wait_timeout_s=0.5,
        num_cpus=0, max_documents=50, max_candidates=200, max_request_bytes=1_000_000,
        request_timeout_s=120, compile=True,  # the in-process comparisons below run eager
        streams=2,  # batches of 4 scored two at a time, each on a thread of its own
    )
    strict_cfg = ServeConfig(
        model=str(tiny_model_dir), model_name="tiny-strict", port=port, app_name="strict",
        route_prefix="/strict", max_length=MAX_LENGTH, batch_size=4, max_batch_size=1000,
        batch_wait_timeout_s=3.0, num_cpus=0, max_ongoing_requests=1, max_queued_requests=1,
        retry_after_s=2, request_timeout_s=0.5, api_key_env=API_KEY_ENV, normalize=True,
    )
    from prorank.retrieval import ensure_jvm

    ensure_jvm()  # this process runs Lucene too (the BM25 checks below)
    segv_handler = _sigsegv_handler()  # the JVM's SIGSEGV handler
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray's driver must not replace it (prorank.retrieval.java sets RAY_DISABLE_FAILURE_SIGNAL_HANDLER)
    assert _sigsegv_handler() == segv_handler
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(main_cfg), name="main", route_prefix="/")
        serve.run(build_app(strict_cfg), name="strict", route_prefix="/strict")
        yield {"url": f"http://127.0.0.1:{port}", "main": main_cfg, "strict": strict_cfg}
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop(API_KEY_ENV, None)
    deadline = time.time() + 30
    while psutil.Process().children(recursive=True) and time.time() < deadline:
        time.sleep(0.5)
    stray = [p.name() for p in psutil.Process().children(recursive=True)]
    assert not stray, f"processes left after shutdown: {stray}"


def _sigsegv_handler() -> int | None:
    """Address of this process's C-level SIGSEGV handler (sigaction query)."""
    import ctypes
    import signal

    class SigAction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                    ("restorer", ctypes.c_void_p)]

    old = SigAction()
    ctypes.CDLL(None).sigaction(signal.SIGSEGV, None, ctypes.byref(old))
    return old.handler


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service["url"], timeout=120) as c:
        yield c


def _docs(cranfield, n: int, start: int = 0) -> list[str]:
    ids = sorted(cranfield.corpus)[start : start + n]
    return [cranfield.corpus[i]["text"] for i in ids]


# --------------------------------------------------------------------------- rerank
@pytest.mark.parametrize("path,version", [("/v1/rerank", "1"), ("/v2/rerank", "2"), ("/rerank", "2")])
def test_rerank_schema_and_order(client, cranfield, tiny_reranker, path, version):
    docs = _docs(cranfield, 6)
    r = client.post(path, json={"query": "supersonic flow over a wing", "documents": docs, "model": "any-name"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "results", "meta", "usage"}
    assert body["model"] == "tiny" and body["id"]
    results = body["results"]
    assert sorted(x["index"] for x in results) == list(range(6))
    assert all(set(x) == {"index", "relevance_score"} for x in results)  # no document unless asked
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    expected = tiny_reranker.score("supersonic flow over a wing", docs)
    for x in results:
        assert x["relevance_score"] == pytest.approx(expected[x["index"]], abs=1e-4)
    meta = body["meta"]
    assert meta["api_version"]["version"] == version
    assert meta["billed_units"]["search_units"] == 1
    tokens = meta["billed_units"]["input_tokens"]
    assert 6 * 50 < tokens <= 6 * MAX_LENGTH and body["usage"]["total_tokens"] == tokens


def test_top_n_and_return_documents(client, cranfield):
    docs = _docs(cranfield, 5, start=10)
    docs[2] = {"text": docs[2], "title": "a title"}
    full = client.post("/v1/rerank", json={"query": "heat transfer", "documents": docs}).json()["results"]
    r = client.post("/v2/rerank", json={"query": "heat transfer", "documents": docs, "top_n": 2,
                                        "return_documents": True})
    assert r.status_code == 200, r.text
    top = r.json()["results"]
    assert [x["index"] for x in top] == [x["index"] for x in full[:2]]
    for x in top:
        given = docs[x["index"]]
        assert x["document"] == ({"text": given} if isinstance(given, str) else given)
    many = client.post("/rerank", json={"query": "heat transfer", "documents": docs, "top_n": 50})
    assert len(many.json()["results"]) == 5


def test_concurrent_requests_are_batched_and_match_in_process(service, client, cranfield, tiny_reranker):
    queries = [q for _, q in sorted(cranfield.queries.items())[:16]]
    # at most 4 documents (= one chunk) per request: a batch of several chunks mixes requests
    requests = [(q, _docs(cranfield, 1 + i % 4, start=20 * i)) for i, q in enumerate(queries)]
    before = {name: _metric(client, name) for name in
              ("prorank_pairs_scored_total", "prorank_batch_chunks_count", "prorank_batch_chunks_sum")}

    async def fire():
        async with httpx.AsyncClient(base_url=service["url"], timeout=120) as ac:
            return await asyncio.gather(*[
                ac.post("/v1/rerank", json={"query": q, "documents": d}) for q, d in requests
            ])

    responses = asyncio.run(fire())
    for (q, d), r in zip(requests, responses):
        assert r.status_code == 200, r.text
        expected = tiny_reranker.score(q, d)
        got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
        assert [got[i] for i in range(len(d))] == pytest.approx(expected, abs=1e-4)
    delta = {name: _metric(client, name) - value for name, value in before.items()}
    assert delta["prorank_pairs_scored_total"] == sum(len(d) for _, d in requests)
    # 16 requests sent at once, batches wait 0.5 s to fill: some batch held several requests
    assert delta["prorank_batch_chunks_sum"] > delta["prorank_batch_chunks_count"], delta


def _metric(client, name: str) -> float:
    text = client.get("/metrics").text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


def test_oversized_document_is_truncated_not_rejected(client):
    long_doc = "aerodynamic heating of blunt bodies " * 4000  # ~20k tokens
    r = client.post("/v1/rerank", json={"query": "heating", "documents": [long_doc, "short"]})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["billed_units"]["input_tokens"] <= 2 * MAX_LENGTH


def test_max_tokens_per_doc(client, tiny_reranker):
    doc = "boundary layer transition on a flat plate at high mach numbers " * 5
    r = client.post("/v1/rerank", json={"query": "transition", "documents": [doc], "max_tokens_per_doc": 5})
    assert r.status_code == 200, r.text
    tok = tiny_reranker.tokenizer
    cut = tok.decode(tok(doc, add_special_tokens=False)["input_ids"][:5])
    assert r.json()["results"][0]["relevance_score"] == pytest.approx(tiny_reranker.score("transition", [cut])[0], abs=1e-4)


# --------------------------------------------------------------------------- bad input
BAD = [
    ('{"query": "q", "documents": ["a"]', 400, "not valid JSON"),
    ("", 400, "empty"),
    ('["q"]', 422, "JSON object"),
    ('{"documents": ["a"]}', 422, "query: field required"),
    ('{"query": "  ", "documents": ["a"]}', 422, "query: must not be empty"),
    ('{"query": 3, "documents": ["a"]}', 422, "query"),
    ('{"query": "q", "documents": []}', 422, "at least one document"),
    ('{"query": "q", "documents": "a"}', 422, "must be a list"),
    ('{"query": "q", "documents": ["a", 7]}', 422, "item 1"),
    ('{"query": "q", "documents": [{"title": "t"}]}', 422, "'text'"),
    ('{"query": "q", "documents": [{"text": "t", "url": "u"}]}', 422, "unknown field"),
    ('{"query": "q", "documents": ["a"], "top_k": 3}', 422, "top_k: unknown field"),
    ('{"query": "q", "documents": ["a"], "top_n": 0}', 422, "top_n"),
    ('{"query": "q", "documents": ["a"], "top_n": "2"}', 422, "top_n"),
    ('{"query": "q", "documents": ["a"], "return_documents": "yes"}', 422, "return_documents"),
    ('{"query": "q", "documents": ["a"], "max_chunks_per_doc": 3}', 422, "max_chunks_per_doc"),
]


@pytest.mark.parametrize("body,status,message", BAD)
def test_bad_input_is_a_clear_4xx(client, body, status, message):
    r = client.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["message"]


def test_too_many_documents_and_too_large_body(client):
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 51})
    assert r.status_code == 422 and "max_documents" in r.json()["message"]
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["x" * 1_100_000]})
    assert r.status_code == 413 and "max_request_bytes" in r.json()["message"]


def test_instruction_too_long_fails_alone(client):
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["d"], "instruction": "word " * 500})
    assert r.status_code == 422 and "max_length" in r.json()["message"]


# --------------------------------------------------------------------------- search
def test_search_reranks_bm25_candidates(client, cranfield, cranfield_index, tiny_reranker):
    from prorank.retrieval.bm25 import BM25Searcher

    query = cranfield.queries[sorted(cranfield.queries)[0]]
    r = client.post("/v1/search", json={"query": query, "top_n": 5, "candidates": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert len(results) == 5 and body["index"] == str(cranfield_index)
    bm25 = BM25Searcher(cranfield_index).search(query, 20)
    bm25_ids = [h.docid for h in bm25]
    texts = {d: cranfield.corpus[d] for d in bm25_ids}
    expected = dict(zip(bm25_ids, tiny_reranker.score(query, [texts[d] for d in bm25_ids])))
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(max(expected.values()), abs=1e-4)
    for x in results:
        assert x["docid"] in expected
        assert x["relevance_score"] == pytest.approx(expected[x["docid"]], abs=1e-4)
        assert x["bm25_score"] == pytest.approx(bm25[x["bm25_rank"] - 1].score, rel=1e-5)
        assert x["text"] == cranfield.corpus[x["docid"]]["text"]
    assert body["meta"]["billed_units"]["input_tokens"] > 0


def test_search_errors(client, service):
    assert client.post("/v1/search", json={"query": "q", "candidates": 201}).status_code == 422
    assert client.post("/v1/search", json={"query": ""}).status_code == 422
    r = client.post("/v1/search", json={"query": "zzzzqqqq"})
    assert r.status_code == 200 and r.json()["results"] == []
    r = client.post("/strict/v1/search", json={"query": "wing"}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404 and "no BM25 index" in r.json()["message"]


# --------------------------------------------------------------------------- service endpoints
def test_health_models_metrics(client):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["model_loaded"] is True and health.json()["index_open"] is True
    models = client.get("/v1/models").json()["data"]
    assert models[0]["id"] == "tiny" and models[0]["max_length"] == MAX_LENGTH and models[0]["fingerprint"]
    assert models[0]["prompt_version"] == PROMPT_VERSION
    assert models[0]["compiled"] is True
    assert (models[0]["batch_size"], models[0]["streams"]) == (4, 2)
    text = client.get("/metrics").text
    for name in ("prorank_requests_total", "prorank_request_latency_seconds_bucket", "prorank_pairs_scored_total",
                 "prorank_batch_pairs_bucket", "prorank_documents_per_request_bucket"):
        assert name in text


def test_api_key(client):
    body = {"query": "wing", "documents": ["a"]}
    r = client.post("/strict/v1/rerank", json=body)
    assert r.status_code == 401 and "Bearer" in r.json()["message"]
    r = client.post("/strict/v1/rerank", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["message"] == "invalid API key"
    assert client.get("/strict/v1/models").status_code == 401
    assert client.get("/strict/health").status_code == 200  # probes need no key
    r = client.get("/strict/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200 and r.json()["data"][0]["normalize"] is True


def test_timeout_is_504_and_service_recovers(client):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    r = client.post("/strict/v1/rerank", json={"query": "wing", "documents": ["a", "b"]}, headers=headers)
    assert r.status_code == 504 and "request_timeout_s" in r.json()["message"]
    assert client.get("/strict/health").status_code == 200


def test_overload_is_503_and_service_recovers(service, client):
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def fire():
        async with httpx.AsyncClient(base_url=service["url"], timeout=60, headers=headers) as ac:
            return await asyncio.gather(*[
                ac.post("/strict/v1/rerank", json={"query": f"q{i}", "documents": ["a"]}) for i in range(8)
            ])

    responses = asyncio.run(fire())
    codes = [r.status_code for r in responses]
    # one request runs, one waits in the proxy's queue, the others are turned away at once;
    # the admitted ones time out (every strict batch waits 3 s, the timeout is 0.5 s)
    assert 503 in codes and set(codes) <= {503, 504}, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers.get("retry-after") == "2"
    assert client.get("/strict/health").status_code == 200


def test_still_serving_after_errors(client):
    r = client.post("/v1/rerank", json={"query": "wing", "documents": ["a wing", "a slab"]})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    counts = client.get("/metrics").text
    assert 'status="422"' in counts and 'status="200"' in counts


# --------------------------------------------------------------------------- config
def test_config_files_work_for_both_launchers():
    from ray.serve.schema import ServeDeploySchema

    from prorank.serve.app import app_builder

    for name in ("serve.yaml", "serve-gpu.yaml"):
        path = REPO / "configs" / name
        ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))  # valid for `serve deploy`
        cfg = load_serve_config(path, ["--port", "9001", "max_batch_size=32", "--index", "/x"])
        assert (cfg.host, cfg.port, cfg.max_batch_size, cfg.index) == ("127.0.0.1", 9001, 32, "/x")
        assert cfg.model == "smollm2-135m-instruct"
        args = yaml.safe_load(path.read_text())["applications"][0]["args"]
        assert config_from_args(args) == load_serve_config(path)
        assert app_builder({"config": str(path)}) is not None


def test_default_config_file_equals_the_built_in_defaults():
    # `prorank serve` and `prorank serve --config configs/serve.yaml` run the same service
    assert load_serve_config(REPO / "configs" / "serve.yaml") == ServeConfig()


def test_cli_builds_the_config_from_yaml_and_overrides():
    from prorank.cli import build_parser
    from prorank.cli.serve import config_from_namespace

    args = build_parser().parse_args([
        "serve", "--config", str(REPO / "configs" / "serve.yaml"), "--port", "9005", "--max-length", "64",
        "--normalize", "--index", "/x", "max_batch_size=8", "autoscaling.max_replicas=3",
    ])
    cfg = config_from_namespace(args)
    assert (cfg.port, cfg.max_length, cfg.normalize, cfg.index, cfg.max_batch_size) == (9005, 64, True, "/x", 8)
    assert cfg.autoscaling == {"max_replicas": 3} and cfg.host == "127.0.0.1"


def test_missing_model_or_index_fails_before_starting(tmp_path):
    from prorank.serve.app import check_paths

    with pytest.raises(ConfigError, match="model"):
        check_paths(ServeConfig(model=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="not a Lucene index"):
        check_paths(ServeConfig(index=str(tmp_path)))


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="max_batchsize"):
        load_serve_config(None, ["max_batchsize=3"])
    with pytest.raises(ConfigError, match="port"):
        ServeConfig(port=0)
    for field in ("batch_size", "streams"):
        with pytest.raises(ConfigError, match=field):
            ServeConfig(**{field: 0})
    # no batch_size: a request is cut into whole dynamic batches, the model splits them
    assert (ServeConfig().chunk_size, ServeConfig(batch_size=4).chunk_size) == (32, 4)
    with pytest.raises(ConfigError, match="NO_SUCH_VAR_FOR_PRORANK"):
        ServeConfig(api_key_env="NO_SUCH_VAR_FOR_PRORANK").api_key()
    flat = tmp_path / "flat.yaml"
    flat.write_text(json.dumps({"model": "m", "port": 9002}))
    assert load_serve_config(flat).port == 9002
