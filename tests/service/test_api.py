"""The published API: the OpenAPI document (checked by schemathesis against the live service),
the docs pages behind the API key, and the Cohere SDK's own clients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .clients import API_KEY, AUTH

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_document(client, service):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    refs = set(_refs(spec))
    assert refs and all(ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas for ref in refs)
    assert "$defs" not in str(spec)
    rerank = schemas["RerankRequest"]["properties"]
    assert rerank["query"]["minLength"] == 1
    assert (rerank["documents"]["minItems"], rerank["documents"]["maxItems"]) == (1, service["main"].max_documents)
    assert schemas["SearchRequest"]["properties"]["candidates"]["maximum"] == service["main"].max_candidates
    for path in RERANK_PATHS:
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "413", "422", "503", "504"} <= set(responses) and "401" not in responses
        assert responses["503"]["headers"]["Retry-After"]
    assert set(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "security" not in spec  # no API key on this deployment

    strict = client.get("/strict/openapi.json", headers=AUTH).json()
    assert strict["servers"] == [{"url": "/strict"}] and strict["security"] == [{"bearer": []}]
    assert strict["paths"]["/health"]["get"]["security"] == []
    assert "401" in strict["paths"]["/v1/rerank"]["post"]["responses"]


def test_docs_need_the_api_key_when_one_is_set(client):
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 200  # no key on this deployment
        r = client.get(f"/strict{path}")
        assert r.status_code == 401 and "Bearer" in r.json()["message"]
        assert client.get(f"/strict{path}", headers=AUTH).status_code == 200
    page = client.get("/strict/docs", headers=AUTH).text
    assert "/strict/openapi.json" in page


def test_schemathesis_finds_nothing(service, tmp_path):
    """Every check schemathesis has, on every operation of the key-protected deployment (which
    has an index, a max_length with room for any instruction, and small limits): no failure,
    no 5xx. A fixed seed and a bounded number of examples keep it reproducible. "all" includes a
    response-time check (10 s by default): its limit is raised far above the service's own request
    timeout, since a loaded CI machine measures nothing about speed (the load test does)."""
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{service['url']}/strict/openapi.json",
           "--checks", "all", "--max-response-time", "600", "--max-examples", "25", "--seed", "1", "--workers", "1", "--no-color",
           "--header", f"Authorization: Bearer {API_KEY}", "--request-timeout", "60",
           "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=1200)
    assert run.returncode == 0 and "No issues found" in run.stdout, run.stdout[-8000:] + run.stderr[-2000:]


# --------------------------------------------------------------------------- Cohere SDK
@pytest.fixture
def cohere_clients(service):
    import cohere

    base = f"{service['url']}/strict"
    return cohere.Client(api_key=API_KEY, base_url=base), cohere.ClientV2(api_key=API_KEY, base_url=base)


def test_cohere_sdk_parameters(cohere_clients):
    v1, v2 = cohere_clients
    documents = ["Paris is the capital of France.", "Bananas are rich in potassium."]
    r = v2.rerank(model="tiny", query="capital of France", documents=documents, top_n=1, priority=0)
    assert len(r.results) == 1 and r.results[0].index in (0, 1)

    given = [{"text": "Paris is the capital of France.", "id": "0", "lang": "en"},
             {"text": "Bananas are rich in potassium.", "id": "1", "source": {"kind": "web"}}]
    r = v1.rerank(model="tiny", query="capital of France", documents=given, return_documents=True,
                  rank_fields=["text"])
    assert sorted(x.index for x in r.results) == [0, 1]
    for x in r.results:
        assert x.document.dict() == given[x.index]  # extra keys come back as sent


def test_rank_fields_choose_what_the_model_reads(client):
    docs = [{"text": "bananas", "title": "Paris, capital of France", "summary": "Paris"},
            {"text": "Paris, capital of France", "title": "bananas", "summary": "bananas"}]
    query = {"query": "capital of France", "return_documents": True}

    def scores(**extra):
        r = client.post("/v1/rerank", json={**query, "documents": docs, **extra})
        assert r.status_code == 200, r.text
        return [x["relevance_score"] for x in sorted(r.json()["results"], key=lambda x: x["index"])]

    text_only = scores(rank_fields=["text"])
    assert text_only == pytest.approx(scores(documents=[d["text"] for d in docs]), abs=1e-4)
    assert scores(rank_fields=["title", "text"]) == pytest.approx(scores(), abs=1e-4)  # the default
    assert scores(rank_fields=["summary"]) == pytest.approx(scores(documents=[d["summary"] for d in docs]), abs=1e-4)
    assert scores(rank_fields=["missing", "text"]) == pytest.approx(text_only, abs=1e-4)  # missing: skipped
    assert text_only != pytest.approx(scores(), abs=1e-4)  # the title did change what was read
