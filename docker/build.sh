#!/usr/bin/env bash
# Build the image with buildah (no Docker engine needed), from the repository's unchanged Dockerfile.
#
#   docker/build.sh cpu  [TAG]   # PyTorch's CPU wheel, configs/serve.yaml      (TAG: prorank-serve:cpu)
#   docker/build.sh cuda [TAG]   # PyPI's CUDA wheel, configs/serve-gpu.yaml    (TAG: prorank-serve:cuda)
#
# Environment:
#   TORCH_WHEELS_DIR  a folder holding the CPU wheel (torch-<pin>+cpu-cp311-...whl), mounted read-only
#                     into the build and used instead of PyTorch's index (for machines that cannot
#                     reach download.pytorch.org)
#   BUILD_CA_FILE     the CA bundle pip trusts while building (default: this machine's
#                     /etc/ssl/certs/ca-certificates.crt, so a TLS-inspecting proxy the machine trusts
#                     works in the build too; empty: pip's own); mounted, not kept in the image
#   BUILD_ARGS        more `buildah bud` arguments (e.g. "--layers")
# The base image python:3.11-slim-bookworm must be in local storage: pulled from a registry, or made
# by docker/base-standin.sh. Nothing is pulled (--pull=never). Runs `buildah bud --isolation chroot`
# (no OCI runtime or cgroup set-up needed), as root.
set -euo pipefail

variant="${1:-}"
case "$variant" in
    cpu)  config=configs/serve.yaml ;;
    cuda) config=configs/serve-gpu.yaml ;;
    *) echo "usage: $0 cpu|cuda [TAG]" >&2; exit 2 ;;
esac
tag="${2:-prorank-serve:$variant}"
cd "$(dirname "$0")/.."
command -v buildah >/dev/null || { echo "build: buildah is not installed (apt-get install buildah)" >&2; exit 2; }

args=(--isolation chroot --network host --pull=never --format docker
      --build-arg "TORCH=$variant" --build-arg "SERVE_CONFIG=$config" -t "$tag")
if [ "$variant" = cpu ] && [ -n "${TORCH_WHEELS_DIR:-}" ]; then
    [ -d "$TORCH_WHEELS_DIR" ] || { echo "build: TORCH_WHEELS_DIR=$TORCH_WHEELS_DIR is not a folder" >&2; exit 2; }
    args+=(--volume "$(cd "$TORCH_WHEELS_DIR" && pwd):/wheels:ro" --build-arg TORCH_WHEELS=/wheels)
fi
ca="${BUILD_CA_FILE-/etc/ssl/certs/ca-certificates.crt}"
if [ -n "$ca" ] && [ -f "$ca" ]; then
    args+=(--volume "$(realpath "$ca"):/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi
if revision="$(git rev-parse HEAD 2>/dev/null)"; then  # which code the image holds
    [ -z "$(git status --porcelain -- Dockerfile pyproject.toml constraints.txt README.md prorank serve train configs)" ] \
        || revision="$revision+uncommitted-changes"
    args+=(--label "org.opencontainers.image.revision=$revision")
fi
# shellcheck disable=SC2206  # BUILD_ARGS is split on purpose
args+=(${BUILD_ARGS:-})

start=$(date +%s)
echo "+ buildah bud ${args[*]} ." >&2
buildah bud "${args[@]}" .
echo "build: $tag in $(( $(date +%s) - start ))s" >&2
buildah images "$tag" >&2
