"""Bad input of every kind: a clear 4xx naming the field, never a 5xx, never internals in a
body, and the service keeps serving."""

from __future__ import annotations

import json

import pytest

from .clients import AUTH, metric

BAD = [
    ('{"query": "q", "documents": ["a"]', 400, "not valid JSON"),
    ("", 400, "empty"),
    ('["q"]', 422, "must be a JSON object, got array"),
    ('{"documents": ["a"]}', 422, "query: field required"),
    ('{"query": "  ", "documents": ["a"]}', 422, "query: must not be empty"),
    ('{"query": 3, "documents": ["a"]}', 422, "query: Input should be a valid string, got number"),
    ('{"query": null, "documents": ["a"]}', 422, "query: Input should be a valid string, got null"),
    ('{"query": "q", "documents": []}', 422, "at least one document"),
    ('{"query": "q", "documents": "a"}', 422, "must be a list"),
    ('{"query": "q", "documents": ["a", 7]}', 422, "item 1"),
    ('{"query": "q", "documents": ["a", null]}', 422, "item 1 must be a string or an object"),
    ('{"query": "q", "documents": [{"title": "t"}]}', 422, "'text'"),
    ('{"query": "q", "documents": [{"text": "t", "title": 3}]}', 422, "'title' must be a string or null, got number"),
    ('{"query": "q", "documents": ["a"], "top_k": 3}', 422, "top_k: unknown field"),
    ('{"query": "q", "documents": ["a"], "top_n": 0}', 422, "top_n"),
    ('{"query": "q", "documents": ["a"], "top_n": "2"}', 422, "top_n"),
    ('{"query": "q", "documents": ["a"], "return_documents": "yes"}', 422, "return_documents"),
    ('{"query": "q", "documents": ["a"], "max_chunks_per_doc": 3}', 422, "max_chunks_per_doc"),
    ('{"query": "q", "documents": ["a"], "rank_fields": []}', 422, "rank_fields"),
    ('{"query": "q", "documents": [{"text": "a", "x": NaN}]}', 400, "NaN is not JSON"),
    ('{"query": "q", "documents": [{"text": "a", "x": 1e999}]}', 400, "1e999 is not a finite number"),
    ('{"query": "q", "documents": ' + "[" * 10_000 + "]" * 10_000 + "}", 400, "nested deeper than 64 levels"),
    ('{"query": "q", "documents": [{"text": "a", "x": ' + "[" * 70 + "]" * 70 + "}]}", 400, "nested deeper"),
]
# lone UTF-16 surrogates are legal JSON escapes but not text: 422 naming the field
SURROGATES = [
    ("/v1/rerank", {"query": "time\ud800", "documents": ["a"]}, "query"),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b\udfff"]}, "documents.1"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a\ud800b"}]}, "documents.0.text"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a", "title": "\ud800"}]}, "documents.0.title"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "instruction": "rank \udbff"}, "instruction"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a", "\ud800": 1}]}, "documents.0.\\ud800"),
    ("/v1/search", {"query": "time\ud800"}, "query"),
]
INTERNALS = ("Traceback", 'File "', ".py", "site-packages", "pid=", "actor", "ray::", "/work/", "/tmp/")


def _post(client, path, body):
    content = body if isinstance(body, str) else json.dumps(body)  # json escapes lone surrogates as \ud800
    return client.post(path, content=content, headers={"content-type": "application/json"})


def _assert_clean(r) -> None:
    body = r.json()
    assert set(body) == {"message"}, body
    assert not [word for word in INTERNALS if word in body["message"]], body["message"]


@pytest.mark.parametrize("body,status,message", BAD)
def test_bad_input_is_a_clear_4xx(client, body, status, message):
    r = _post(client, "/v1/rerank", body)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]
    _assert_clean(r)


@pytest.mark.parametrize("path,body,field", SURROGATES)
def test_lone_surrogates_are_422_naming_the_field(client, path, body, field):
    r = _post(client, path, body)
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert message.startswith(f"{field}: ") and "lone UTF-16 surrogate" in message, message
    _assert_clean(r)


def test_too_many_documents_and_too_large_body(client):
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 51})
    assert r.status_code == 422 and "max_documents" in r.json()["message"]
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["x" * 1_100_000]})
    assert r.status_code == 413 and "max_request_bytes" in r.json()["message"]


def test_instruction_too_long_fails_alone(client):
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["d"], "instruction": "word " * 500})
    assert r.status_code == 422 and "max_length" in r.json()["message"]


def test_unknown_path_and_wrong_method_answer_with_message(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and "/v1/nothing-here" in r.json()["message"]
    _assert_clean(r)
    r = client.get("/v1/rerank")
    assert r.status_code == 405 and "GET" in r.json()["message"] and r.headers["allow"] == "POST"
    _assert_clean(r)
    r = client.get("/strict/v1/nothing-here", headers=AUTH)
    assert r.status_code == 404 and set(r.json()) == {"message"}


def test_still_serving_after_errors(client):
    """Every bad input above, then a good request: all answered, each counted once."""
    def count(status: str) -> float:
        return metric(client, f'prorank_requests_total{{endpoint="/v1/rerank",status="{status}"}}')

    before = {status: count(status) for status in ("200", "400", "422")}
    cases = [(body, status) for body, status, _ in BAD] + [(body, 422) for path, body, _ in SURROGATES
                                                          if path == "/v1/rerank"]
    for body, status in cases:
        assert _post(client, "/v1/rerank", body).status_code == status
    r = client.post("/v1/rerank", json={"query": "wing", "documents": ["a wing", "a slab"]})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    assert count("200") - before["200"] == 1
    assert count("400") - before["400"] == sum(status == 400 for _, status in cases)
    assert count("422") - before["422"] == sum(status == 422 for _, status in cases)
