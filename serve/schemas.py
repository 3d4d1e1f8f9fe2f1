"""HTTP request/response schemas: the Cohere/Jina rerank API and ProRank's BM25 search.

Requests are strict: unknown fields, wrong types and empty queries/document lists are rejected
with a message naming the field. Responses leave ``document`` out (not ``null``) unless it was
asked for, as Cohere does.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

DOCUMENT_HELP = "a string or an object {'text': str, 'title'?: str}"


class DocumentObject(BaseModel):
    """A structured document; ``title`` is put on the line before ``text``."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr
    title: StrictStr | None = None


def _check_query(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


class RerankRequest(BaseModel):
    """``POST /v1/rerank``, ``/v2/rerank``, ``/rerank`` (Cohere v1/v2 and Jina clients)."""

    model_config = ConfigDict(extra="forbid")
    query: StrictStr
    documents: list[Union[StrictStr, DocumentObject]]
    model: StrictStr | None = Field(None, description="accepted for client compatibility; the deployment serves one model")
    top_n: StrictInt | None = Field(None, ge=1, description="return only the best n (default: all)")
    return_documents: StrictBool = False
    instruction: StrictStr | None = Field(None, description="optional task instruction put into the prompt")
    max_tokens_per_doc: StrictInt | None = Field(
        None, ge=1, description="truncate each document to this many tokens (besides max_length)"
    )
    max_chunks_per_doc: StrictInt | None = Field(
        None, ge=1, le=1,
        description="Cohere v1 field; only 1 (or null) is supported: long documents are truncated, not chunked",
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
                raise ValueError(f"item {i} must be {DOCUMENT_HELP}, got {type(doc).__name__}")
            unknown = sorted(set(doc) - {"text", "title"})
            if unknown:
                raise ValueError(f"item {i} has unknown field(s) {unknown}; a document is {DOCUMENT_HELP}")
            if not isinstance(doc.get("text"), str):
                raise ValueError(f"item {i} needs a string 'text' field")
            if doc.get("title") is not None and not isinstance(doc["title"], str):
                raise ValueError(f"item {i}: 'title' must be a string")
        return value


class SearchRequest(BaseModel):
    """``POST /v1/search``: BM25 candidates from the deployment's index, reranked."""

    model_config = ConfigDict(extra="forbid")
    query: StrictStr
    top_n: StrictInt = Field(10, ge=1, description="results returned")
    candidates: StrictInt = Field(100, ge=1, description="BM25 depth that is reranked")
    model: StrictStr | None = None
    instruction: StrictStr | None = None

    _query = field_validator("query")(_check_query)


def document_payload(doc: Union[str, DocumentObject]) -> dict[str, str]:
    """The ``document`` object of a result: the text, and the title when one was given."""
    if isinstance(doc, str):
        return {"text": doc}
    out = {"text": doc.text}
    if doc.title is not None:
        out["title"] = doc.title
    return out


def prompt_text(doc: Union[str, DocumentObject]) -> str:
    """What the model reads for ``doc`` (same rule as ``prorank.prompt.document_text``)."""
    from prorank.prompt import document_text

    return doc if isinstance(doc, str) else document_text({"text": doc.text, "title": doc.title})


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
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def meta(api_version: str, documents: int, tokens: int) -> dict[str, Any]:
    """Cohere ``meta`` block; one search unit per 100 documents, as Cohere bills."""
    return {
        "api_version": {"version": api_version},
        "billed_units": {"search_units": max(1, -(-documents // 100)), "input_tokens": tokens},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }
