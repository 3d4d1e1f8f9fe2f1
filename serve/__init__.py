"""ProRank's reranking service on Ray Serve (``prorank serve``).

Cohere/Jina-compatible ``/v1/rerank``, ``/v2/rerank`` and ``/rerank``, BM25 + rerank
``/v1/search``, ``/health``, ``/v1/models`` and Prometheus ``/metrics``; dynamic batching across
concurrent requests. Modules: ``config`` (``ServeConfig``), ``schemas`` (HTTP models),
``model`` (batched model deployment), ``retriever`` (BM25 deployment), ``ingress`` (FastAPI),
``metrics``, ``app`` (``build_app``, ``app_builder``, ``main``).
"""
