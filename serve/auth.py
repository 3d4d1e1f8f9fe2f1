"""API key auth: ``Authorization: Bearer <key>`` when ``api_key_env`` names a key."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from prorank.serve.errors import HTTPError

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def authorize(request: Request, api_key: str | None) -> None:
    """Raise a 401 :class:`HTTPError` unless ``request`` carries ``api_key`` (None: auth is off)."""
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPError(401, "missing API key: send 'Authorization: Bearer <key>'", CHALLENGE)
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise HTTPError(401, "invalid API key", CHALLENGE)
