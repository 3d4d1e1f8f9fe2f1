"""Reading a request body: bounded in size, decoded as JSON, checked before validation.

Besides size (413) and syntax (400; ``NaN``, ``Infinity`` and numbers beyond a float's range are
not JSON numbers), two things are refused here, before any schema or model sees them: nesting deeper than :data:`MAX_DEPTH` (400; Python's JSON decoder would otherwise
recurse until a ``RecursionError``), and strings holding a lone UTF-16 surrogate such as
``"\\ud800"`` (422, naming the field: JSON's escapes allow them, but they are not Unicode text,
so no tokenizer, index or JSON encoder can take them).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from prorank.serve.errors import HTTPError

MAX_DEPTH = 64  # arrays/objects inside one another; the request schemas need three
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
               list: "array", dict: "object"}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (``null``, not ``NoneType``)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request's body as a JSON object; raises :class:`HTTPError` (400, 413, 422)."""
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
        data = json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise HTTPError(400, f"request body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise HTTPError(400, f"request body is not valid JSON: {err}") from None
    check_tree(data)
    if not isinstance(data, dict):
        raise HTTPError(422, f"request body must be a JSON object, got {json_type(data)}")
    return data


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # Python's decoder would take NaN and Infinity


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def check_tree(data: Any) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` (400) and lone surrogates anywhere (422)."""
    surrogate: str | None = None
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise HTTPError(400, f"request body is nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                name = _printable(str(key))
                if surrogate is None and isinstance(key, str) and _SURROGATE.search(key):
                    surrogate = _surrogate_message(f"{path}{name}", key, "field name")
                stack.append((item, f"{path}{name}.", depth + 1))
        elif surrogate is None and isinstance(value, str) and _SURROGATE.search(value):
            surrogate = _surrogate_message(path.rstrip(".") or "body", value, "value")
    if surrogate is not None:
        raise HTTPError(422, surrogate)


def _printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes (so a message can be encoded)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_message(field: str, text: str, what: str) -> str:
    match = _SURROGATE.search(text)
    assert match is not None
    code = f"U+{ord(match.group()):04X}"
    return (
        f"{field}: the {what} holds a lone UTF-16 surrogate ({code} at character {match.start()}), "
        "which is not valid Unicode text; send a proper character or a surrogate pair"
    )
