"""HTTP request schemas: the Cohere/Jina rerank API and ProRank's BM25 search.

Requests are strict: unknown fields, wrong types and empty queries/document lists are rejected
with a message naming the field. What Cohere's API accepts is accepted too: ``priority``
(ignored), ``rank_fields`` (which fields of object documents the model reads), and object
documents with fields besides ``text`` and ``title`` (kept, and returned as given). The JSON
schemas of these models are what ``/openapi.json`` publishes, so they state every constraint
the service enforces that JSON Schema can express.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from prorank.serve.body import json_type

DOCUMENT_HELP = "a string or an object {'text': str, 'title'?: str, ...}"
QUERY_SCHEMA = {"minLength": 1, "pattern": r"\S"}  # what _check_query enforces
DEFAULT_CANDIDATES = 100


def _integral(value: Any) -> Any:
    """JSON Schema's integers include ``2.0``; a JSON number with a fraction (or a string) is not one."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(**bounds: int) -> Any:
    """A JSON integer type within ``bounds`` (``ge``, ``le``): ``2.0`` counts, ``"2"`` and ``2.5`` do not."""
    return Annotated[StrictInt, Field(**bounds), BeforeValidator(_integral)]


Count = integer(ge=1)


class DocumentObject(BaseModel):
    """A structured document: ``title`` goes on the line before ``text``; other fields are kept
    and returned with the document (the model reads them only when ``rank_fields`` names them)."""

    model_config = ConfigDict(extra="allow")
    text: StrictStr
    title: StrictStr | None = None


def _check_query(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


class RerankRequest(BaseModel):
    """``POST /v1/rerank``, ``/v2/rerank``, ``/rerank`` (Cohere v1/v2 and Jina clients)."""

    model_config = ConfigDict(extra="forbid")
    query: StrictStr = Field(json_schema_extra=QUERY_SCHEMA)
    documents: list[Union[StrictStr, DocumentObject]] = Field(
        min_length=1, description=f"each {DOCUMENT_HELP}; at most max_documents (see maxItems)"
    )
    model: StrictStr | None = Field(None, description="accepted for client compatibility; the deployment serves one model")
    top_n: Count | None = Field(None, description="return only the best n (default: all)")
    return_documents: StrictBool = False
    rank_fields: list[StrictStr] | None = Field(
        None, min_length=1,
        description="fields of object documents the model reads, in this order, one per line "
        "(default: title, then text); a document without a field skips it",
    )
    instruction: StrictStr | None = Field(
        None, description="optional task instruction put into the prompt; it must leave room for query and "
        "document within max_length tokens (else 422)",
    )
    max_tokens_per_doc: Count | None = Field(
        None, description="truncate each document to this many tokens (besides max_length)"
    )
    max_chunks_per_doc: integer(ge=1, le=1) | None = Field(
        None, description="Cohere v1 field; only 1 (or null) is supported: long documents are truncated, not chunked",
    )
    priority: integer() | None = Field(None, description="Cohere v2 field; accepted and ignored")
    raw_scores: StrictBool = Field(
        False, description="true: relevance_score is the model's raw logit('1') - logit('0') (unbounded; only its "
        "order means something) instead of the deployment's scale, by default the calibrated probability that the "
        "document is relevant, in [0, 1] (TEI's field); the order of the results is the same either way",
    )

    _query = field_validator("query")(_check_query)

    @field_validator("documents", mode="before")
    @classmethod
    def _documents(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"must be a list of documents, each {DOCUMENT_HELP}")
        if not value:
            raise ValueError("must hold at least one document")
        for i, doc in enumerate(value):
            if isinstance(doc, str):
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"item {i} must be {DOCUMENT_HELP}, got {json_type(doc)}")
            if not isinstance(doc.get("text"), str):
                raise ValueError(f"item {i} needs a string 'text' field, got {json_type(doc.get('text'))}")
            if doc.get("title") is not None and not isinstance(doc["title"], str):
                raise ValueError(f"item {i}: 'title' must be a string or null, got {json_type(doc['title'])}")
        return value


class SearchRequest(BaseModel):
    """``POST /v1/search``: BM25 candidates from the deployment's index, reranked."""

    model_config = ConfigDict(extra="forbid")
    query: StrictStr = Field(json_schema_extra=QUERY_SCHEMA)
    top_n: Count = Field(10, description="results returned")
    candidates: Count = Field(
        DEFAULT_CANDIDATES, description="BM25 depth that is reranked (at most max_candidates, also the "
        "default when smaller)",
    )
    model: StrictStr | None = None
    instruction: StrictStr | None = None

    _query = field_validator("query")(_check_query)


def document_payload(doc: Union[str, DocumentObject]) -> dict[str, Any]:
    """The ``document`` object of a result: a string as ``{"text"}``, an object as it was sent."""
    if isinstance(doc, str):
        return {"text": doc}
    return doc.model_dump(exclude_unset=True)


def prompt_text(doc: Union[str, DocumentObject], rank_fields: list[str] | None = None) -> str:
    """What the model reads for ``doc``: a string as it is; an object's title and text (the rule
    of ``prorank.prompt.document_text``), or with ``rank_fields`` those fields' values, one per
    line (strings as they are, other values as JSON; missing, null and blank ones skipped)."""
    from prorank.prompt import document_text

    if isinstance(doc, str):
        return doc
    if rank_fields is None:
        return document_text({"text": doc.text, "title": doc.title})
    fields = doc.model_dump()
    parts = []
    for name in rank_fields:
        value = fields.get(name)
        text = value if isinstance(value, str) or value is None else json.dumps(value, ensure_ascii=False)
        if text is not None and text.strip():
            parts.append(text)
    return "\n".join(parts)


def describe_validation_error(err: ValidationError) -> str:
    """One readable line per problem, e.g. ``documents: must hold at least one document``."""
    lines = []
    for item in err.errors(include_url=False):
        loc = ".".join(str(p) for p in item.get("loc", ()))
        kind = item.get("type", "")
        msg = item.get("msg", "invalid")
        if kind == "extra_forbidden":
            msg = "unknown field (not part of the request schema)"
        elif kind == "missing":
            msg = "field required"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif "input" in item and kind.endswith("_type"):
            msg = f"{msg}, got {json_type(item['input'])}"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)
