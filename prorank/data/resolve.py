"""Find a BEIR dataset by path or name, downloading it with ``beir`` when it is nowhere local.

``resolve_dataset("scifact")`` looks, in order, at: the argument as a path; ``<data_dir>/scifact``
(``data_dir`` defaults to ``$PRORANK_DATA_DIR``); ``$PRORANK_HOME/datasets/scifact`` (an earlier
download); and finally downloads BEIR's zip with ``beir.util.download_and_unzip`` into
``$PRORANK_HOME/datasets`` (needs internet).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from prorank.data.beir import CORPUS_FILE, BeirDataset, DatasetError, load_folder

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _is_dataset(folder: Path) -> bool:
    return (folder / CORPUS_FILE).is_file()


def datasets_home() -> Path:
    from prorank.paths import prorank_home

    return prorank_home() / "datasets"


def download_beir(name: str, dest_root: str | Path | None = None) -> Path:
    """Download and unzip BEIR dataset ``name`` into ``dest_root/name`` (atomic rename)."""
    if not _NAME.match(name):
        raise DatasetError(f"dataset: {name!r} is not a valid BEIR dataset name")
    from prorank.atomic import atomic_dir

    root = Path(dest_root) if dest_root is not None else datasets_home()
    target = root / name
    try:
        from beir import util as beir_util
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("downloading BEIR datasets needs `pip install prorank[eval]` (beir)") from err
    with atomic_dir(target) as tmp:
        try:
            unpacked = Path(beir_util.download_and_unzip(BEIR_URL.format(name=name), str(tmp)))
        except Exception as err:  # network errors come in many types
            raise DatasetError(
                f"dataset {name!r} is not a local folder and could not be downloaded from "
                f"{BEIR_URL.format(name=name)} (point --data-dir or $PRORANK_DATA_DIR at a folder "
                f"holding it): {err}"
            ) from err
        if not _is_dataset(unpacked):
            raise DatasetError(f"downloaded {name!r} but found no {CORPUS_FILE} in {unpacked}")
        for item in unpacked.iterdir():  # flatten <tmp>/<name>/* into <tmp>/*
            shutil.move(str(item), tmp / item.name)
        unpacked.rmdir()
        for leftover in tmp.glob("*.zip"):
            leftover.unlink()
    return target


def resolve_dataset(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                    download: bool = True) -> Path:
    """Return the folder of a BEIR dataset given as a path or a name (see module doc)."""
    raw = os.fspath(name_or_path)
    if not raw:
        raise DatasetError("dataset: empty name or path")
    path = Path(raw).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DatasetError(f"dataset: {path} is not a directory")
        return path
    candidates = []
    root = data_dir if data_dir is not None else os.environ.get("PRORANK_DATA_DIR")
    if root:
        candidates.append(Path(root).expanduser() / raw)
    candidates.append(datasets_home() / raw)
    for candidate in candidates:
        if _is_dataset(candidate):
            return candidate
    if not download or "/" in raw or os.sep in raw:
        looked = ", ".join(str(c) for c in [path, *candidates])
        raise DatasetError(f"dataset {raw!r} not found (looked in: {looked})")
    return download_beir(raw)


def load_dataset(name_or_path: str | os.PathLike, split: str = "test",
                 data_dir: str | os.PathLike | None = None, strict: bool = False,
                 download: bool = True) -> BeirDataset:
    """Resolve ``name_or_path`` (see ``resolve_dataset``) and load one split of it."""
    folder = resolve_dataset(name_or_path, data_dir=data_dir, download=download)
    return load_folder(folder, split=split, strict=strict)
