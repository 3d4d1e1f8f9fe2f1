"""Prometheus metrics of one ingress replica, served at ``GET /metrics``.

Request counts (503s of an overloaded replica included) and latencies by endpoint and status,
requests in flight and waiting for a slot, documents per request, pairs and tokens scored, and
the size of the model batches the requests were scored in (each model batch is counted once:
the model marks one chunk per batch).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    """A private registry (so two apps in one process never collide) and its metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "prorank_requests", "HTTP requests handled by the ingress", ("endpoint", "status"), registry=r
        )
        self.latency = Histogram(
            "prorank_request_latency_seconds", "Request latency at the ingress", ("endpoint",),
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("prorank_requests_in_flight", "Requests being handled", registry=r)
        self.queued = Gauge(
            "prorank_requests_queued", "Requests waiting for a slot (max_ongoing_requests taken)", registry=r
        )
        self.documents = Histogram(
            "prorank_documents_per_request", "Documents reranked per request", buckets=SIZE_BUCKETS, registry=r
        )
        self.pairs = Counter("prorank_pairs_scored", "Query-document pairs scored", registry=r)
        self.tokens = Counter("prorank_prompt_tokens", "Prompt tokens scored", registry=r)
        self.batch_pairs = Histogram(
            "prorank_batch_pairs", "Pairs per model batch (dynamic batching)", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_chunks = Histogram(
            "prorank_batch_chunks", "Request chunks per model batch", buckets=SIZE_BUCKETS, registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
