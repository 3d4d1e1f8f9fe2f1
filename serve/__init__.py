"""ProRank's reranking service on Ray Serve (``prorank serve``).

Cohere/Jina-compatible ``/v1/rerank``, ``/v2/rerank`` and ``/rerank``, BM25 + rerank
``/v1/search``, ``/health``, ``/v1/models`` and Prometheus ``/metrics``; dynamic batching across
concurrent requests. Modules: ``config`` (``ServeConfig``), ``schemas`` (request models),
``responses`` (response models), ``body`` (reading a JSON body), ``auth`` (API key), ``errors``
(``{"message"}`` answers), ``admission`` (overload limits), ``openapi`` (the API description),
``model`` (batched model deployment), ``retriever`` (BM25 deployment), ``ingress`` (FastAPI),
``metrics``, ``loopback`` (Ray's ports on loopback), ``app`` (``build_app``, ``app_builder``,
``main``).
"""
