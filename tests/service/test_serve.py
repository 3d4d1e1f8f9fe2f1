"""The reranking service over real HTTP: rerank, search and the service endpoints
(the applications are described in ``conftest.py``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from prorank.prompt import PROMPT_VERSION

from .clients import AUTH, MAX_LENGTH, calibrated, metric, texts


# --------------------------------------------------------------------------- rerank
@pytest.mark.parametrize("path,version", [("/v1/rerank", "1"), ("/v2/rerank", "2"), ("/rerank", "2")])
def test_rerank_schema_and_order(client, cranfield, tiny_reranker, path, version):
    docs = texts(cranfield, 6)
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
    expected = calibrated(tiny_reranker.score("supersonic flow over a wing", docs))  # the service's default scale
    for x in results:
        assert x["relevance_score"] == pytest.approx(expected[x["index"]], abs=1e-4)
    meta = body["meta"]
    assert meta["api_version"]["version"] == version
    assert meta["billed_units"]["search_units"] == 1
    tokens = meta["billed_units"]["input_tokens"]
    assert 6 * 50 < tokens <= 6 * MAX_LENGTH and body["usage"]["total_tokens"] == tokens


def test_top_n_and_return_documents(client, cranfield):
    docs = texts(cranfield, 5, start=10)
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
    requests = [(q, texts(cranfield, 1 + i % 4, start=20 * i)) for i, q in enumerate(queries)]
    before = {name: metric(client, name) for name in
              ("prorank_pairs_scored_total", "prorank_batch_chunks_count", "prorank_batch_chunks_sum")}

    async def fire():
        async with httpx.AsyncClient(base_url=service["url"], timeout=120) as ac:
            return await asyncio.gather(*[
                ac.post("/v1/rerank", json={"query": q, "documents": d}) for q, d in requests
            ])

    responses = asyncio.run(fire())
    for (q, d), r in zip(requests, responses):
        assert r.status_code == 200, r.text
        expected = calibrated(tiny_reranker.score(q, d))
        got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
        assert [got[i] for i in range(len(d))] == pytest.approx(expected, abs=1e-4)
    delta = {name: metric(client, name) - value for name, value in before.items()}
    assert delta["prorank_pairs_scored_total"] == sum(len(d) for _, d in requests)
    # 16 requests sent at once, batches wait 0.5 s to fill: some batch held several requests
    assert delta["prorank_batch_chunks_sum"] > delta["prorank_batch_chunks_count"], delta


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
    assert r.json()["results"][0]["relevance_score"] == pytest.approx(
        calibrated(tiny_reranker.score("transition", [cut]))[0], abs=1e-4)


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
    expected = dict(zip(bm25_ids, calibrated(tiny_reranker.score(query, [texts[d] for d in bm25_ids]))))
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(max(expected.values()), abs=1e-4)
    for x in results:
        assert x["docid"] in expected
        assert x["relevance_score"] == pytest.approx(expected[x["docid"]], abs=1e-4)
        assert x["model_score"] == x["relevance_score"]  # a plain model: no fusion
        assert x["bm25_score"] == pytest.approx(bm25[x["bm25_rank"] - 1].score, rel=1e-5)
        assert x["text"] == cranfield.corpus[x["docid"]]["text"]
    assert body["meta"]["billed_units"]["input_tokens"] > 0


def test_search_fuses_model_and_bm25_scores(client, cranfield, cranfield_index, tiny_model_dir):
    """The strict app fuses (interpolate, BM25 weight 0.3) the model's raw scores, as the weight is
    tuned, with BM25's: the ranking follows the fused score; model_score is on the app's scale (sigmoid)."""
    from prorank import Reranker
    from prorank.fusion import interpolate
    from prorank.retrieval.bm25 import BM25Searcher

    from .clients import AUTH

    query = cranfield.queries[sorted(cranfield.queries)[1]]
    r = client.post("/strict/v1/search", json={"query": query, "top_n": 20, "candidates": 20}, headers=AUTH)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    bm25 = BM25Searcher(cranfield_index).search(query, 20)
    strict_model = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=512)
    raw = strict_model.score(query, [cranfield.corpus[h.docid] for h in bm25])
    model = strict_model.score(query, [cranfield.corpus[h.docid] for h in bm25], normalize="sigmoid")
    fused = dict(zip([h.docid for h in bm25], interpolate(raw, [h.score for h in bm25], 0.3)))
    assert [x["docid"] for x in results] == sorted(fused, key=lambda d: (-fused[d], [h.docid for h in bm25].index(d)))
    for x in results:
        assert x["relevance_score"] == pytest.approx(fused[x["docid"]], abs=1e-4)
        assert x["model_score"] == pytest.approx(model[x["bm25_rank"] - 1], abs=1e-4)
    info = client.get("/strict/v1/models", headers=AUTH).json()
    assert info["data"][0]["fusion"] == {"method": "interpolate", "weight": 0.3}


def test_search_errors(client, service):
    assert client.post("/v1/search", json={"query": "q", "candidates": 201}).status_code == 422
    assert client.post("/v1/search", json={"query": ""}).status_code == 422
    r = client.post("/v1/search", json={"query": "zzzzqqqq"})
    assert r.status_code == 200 and r.json()["results"] == []
    r = client.post("/slow/v1/search", json={"query": "wing"})
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
    r = client.get("/strict/v1/models", headers=AUTH)
    assert r.status_code == 200 and r.json()["data"][0]["normalize"] is True
