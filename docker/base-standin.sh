#!/usr/bin/env bash
# A stand-in for the Dockerfile's base image, python:3.11-slim-bookworm, made from Debian's own
# packages, for a machine that reaches Debian's mirror and PyPI but no container registry.
#
#   sudo docker/base-standin.sh                 # -> localhost/python:3.11-slim-bookworm (buildah/podman storage)
#   sudo docker/base-standin.sh my/python:tag   # another name
#
# What the Dockerfile needs of the real image, and how the stand-in provides it:
#   Debian 12 (bookworm)            mmdebstrap --variant=minbase bookworm (apt and dpkg included)
#   Python 3.11                     Debian's python3.11 (3.11.2; the official image builds 3.11.x itself)
#   python, pip on PATH             a virtual environment at /usr/local: /usr/local/bin/{python,python3,pip,pip3},
#                                   packages in /usr/local/lib/python3.11/site-packages, as in the official image
#   certificates, netbase, tzdata   installed, as in the official image
#   LANG=C.UTF-8, CMD python3       set, as in the official image
# The Dockerfile then builds unchanged: `FROM python:3.11-slim-bookworm` resolves to this local image
# (build with --pull=never so nothing tries the registry).
#
# Needs root (mmdebstrap's root mode, buildah's storage), mmdebstrap and buildah
# (`apt-get install mmdebstrap buildah`), about 4 minutes and 500 MB of disk.
set -euo pipefail

TAG="${1:-python:3.11-slim-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
for tool in mmdebstrap buildah; do
    command -v "$tool" >/dev/null || { echo "base-standin: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "base-standin: run as root (mmdebstrap and buildah's storage need it)" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/var/tmp}/prorank-base.XXXXXX")"
ctr=""
cleanup() {
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "base-standin: building a Debian 12 root file system from $MIRROR ..." >&2
mmdebstrap --variant=minbase --quiet \
    --include=python3.11,python3.11-venv,ca-certificates,netbase,tzdata \
    --customize-hook='chroot "$1" python3.11 -m venv /usr/local' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$work/rootfs.tar" "$MIRROR"

echo "base-standin: importing it as $TAG ..." >&2
ctr="$(buildah from scratch)"
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
python_version="$(tar -xOf "$work/rootfs.tar" ./usr/local/pyvenv.cfg | sed -n 's/^version *= *//p')"
buildah config \
    --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env PYTHON_VERSION="$python_version" \
    --cmd python3 \
    --label org.opencontainers.image.description="stand-in for python:3.11-slim-bookworm built by docker/base-standin.sh from Debian bookworm packages (python3.11 $python_version, venv at /usr/local)" \
    --label org.opencontainers.image.base.name="debian:bookworm (mmdebstrap minbase)" \
    "$ctr"
buildah commit --quiet --rm "$ctr" "$TAG" >/dev/null
ctr=""
echo "base-standin: done: $TAG (Python $python_version)" >&2
buildah images "$TAG" >&2
