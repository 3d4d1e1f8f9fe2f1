"""Error answers of the service: always JSON ``{"message": ...}`` (Cohere's error shape).

:class:`HTTPError` is raised by the ingress's own checks. :func:`install_error_handlers` makes
FastAPI answer in the same shape for what it decides itself (404 unknown path, 405 wrong method)
and turns any unexpected exception into a 500 whose body holds a request id and nothing else:
no exception text, traceback, process or file path ever reaches a client; the log has them.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("ray.serve")


class ErrorBody(BaseModel):
    """The body of every error response."""

    message: str = Field(description="what went wrong, naming the field when a field is at fault")


class HTTPError(Exception):
    """An error answered as ``{"message": ...}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def internal_error(endpoint: str, exc: BaseException) -> JSONResponse:
    """A 500 for an unexpected exception: logged with its traceback, answered with a request id only."""
    request_id = uuid.uuid4().hex[:12]
    logger.error("request %s to %s failed", request_id, endpoint, exc_info=exc)
    return error_response(500, f"internal error (request {request_id}); the service log has the details")


def install_error_handlers(api: FastAPI) -> None:
    """Answer FastAPI's own errors and unexpected exceptions as ``{"message": ...}``."""

    @api.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no endpoint {request.url.path} (see /docs for the endpoints)"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, dict(exc.headers or {}))

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request.url.path, exc)
