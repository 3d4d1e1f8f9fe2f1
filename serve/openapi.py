"""The OpenAPI document served at ``/openapi.json`` (and rendered by ``/docs`` and ``/redoc``).

FastAPI derives paths and responses from the routes; this module adds what it cannot see,
because the handlers read their bodies themselves: the request body schemas, as named
components (``#/components/schemas/...``, so Swagger UI, client generators and schemathesis
resolve every ``$ref``), with this deployment's limits (``maxItems`` = ``max_documents``,
``maximum`` = ``max_candidates``), the bearer scheme when an API key is set, and the error
responses each operation can give.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from prorank.serve.config import ServeConfig
from prorank.serve.errors import ErrorBody
from prorank.serve.schemas import RerankRequest, SearchRequest

REF = "#/components/schemas/{model}"
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
ERRORS = {
    400: "the body is not JSON, is empty, or is nested too deeply",
    401: "missing or wrong API key",
    404: "no BM25 index is configured",
    413: "the body is larger than max_request_bytes",
    422: "the request does not fit the schema or the deployment's limits (the message names the field)",
    503: "overloaded (max_ongoing_requests, max_queued_requests) or the model is unavailable; retry later",
    504: "not done within request_timeout_s; its remaining work was cancelled",
}


def body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose handler reads a ``model`` body itself."""
    ref = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses`` of a route for the error ``statuses`` it can answer (``{"message"}`` bodies)."""
    out: dict[int | str, dict[str, Any]] = {}
    content = {"application/json": {"schema": {"$ref": REF.format(model=ErrorBody.__name__)}}}
    for status in statuses:  # JSON even on a route whose own responses are not (/metrics)
        out[status] = {"content": content, "description": ERRORS[status]}
        if status == 503:
            out[status]["headers"] = RETRY_AFTER
        elif status == 401:
            out[status]["headers"] = WWW_AUTHENTICATE
    return out


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas[model.__name__] = schema
    return schema


def build_openapi(api: FastAPI, cfg: ServeConfig, authenticated: bool, root_path: str = "") -> dict[str, Any]:
    """The OpenAPI document of this deployment (``authenticated``: an API key is required;
    ``root_path``: the route prefix the application is served under)."""
    servers = [{"url": root_path}] if root_path else None
    spec = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes,
                       servers=servers)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _add_model(schemas, ErrorBody)
    _add_model(schemas, RerankRequest)["properties"]["documents"]["maxItems"] = cfg.max_documents
    candidates = _add_model(schemas, SearchRequest)["properties"]["candidates"]
    candidates.update(maximum=cfg.max_candidates, default=min(candidates["default"], cfg.max_candidates))
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if not authenticated:
                operation.get("responses", {}).pop("401", None)
            elif path == "/health":
                operation["security"] = []  # probes need no key
    if authenticated:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec
