"""HTTP response schemas (what ``/openapi.json`` documents for each 200) and Cohere's ``meta``.

The handlers build plain dicts (``document`` is left out, not ``null``, unless asked for, as
Cohere does); these models describe them for clients, Swagger UI and schema-driven tests.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int = Field(description="one per 100 documents, as Cohere bills")
    input_tokens: int


class Tokens(BaseModel):
    input_tokens: int
    output_tokens: int


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    tokens: Tokens


class Usage(BaseModel):
    total_tokens: int = Field(description="prompt tokens scored (Jina's field)")


class RerankResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    relevance_score: float = Field(
        description="on the deployment's scale: by default P(relevant) in [0, 1] (calibrated; a document with no "
        "letter or digit gets 0); with raw_scores the model's raw logit('1') - logit('0')")
    document: dict[str, Any] | None = Field(
        None, description="only with return_documents: {'text'} for a string, an object document as sent"
    )


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="best first")
    meta: Meta
    usage: Usage


class SearchResult(BaseModel):
    docid: str
    relevance_score: float  # what the ranking used: the model's raw score fused with BM25's (see fusion),
    # or without a fusion the model's score on the deployment's scale
    model_score: float  # the model's own score, on the deployment's scale
    bm25_score: float
    bm25_rank: int
    title: str
    text: str


class SearchResponse(BaseModel):
    id: str
    model: str
    index: str | None
    results: list[SearchResult] = Field(description="best first")
    meta: Meta
    usage: Usage


class ModelList(BaseModel):
    object: str = "list"
    data: list[dict[str, Any]] = Field(description="the served model: id, fingerprint, device, dtype, max_length, ...")


class Health(BaseModel):
    status: str = Field(description="'ok', or 'unavailable' (then the status is 503)")
    model: str
    model_loaded: bool
    index: str | None
    index_open: bool | None
    deployments: dict[str, str]


def meta(api_version: str, documents: int, tokens: int) -> dict[str, Any]:
    """Cohere ``meta`` block; one search unit per 100 documents, as Cohere bills."""
    return {
        "api_version": {"version": api_version},
        "billed_units": {"search_units": max(1, -(-documents // 100)), "input_tokens": tokens},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }
