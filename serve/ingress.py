"""The FastAPI ingress: HTTP endpoints, validation, auth, timeouts, metrics.

Endpoints: ``POST /v1/rerank``, ``/v2/rerank``, ``/rerank`` (Cohere/Jina schema),
``POST /v1/search`` (BM25 + rerank), ``GET /health``, ``GET /v1/models``, ``GET /metrics``.
Errors are JSON ``{"message": ...}`` (Cohere's error shape): 400 broken JSON, 401 missing or
wrong API key, 404 no index, 413 body too large, 422 invalid request, 503 overloaded, 504 timed
out. (No ``from __future__ import annotations`` here: FastAPI must see the real ``Request``
type on the handlers.) This process never imports torch: requests are validated here and scored by the model
deployment, in chunks, so a large request is spread over batches (and replicas).
"""

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from prorank.config import from_dict
from prorank.prompt import document_text
from prorank.serve.config import ServeConfig
from prorank.serve.metrics import ServiceMetrics
from prorank.serve.model import ScoreChunk, ScoreResult
from prorank.serve.schemas import (
    RerankRequest,
    SearchRequest,
    describe_validation_error,
    document_payload,
    meta,
    prompt_text,
)

logger = logging.getLogger("ray.serve")
M = TypeVar("M", bound=BaseModel)

api = FastAPI(
    title="ProRank reranker",
    description="Cohere/Jina-compatible reranking with small language models, plus BM25 search.",
    version="1",
)


class HTTPError(Exception):
    """An error answered as ``{"message": ...}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for handlers that parse the body themselves."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """Routes HTTP requests to the model (and BM25) deployments."""

    def __init__(self, cfg: dict[str, Any], model: DeploymentHandle, retriever: DeploymentHandle | None) -> None:
        self.cfg = from_dict(ServeConfig, cfg, "serve config")
        self._api_key = self.cfg.api_key()  # raises if api_key_env names an unset variable
        self.model = model
        self.retriever = retriever
        self.metrics = ServiceMetrics()
        self._model_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing
    async def _run(self, endpoint: str, request: Request, work: Callable[[], Awaitable[Response]],
                   auth: bool = True, timeout: bool = True) -> Response:
        """Auth, timeout, error mapping and metrics around one handler."""
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            if auth:
                self._authorize(request)
            if timeout:
                try:
                    response = await asyncio.wait_for(work(), self.cfg.request_timeout_s)
                except asyncio.TimeoutError:
                    raise HTTPError(
                        504, f"request timed out after {self.cfg.request_timeout_s:g}s (request_timeout_s); "
                        "send fewer documents or retry later"
                    ) from None
            else:
                response = await work()
        except HTTPError as err:
            response = JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)
        except BackPressureError:
            response = self._overloaded()
        except DeploymentUnavailableError as err:
            response = JSONResponse({"message": f"model unavailable: {err}"}, status_code=503)
        except Exception as err:  # noqa: BLE001 - answered as 500, logged with traceback
            logger.exception("request to %s failed", endpoint)
            response = JSONResponse({"message": f"internal error: {type(err).__name__}: {err}"}, status_code=500)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    def _overloaded(self) -> JSONResponse:
        return JSONResponse(
            {"message": "service overloaded: too many requests are queued; retry later"},
            status_code=503,
            headers={"Retry-After": str(self.cfg.retry_after_s)},
        )

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(401, "missing API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            raise HTTPError(401, "invalid API key", {"WWW-Authenticate": "Bearer"})

    async def _parse(self, request: Request, model: type[M]) -> M:
        """Read the body (bounded), decode JSON and validate it against ``model``."""
        limit = self.cfg.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"request body of {declared} bytes exceeds max_request_bytes={limit}")
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise HTTPError(413, f"request body exceeds max_request_bytes={limit}")
            parts.append(part)
        body = b"".join(parts)
        if not body.strip():
            raise HTTPError(400, "request body is empty: send a JSON object")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise HTTPError(400, f"request body is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise HTTPError(422, f"request body must be a JSON object, got {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise HTTPError(422, describe_validation_error(err)) from None

    async def _score(self, query: str, texts: list[str], instruction: str | None,
                     max_tokens_per_doc: int | None = None) -> tuple[list[float], int]:
        """Scores of ``texts`` (input order) and the prompt tokens they took."""
        size = self.cfg.chunk_size
        responses = [
            self.model.score.remote(ScoreChunk(query, texts[i : i + size], instruction, max_tokens_per_doc))
            for i in range(0, len(texts), size)
        ]
        try:
            results: list[ScoreResult] = await asyncio.gather(*responses)
        except BaseException:
            for response in responses:  # timed out, overloaded or failed: drop the rest of the work
                response.cancel()
            raise
        scores: list[float] = []
        tokens = 0
        for result in results:
            if result.error is not None:
                raise HTTPError(422, f"cannot build the prompt: {result.error}")
            scores.extend(result.scores)
            tokens += sum(result.tokens)
            if result.first_in_batch:
                self.metrics.batch_pairs.observe(result.batch_pairs)
                self.metrics.batch_chunks.observe(result.batch_chunks)
        self.metrics.pairs.inc(len(scores))
        self.metrics.tokens.inc(tokens)
        return scores, tokens

    async def _info(self) -> dict[str, Any]:
        if self._model_info is None:
            self._model_info = await self.model.info.remote()
        return self._model_info

    # ------------------------------------------------------------------ rerank
    async def _rerank(self, request: Request, version: str) -> Response:
        req = await self._parse(request, RerankRequest)
        n = len(req.documents)
        if n > self.cfg.max_documents:
            raise HTTPError(422, f"documents: {n} given, at most {self.cfg.max_documents} per request (max_documents)")
        self.metrics.documents.observe(n)
        texts = [prompt_text(d) for d in req.documents]
        scores, tokens = await self._score(req.query, texts, req.instruction, req.max_tokens_per_doc)
        order = sorted(range(n), key=lambda i: (-scores[i], i))[: req.top_n]
        results = []
        for i in order:
            item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if req.return_documents:
                item["document"] = document_payload(req.documents[i])
            results.append(item)
        return JSONResponse({
            "id": str(uuid.uuid4()),
            "model": self.cfg.served_name,
            "results": results,
            "meta": meta(version, n, tokens),
            "usage": {"total_tokens": tokens},
        })

    @api.post("/v1/rerank", openapi_extra=_body_schema(RerankRequest), summary="Rerank documents (Cohere v1)")
    async def rerank_v1(self, request: Request) -> Response:
        return await self._run("/v1/rerank", request, lambda: self._rerank(request, "1"))

    @api.post("/v2/rerank", openapi_extra=_body_schema(RerankRequest), summary="Rerank documents (Cohere v2)")
    async def rerank_v2(self, request: Request) -> Response:
        return await self._run("/v2/rerank", request, lambda: self._rerank(request, "2"))

    @api.post("/rerank", openapi_extra=_body_schema(RerankRequest), summary="Rerank documents (Jina style)")
    async def rerank(self, request: Request) -> Response:
        return await self._run("/rerank", request, lambda: self._rerank(request, "2"))

    # ------------------------------------------------------------------ search
    async def _search(self, request: Request) -> Response:
        req = await self._parse(request, SearchRequest)
        if self.retriever is None:
            raise HTTPError(404, "no BM25 index is configured for this deployment (set 'index' in the serve config)")
        if req.candidates > self.cfg.max_candidates:
            raise HTTPError(422, f"candidates: {req.candidates} asked, at most {self.cfg.max_candidates} (max_candidates)")
        hits = await self.retriever.search.remote(req.query, req.candidates)
        self.metrics.documents.observe(len(hits))
        texts = [document_text({"title": h["title"], "text": h["text"]}) for h in hits]
        scores, tokens = await self._score(req.query, texts, req.instruction) if hits else ([], 0)
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))[: req.top_n]
        results = [
            {"docid": hits[i]["docid"], "relevance_score": scores[i], "bm25_score": hits[i]["bm25_score"],
             "bm25_rank": i + 1, "title": hits[i]["title"], "text": hits[i]["text"]}
            for i in order
        ]
        return JSONResponse({
            "id": str(uuid.uuid4()),
            "model": self.cfg.served_name,
            "index": self.cfg.index,
            "results": results,
            "meta": meta("1", len(hits), tokens),
            "usage": {"total_tokens": tokens},
        })

    @api.post("/v1/search", openapi_extra=_body_schema(SearchRequest), summary="BM25 candidates, reranked")
    async def search(self, request: Request) -> Response:
        return await self._run("/v1/search", request, lambda: self._search(request))

    # ------------------------------------------------------------------ service endpoints
    def _status(self) -> tuple[bool, dict[str, str]]:
        """Health of this application's deployments as Ray Serve's controller sees them."""
        app_name = serve.get_replica_context().app_name
        app = serve.status().applications.get(app_name)
        if app is None:
            return False, {}
        states = {name: str(d.status.value if hasattr(d.status, "value") else d.status)
                  for name, d in app.deployments.items()}
        return all(s == "HEALTHY" for s in states.values()), states

    async def _health(self) -> Response:
        healthy, states = await asyncio.get_running_loop().run_in_executor(None, self._status)
        body = {
            "status": "ok" if healthy else "unavailable",
            "model": self.cfg.served_name,
            "model_loaded": states.get("RerankerModel") == "HEALTHY",
            "index": self.cfg.index,
            "index_open": (states.get("BM25Retriever") == "HEALTHY") if self.cfg.index else None,
            "deployments": states,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @api.get("/health", summary="Model loaded and index open")
    async def health(self, request: Request) -> Response:
        return await self._run("/health", request, self._health, auth=False)

    async def _models(self) -> Response:
        info = await self._info()
        return JSONResponse({"object": "list", "data": [{"object": "model", "owned_by": "prorank", **info}]})

    @api.get("/v1/models", summary="The served model")
    async def models(self, request: Request) -> Response:
        return await self._run("/v1/models", request, self._models)

    @api.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint(self, request: Request) -> Response:
        async def render() -> Response:
            return Response(self.metrics.render(), media_type=self.metrics.content_type)

        return await self._run("/metrics", request, render, timeout=False)
