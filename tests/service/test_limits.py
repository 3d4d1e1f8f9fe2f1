"""Overload (503), timeouts (504) and cancellation, made deterministic: requests are held open
by the test (a body one byte short) instead of racing the clock."""

from __future__ import annotations

import asyncio

import httpx

from .clients import AUTH, HeldRequest, metric, wait_until

SMALL = {"query": "wing", "documents": ["a wing", "a slab"]}


def test_overload_is_503_json_and_the_limits_are_exact(service, client):
    """strict: max_ongoing_requests=2, max_queued_requests=1. Three held requests fill both
    slots and the queue; every other scoring request gets 503 at once; then all recover."""
    held = [HeldRequest(service["port"], "/strict/v1/rerank", SMALL, AUTH) for _ in range(3)]
    queued = lambda: metric(client, "prorank_requests_queued", "/strict", AUTH)  # noqa: E731
    wait_until(lambda: queued() == 1, "two requests working and one waiting")

    async def fire():
        async with httpx.AsyncClient(base_url=service["url"], timeout=60, headers=AUTH) as ac:
            return await asyncio.gather(*[ac.post(path, json=SMALL) for path in
                                          ["/strict/v1/rerank", "/strict/v2/rerank", "/strict/rerank"] * 3])

    rejected = asyncio.run(fire())
    assert [r.status_code for r in rejected] == [503] * 9
    for r in rejected:
        assert r.headers["retry-after"] == "2" and r.headers["content-type"] == "application/json"
        assert "overloaded" in r.json()["message"] and set(r.json()) == {"message"}
    r = client.post("/strict/v1/search", json={"query": "wing"}, headers=AUTH)
    assert r.status_code == 503  # search scores too: same slots
    assert client.get("/strict/health").status_code == 200  # probes are never turned away
    assert client.get("/strict/v1/models", headers=AUTH).status_code == 200

    for request in held:
        request.finish()
    for request in held:
        status, _, body = request.response()
        assert status == 200 and len(body["results"]) == 2, body
    assert queued() == 0
    assert client.post("/strict/v1/rerank", json=SMALL, headers=AUTH).status_code == 200


def test_timeout_is_504_and_service_recovers(service, client):
    held = HeldRequest(service["port"], "/slow/v1/rerank", SMALL)  # never finished: outlasts 3 s
    status, _, body = held.response()
    assert status == 504 and "request_timeout_s" in body["message"] and set(body) == {"message"}
    assert client.get("/slow/health").status_code == 200
    r = client.post("/slow/v1/rerank", json=SMALL)
    assert r.status_code == 200, r.text


def test_timed_out_request_frees_the_model(service, client):
    """2,000 long documents take the slow app's model far longer than its 3 s timeout (one
    batch, one-pair forward passes on one thread); after the 504 the model drops the rest, so
    a small request right after it is scored within its own 3 s."""
    long_doc = "the boundary layer of a swept wing in supersonic flow separates near the leading edge " * 40
    r = client.post("/slow/v1/rerank", json={"query": "boundary layer", "documents": [long_doc] * 2000})
    assert r.status_code == 504, r.text
    for _ in range(3):
        r = client.post("/slow/v1/rerank", json=SMALL)
        assert r.status_code == 200, r.text
