"""The service image: static checks of the Dockerfile (everywhere), and an opt-in smoke test of a
built image (``docker/smoke.py``, where buildah and the image are; it never builds one).

    docker/build.sh cpu                                                     # as root, once
    PRORANK_DOCKER_IMAGE=prorank-serve:cpu python -m pytest -q tests/test_docker.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGE_ENV = "PRORANK_DOCKER_IMAGE"


def _instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(op.upper(), args.strip()) for op, _, args in (line.strip().partition(" ") for line in joined.splitlines())
            if op]


def test_dockerfile_copies_files_that_exist_in_the_build_context():
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    sources = [src for op, args in _instructions() if op == "COPY" for src in args.split()[:-1]]
    assert "pyproject.toml" in sources and "prorank" in sources
    for src in sources:
        assert (REPO / src).exists(), f"the Dockerfile copies {src}, which does not exist"
        assert src.split("/")[0] not in ignored, f"the Dockerfile copies {src}, which .dockerignore leaves out"


def test_dockerfile_serves_existing_configs_as_a_non_root_user():
    instructions = _instructions()
    args = dict(arg.split("=", 1) for op, arg in instructions if op == "ARG" and "=" in arg)
    assert args["TORCH"] == "cuda"  # the CUDA build stays the default
    configs = [args["SERVE_CONFIG"], *re.findall(r"config=(configs/\S+\.yaml)", (REPO / "docker/build.sh").read_text())]
    for config in configs:
        assert (REPO / config).is_file(), config
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users


@pytest.mark.slow
def test_built_image_serves(tmp_path):
    """The image's CMD starts offline, answers the Cohere SDK and /v1/search, honours
    PRORANK_API_KEY and stops on SIGTERM (docker/smoke.py, minutes)."""
    image = os.environ.get(IMAGE_ENV)
    if not image:
        pytest.skip(f"opt-in: build the image (docker/build.sh cpu) and set {IMAGE_ENV}=prorank-serve:cpu")
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed, so the image cannot run here (apt-get install buildah)")
    if os.geteuid() != 0:
        pytest.skip("buildah run --isolation chroot needs root")
    if subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True).returncode != 0:
        pytest.skip(f"image {image} is not in buildah's storage: build it with docker/build.sh cpu")
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(REPO / "docker" / "smoke.py"), "--image", image, "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.is_file(), done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert done.returncode == 0 and record["ok"], record.get("error")
    for start in record["starts"].values():
        assert start["service_process"]["uid"] != 0
        assert start["stop"]["exit_code"] == 0 and not start["stop"]["left_running"]
    assert record["starts"]["api_key_and_index"]["responses"]["status_codes"]["models_without_key"] == 401
