"""The FastAPI ingress: HTTP endpoints, auth, admission, timeouts, metrics.

Endpoints: ``POST /v1/rerank``, ``/v2/rerank``, ``/rerank`` (Cohere/Jina schema),
``POST /v1/search`` (BM25 + rerank), ``GET /health``, ``GET /v1/models``, ``GET /metrics``, and the
API description ``GET /openapi.json``, ``/docs``, ``/redoc`` (behind the API key like the rest;
only ``/health`` is open). Errors are JSON ``{"message": ...}`` (``prorank.serve.errors``): 400
broken JSON, 401 missing or wrong API key, 404 no index or no such path, 405 wrong method, 413
body too large, 422 invalid request, 503 overloaded (``prorank.serve.admission``), 504 timed
out. (No ``from __future__ import annotations`` here: FastAPI must see the real ``Request`` type
on the handlers.) This process never imports torch: requests are validated here and scored by
the model deployment, in chunks, so a large request is spread over batches (and replicas).

Scores: ``relevance_score`` is on the deployment's scale (``reranker.normalize``; by default the
calibrated probability that the document is relevant, in [0, 1]), or the model's raw score with
``raw_scores: true``. Results are ordered by the raw score on every scale, documents with no
letter or digit last (``prorank.degenerate``); /v1/search fuses the raw score with BM25's, as
the fusion weight was tuned.
"""

import asyncio
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from prorank.config import from_dict
from prorank.degenerate import is_degenerate, ranked
from prorank.fusion import Fusion
from prorank.prompt import document_text
from prorank.serve.admission import Admission
from prorank.serve.auth import authorize
from prorank.serve.body import read_json_object
from prorank.serve.config import ServeConfig
from prorank.serve.errors import HTTPError, error_response, install_error_handlers, internal_error
from prorank.serve.loopback import keep_replica_servers_on_loopback
from prorank.serve.metrics import ServiceMetrics
from prorank.serve.model import ScoreChunk, ScoreResult
from prorank.serve.openapi import body, build_openapi, errors
from prorank.serve.responses import Health, ModelList, RerankResponse, SearchResponse, meta
from prorank.serve.schemas import RerankRequest, SearchRequest, describe_validation_error, document_payload, prompt_text

M = TypeVar("M", bound=BaseModel)

api = FastAPI(
    title="ProRank reranker",
    description="Cohere/Jina-compatible reranking with small language models, plus BM25 search.",
    version="1",
    openapi_url=None,  # served by Ingress.openapi (behind the API key when one is set), like the docs pages
    docs_url=None,
    redoc_url=None,
)
install_error_handlers(api)
RERANK_ROUTE: dict[str, Any] = {
    "openapi_extra": body(RerankRequest),
    "response_model": None,
    "responses": {200: {"model": RerankResponse}, **errors(400, 401, 413, 422, 503, 504)},
}


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """Routes HTTP requests to the model (and BM25) deployments."""

    def __init__(self, cfg: dict[str, Any], model: DeploymentHandle, retriever: DeploymentHandle | None) -> None:
        keep_replica_servers_on_loopback()
        self.cfg = from_dict(ServeConfig, cfg, "serve config")
        self._api_key = self.cfg.api_key()  # raises if api_key_env names an unset variable
        self.model = model
        self.retriever = retriever
        self.admission = Admission(self.cfg.max_ongoing_requests, self.cfg.max_queued_requests, self.cfg.retry_after_s)
        self.metrics = ServiceMetrics()
        self.metrics.queued.set_function(lambda: self.admission.waiting)
        self._model_info: dict[str, Any] | None = None
        self._openapi: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing
    async def _run(self, endpoint: str, request: Request, work: Callable[[], Awaitable[Response]],
                   auth: bool = True, timeout: bool = True, admit: bool = False) -> Response:
        """Auth, admission (``admit``: requests that score), timeout, error mapping and metrics."""
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            if auth:
                authorize(request, self._api_key)
            if timeout:
                response = await self._within_timeout(work, admit)
            else:
                response = await work()
        except HTTPError as err:
            response = error_response(err.status, err.message, err.headers)
        except (BackPressureError, DeploymentUnavailableError):
            response = error_response(503, "model unavailable or overloaded; retry later",
                                      {"Retry-After": str(self.cfg.retry_after_s)})
        except Exception as err:  # noqa: BLE001 - answered as 500 without details, logged with traceback
            response = internal_error(endpoint, err)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    async def _within_timeout(self, work: Callable[[], Awaitable[Response]], admit: bool) -> Response:
        """``work()``, after waiting for an admission slot when ``admit``; 504 past request_timeout_s
        (the cancellation reaches the model, which stops before its next forward pass)."""

        async def admitted() -> Response:
            async with self.admission.slot():
                return await work()

        try:
            return await asyncio.wait_for(admitted() if admit else work(), self.cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPError(
                504, f"request timed out after {self.cfg.request_timeout_s:g}s (request_timeout_s); "
                "send fewer documents or retry later"
            ) from None

    async def _parse(self, request: Request, model: type[M]) -> M:
        """Read the body (bounded, checked JSON) and validate it against ``model``."""
        data = await read_json_object(request, self.cfg.max_request_bytes)
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise HTTPError(422, describe_validation_error(err)) from None

    async def _score(self, query: str, texts: list[str], instruction: str | None,
                     max_tokens_per_doc: int | None = None) -> tuple[list[float], list[float], int]:
        """Scores of ``texts`` (input order) on the deployment's scale, their raw scores, and the
        prompt tokens they took."""
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
        raw: list[float] = []
        tokens = 0
        for result in results:
            if result.error is not None:
                raise HTTPError(422, f"cannot build the prompt: {result.error}")
            scores.extend(result.scores)
            raw.extend(result.raw)
            tokens += sum(result.tokens)
            if result.first_in_batch:
                self.metrics.batch_pairs.observe(result.batch_pairs)
                self.metrics.batch_chunks.observe(result.batch_chunks)
        self.metrics.pairs.inc(len(scores))
        self.metrics.tokens.inc(tokens)
        return scores, raw, tokens

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
        texts = [prompt_text(d, req.rank_fields) for d in req.documents]
        scaled, raw, tokens = await self._score(req.query, texts, req.instruction, req.max_tokens_per_doc)
        scores = raw if req.raw_scores else scaled
        _, order = ranked(raw, scores, [is_degenerate(t) for t in texts])
        results = []
        for i in order[: req.top_n]:
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

    @api.post("/v1/rerank", summary="Rerank documents (Cohere v1)", **RERANK_ROUTE)
    async def rerank_v1(self, request: Request) -> Response:
        return await self._run("/v1/rerank", request, lambda: self._rerank(request, "1"), admit=True)

    @api.post("/v2/rerank", summary="Rerank documents (Cohere v2)", **RERANK_ROUTE)
    async def rerank_v2(self, request: Request) -> Response:
        return await self._run("/v2/rerank", request, lambda: self._rerank(request, "2"), admit=True)

    @api.post("/rerank", summary="Rerank documents (Jina style)", **RERANK_ROUTE)
    async def rerank(self, request: Request) -> Response:
        return await self._run("/rerank", request, lambda: self._rerank(request, "2"), admit=True)

    # ------------------------------------------------------------------ search
    async def _search(self, request: Request) -> Response:
        req = await self._parse(request, SearchRequest)
        if self.retriever is None:
            raise HTTPError(404, "no BM25 index is configured for this deployment (set 'index' in the serve config)")
        candidates = req.candidates
        if "candidates" not in req.model_fields_set:  # the default, within this deployment's limit
            candidates = min(candidates, self.cfg.max_candidates)
        if candidates > self.cfg.max_candidates:
            raise HTTPError(422, f"candidates: {candidates} asked, at most {self.cfg.max_candidates} (max_candidates)")
        hits = await self.retriever.search.remote(req.query, candidates)
        self.metrics.documents.observe(len(hits))
        texts = [document_text({"title": h["title"], "text": h["text"]}) for h in hits]
        scores, raw, tokens = await self._score(req.query, texts, req.instruction) if hits else ([], [], 0)
        fusion = Fusion.from_dict((await self._info())["fusion"])  # the checkpoint's, or the config's
        fused, order = ranked(raw, scores, [is_degenerate(t) for t in texts], fusion, [h["bm25_score"] for h in hits])
        results = [
            {"docid": hits[i]["docid"], "relevance_score": fused[i], "model_score": scores[i],
             "bm25_score": hits[i]["bm25_score"], "bm25_rank": i + 1, "title": hits[i]["title"], "text": hits[i]["text"]}
            for i in order[: req.top_n]
        ]
        return JSONResponse({
            "id": str(uuid.uuid4()),
            "model": self.cfg.served_name,
            "index": self.cfg.index,
            "results": results,
            "meta": meta("1", len(hits), tokens),
            "usage": {"total_tokens": tokens},
        })

    @api.post("/v1/search", openapi_extra=body(SearchRequest), summary="BM25 candidates, reranked", response_model=None,
              responses={200: {"model": SearchResponse}, **errors(400, 401, 404, 413, 422, 503, 504)})
    async def search(self, request: Request) -> Response:
        return await self._run("/v1/search", request, lambda: self._search(request), admit=True)

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

    @api.get("/health", summary="Model loaded and index open (no API key needed)", response_model=None,
             responses={200: {"model": Health}, 503: {"model": Health, "description": "not ready"}})
    async def health(self, request: Request) -> Response:
        return await self._run("/health", request, self._health, auth=False)

    async def _models(self) -> Response:
        info = await self._info()
        return JSONResponse({"object": "list", "data": [{"object": "model", "owned_by": "prorank", **info}]})

    @api.get("/v1/models", summary="The served model", response_model=None,
             responses={200: {"model": ModelList}, **errors(401, 503, 504)})
    async def models(self, request: Request) -> Response:
        return await self._run("/v1/models", request, self._models)

    @api.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse, responses=errors(401))
    async def metrics_endpoint(self, request: Request) -> Response:
        async def render() -> Response:
            return Response(self.metrics.render(), media_type=self.metrics.content_type)

        return await self._run("/metrics", request, render, timeout=False)

    # ------------------------------------------------------------------ API description
    def _spec(self, request: Request) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = build_openapi(api, self.cfg, self._api_key is not None, request.scope.get("root_path", ""))
        return self._openapi

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> Response:
        async def spec() -> Response:
            return JSONResponse(self._spec(request))

        return await self._run("/openapi.json", request, spec, timeout=False)

    async def _page(self, request: Request, path: str, render: Callable[..., Response], kind: str) -> Response:
        async def page() -> Response:
            url = request.scope.get("root_path", "") + "/openapi.json"
            return render(openapi_url=url, title=f"{api.title} - {kind}")

        return await self._run(path, request, page, timeout=False)

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request) -> Response:
        return await self._page(request, "/docs", get_swagger_ui_html, "Swagger UI")

    @api.get("/redoc", include_in_schema=False)
    async def redoc(self, request: Request) -> Response:
        return await self._page(request, "/redoc", get_redoc_html, "ReDoc")
