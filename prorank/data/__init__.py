"""BEIR-format test collections: loading with validation, lookup by name, download."""

from prorank.data.beir import (
    BeirDataset,
    DatasetError,
    available_splits,
    load_corpus,
    load_folder,
    load_qrels,
    load_queries,
    natural_key,
    read_json_lines,
)
from prorank.data.resolve import download_beir, load_dataset, resolve_dataset

__all__ = [
    "BeirDataset",
    "DatasetError",
    "available_splits",
    "download_beir",
    "load_corpus",
    "load_dataset",
    "load_folder",
    "load_qrels",
    "load_queries",
    "natural_key",
    "read_json_lines",
    "resolve_dataset",
]
