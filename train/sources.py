"""Training and dev collections of both stages: several BEIR datasets, each with its split.

A :class:`DataSource` names one collection and split (``scifact`` + ``train``, ``nfcorpus`` +
``dev``, ...), how many of its judged queries to use (a seeded sample) and how many judged
positives per query. ``load_sources`` resolves a list of them for training and another for the
dev set: when a dev source is the same collection *and* split as a training source, its sampled
queries are held out of training, so the dev set can come from any of them and is never trained
on. Everything is deterministic under ``seed``.

In YAML a source is a mapping (``{dataset: nfcorpus, split: train, max_queries: 800}``) or the
short form ``nfcorpus:train``. ``negatives_from: candidates`` takes a training source's negatives
from the collection's given candidates (``candidates/<split>.tsv``, :mod:`prorank.data.candidates`:
MS MARCO's BM25 top 20, WikiQA's sentences of the answer page) instead of mining BM25.

Queries whose split holds no relevant document are skipped and counted (``skipped_no_positive``
in :func:`describe`, which both stages write into their run records).

Both stages load their training sources here (``load_data``, ``training_source``: data and checked
candidates) and leave out the same dev queries (``held_out``). Which queries and positives a
source contributes differs: stage 2 samples with :func:`sample` and takes the best grades first
(:func:`positives_of`); stage 1 draws them in ``prorank.train.pairs.beir_pairs`` (its own seeded
sample, lowest docids first), so that the pairs of the runs its adopted recipe was chosen by
stay exactly reproducible.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from prorank.config import check_positive, option
from prorank.data import BeirDataset, DatasetError, load_dataset

NEGATIVES_FROM = ("bm25", "candidates")


@dataclass
class DataSource:
    """One collection and qrels split; YAML ``{dataset, split, max_queries, ...}`` or ``name:split``."""

    dataset: str = option(dataclasses.MISSING, "BEIR folder, or a name under data_dir / $PRORANK_DATA_DIR")
    split: str = option("train", "qrels split")
    max_queries: int | None = option(None, "seeded sample of the judged queries (after the dev hold-out)")
    max_positives_per_query: int | None = option(None, "judged positives per query (default: all)")
    negatives_from: Literal["bm25", "candidates"] = option(
        "bm25", "where a training query's negatives come from: BM25 over the corpus, or the collection's "
        "given candidates (candidates/<split>.tsv, label 0 lines)")

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("datasets: a source needs a dataset (folder or name)")
        if self.negatives_from not in NEGATIVES_FROM:
            raise ValueError(f"datasets: negatives_from must be one of {list(NEGATIVES_FROM)}, "
                             f"got {self.negatives_from!r}")
        for name in ("max_queries", "max_positives_per_query"):
            check_positive(name, getattr(self, name), optional=True)

    @classmethod
    def from_string(cls, text: str) -> "DataSource":
        """``"name"`` or ``"name:split"``."""
        name, _, split = text.partition(":")
        return cls(dataset=name, split=split or "train")

    @property
    def label(self) -> str:
        return f"{Path(self.dataset).name}:{self.split}"


@dataclass
class LoadedSource:
    """A source with its data and the judged query ids it contributes."""

    spec: DataSource
    data: BeirDataset
    qids: list[str] = field(default_factory=list)
    candidates: Any = None  # prorank.data.candidates.Candidates when negatives_from is candidates

    @property
    def key(self) -> tuple[str, str]:
        return (str(Path(self.data.path).resolve()), self.spec.split)

    def given_negatives(self) -> dict[str, list[str]] | None:
        """``qid -> negatives`` from the collection's candidates file, or None for BM25 mining."""
        return None if self.candidates is None else self.candidates.negatives()


def given_candidates(spec: DataSource, data: BeirDataset) -> Any:
    """The split's candidates file (checked) for a ``negatives_from: candidates`` source, else None."""
    if spec.negatives_from != "candidates":
        return None
    from prorank.data.candidates import dataset_candidates

    return dataset_candidates(data)


def skipped_queries(data: BeirDataset, candidates: Any = None) -> list[str]:
    """Queries of the split (judged, or listed in its candidates) with no relevant document."""
    skipped = {q for q, docs in data.qrels.items() if not any(g > 0 for g in docs.values())}
    if candidates is not None:
        skipped |= set(candidates.without_positive(data.qrels))
    return sorted(skipped)


def load_data(spec: DataSource, data_dir: str | None) -> BeirDataset:
    """The collection and split ``spec`` names (no download); errors name both."""
    try:
        data = load_dataset(spec.dataset, split=spec.split, data_dir=data_dir, download=False)
    except DatasetError as err:
        raise DatasetError(f"dataset {spec.dataset!r}, split {spec.split!r}: {err}") from None
    if not data.qrels:
        raise DatasetError(f"dataset {spec.dataset!r} has no judged queries in split {spec.split!r}")
    return data


def training_source(spec: DataSource, data: BeirDataset) -> LoadedSource:
    """A training source with its given candidates (checked here, so a bad file fails before
    training); its queries are chosen by the stage that reads it."""
    return LoadedSource(spec, data, candidates=given_candidates(spec, data))


def held_out(dev_sets: Sequence[LoadedSource]) -> dict[tuple[str, str], set[str]]:
    """``(collection path, split) -> dev query ids``: what training on that split must leave out."""
    held: dict[tuple[str, str], set[str]] = {}
    for d in dev_sets:
        held.setdefault(d.key, set()).update(d.qids)
    return held


def judged(data: BeirDataset) -> list[str]:
    """Judged query ids with at least one relevant document and a query text, sorted."""
    return sorted(q for q, docs in data.qrels.items() if q in data.queries and any(g > 0 for g in docs.values()))


def sample(qids: Sequence[str], n: int | None, seed: int, salt: str) -> list[str]:
    """A seeded sample of ``n`` ids (all when ``n`` is None or larger), sorted."""
    ordered = sorted(qids)
    if n is None or n >= len(ordered):
        return ordered
    return sorted(random.Random(f"prorank-sources:{seed}:{salt}").sample(ordered, n))


def load_sources(train: Sequence[DataSource], dev: Sequence[DataSource], data_dir: str | None = None,
                 seed: int = 0) -> tuple[list[LoadedSource], list[LoadedSource]]:
    """Load every source; dev queries are sampled first and held out of matching training sources."""
    loaded: dict[tuple[str, str], BeirDataset] = {}

    def get(spec: DataSource) -> BeirDataset:
        if (spec.dataset, spec.split) not in loaded:
            loaded[(spec.dataset, spec.split)] = load_data(spec, data_dir)
        return loaded[(spec.dataset, spec.split)]

    dev_sets = []
    for spec in dev:
        data = get(spec)
        dev_sets.append(LoadedSource(spec, data, sample(judged(data), spec.max_queries, seed, f"dev:{spec.label}")))
    held = held_out(dev_sets)
    train_sets = []
    for spec in train:
        source = training_source(spec, get(spec))
        pool = [q for q in judged(source.data) if q not in held.get(source.key, set())]
        source.qids = sample(pool, spec.max_queries, seed, f"train:{spec.label}")
        if not source.qids:
            raise DatasetError(f"{spec.label}: no judged training queries left after the dev hold-out")
        train_sets.append(source)
    return train_sets, dev_sets


def positives_of(judgments: dict[str, int], limit: int | None, seed: int, qid: str) -> list[tuple[str, int]]:
    """Judged positives ``(docid, grade)``, best grade first (seeded order among equal grades),
    at most ``limit``."""
    pos = sorted((str(d), int(g)) for d, g in judgments.items() if int(g) > 0)
    random.Random(f"prorank-positives:{seed}:{qid}").shuffle(pos)
    pos.sort(key=lambda dg: -dg[1])
    return pos if limit is None else pos[:limit]


def describe(sources: Sequence[LoadedSource]) -> list[dict[str, Any]]:
    """What each source contributed, with portable paths (for checkpoints and summaries)."""
    from prorank.evaluation.provenance import portable_path

    return [{"dataset": s.data.name, "path": portable_path(s.data.path), "split": s.spec.split,
             "queries": len(s.qids), "max_positives_per_query": s.spec.max_positives_per_query,
             "negatives_from": s.spec.negatives_from,
             "skipped_no_positive": len(skipped_queries(s.data, s.candidates))} for s in sources]
