"""Labelled (query, document, label) pairs for the stage-1 warmup and its held-out measurement.

Two sources:

* a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``): for every query with
  at least one judged-relevant document, its positives come from the qrels and its negatives are
  sampled from the BM25 ranking by ``prorank.train.negatives.mine_negatives`` (configurable rank
  window, judged positives never used), ``negatives_per_positive`` negatives per positive;
* a plain JSONL file of ``{"query": ..., "document": ..., "label": 0|1}`` rows (MS MARCO-style
  user data; ``document`` may also be ``{"title", "text"}``; ``qid``/``docid`` optional).

``prompt_rows`` turns pairs into training rows ``{"prompt", "label", "qid", "docid"}`` whose
``prompt`` is exactly ``PromptBuilder(tokenizer, max_length).encode(query, document).text``, the
same prompt the reranker scores at inference. Everything is deterministic under ``seed``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

from prorank.atomic import atomic_write_text
from prorank.data import BeirDataset, load_dataset, read_json_lines
from prorank.prompt import Document, PromptBuilder, document_text
from prorank.train.negatives import mine_negatives, positives, ranked_docids
from prorank.train.rewards import normalize_label

__all__ = [
    "Pair", "load_beir", "bm25_searcher", "beir_pairs",
    "read_jsonl_pairs", "write_jsonl_pairs", "prompt_rows", "label_counts",
]


@dataclass(frozen=True)
class Pair:
    """One labelled pair; ``label`` is ``"1"`` (relevant) or ``"0"``."""

    query: str
    document: Document
    label: str
    qid: str = ""
    docid: str = ""


def load_beir(dataset: str | Path, split: str, data_dir: str | Path | None = None) -> BeirDataset:
    """One split of a BEIR folder or dataset name (``prorank.data.load_dataset``, no download)."""
    return load_dataset(dataset, split=split, data_dir=data_dir, download=False)


def bm25_searcher(dataset_path: str | Path) -> Any:
    """A BM25 searcher over the dataset's corpus (the index is built on first use)."""
    from prorank.retrieval.bm25 import BM25Searcher

    return BM25Searcher.for_dataset(Path(dataset_path))


def beir_pairs(
    data: BeirDataset,
    searcher: Any,
    *,
    depth: int = 100,
    window: Sequence[int] | None = None,
    negatives_per_positive: int = 1,
    max_queries: int | None = None,
    max_positives_per_query: int | None = None,
    exclude_judged: bool = False,
    seed: int = 0,
    progress: bool = True,
    exclude_qids: Collection[str] = (),
) -> list[Pair]:
    """Positives from qrels plus BM25 negatives, shuffled under ``seed``.

    ``searcher`` is a ``search(query, k)`` object or a precomputed run ``qid -> ranked docids``.
    Only queries with a relevant document in the corpus and not in ``exclude_qids`` are used; with
    ``max_queries`` a seeded sample of them. Each query gets ``negatives_per_positive * n_positives``
    negatives (fewer if the window holds fewer non-positive candidates). Positives are the lowest
    docids first (stage 2's ``prorank.train.sources.positives_of`` takes the best grades first: the
    pairs of the adopted stage-1 runs are kept as they were drawn).
    """
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be >= 0, got {negatives_per_positive}")
    rng = random.Random(f"prorank-pairs:{seed}")
    excluded = frozenset(exclude_qids)
    qids = sorted(
        q for q in data.queries
        if q not in excluded and any(d in data.corpus for d in positives(data.qrels.get(q)))
    )
    if max_queries is not None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        qids = sorted(rng.sample(qids, min(max_queries, len(qids))))
    chosen = {q: data.queries[q] for q in qids}
    run = ranked_docids(searcher, chosen, depth, progress=progress)
    pairs: list[Pair] = []
    for qid in qids:
        pos = sorted(d for d in positives(data.qrels.get(qid)) if d in data.corpus)
        if max_positives_per_query is not None:
            pos = pos[:max_positives_per_query]
        negs = mine_negatives(
            {qid: [d for d in run[qid] if d in data.corpus]},
            {qid: chosen[qid]},
            data.qrels,
            depth=depth,
            window=window,
            per_query=negatives_per_positive * len(pos),
            seed=seed,
            exclude_judged=exclude_judged,
            progress=False,
        )[qid]
        pairs += [Pair(chosen[qid], data.corpus[d], "1", qid, d) for d in pos]
        pairs += [Pair(chosen[qid], data.corpus[d], "0", qid, d) for d in negs]
    rng.shuffle(pairs)
    return pairs


def read_jsonl_pairs(path: str | Path) -> list[Pair]:
    """Pairs from a JSONL file of ``{"query", "document", "label"}`` rows (order kept); optional
    ``qid`` and ``docid``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jsonl: pairs file not found: {path}")
    out = []
    for n, row in read_json_lines(path):
        for key in ("query", "document", "label"):
            if key not in row:
                raise ValueError(f"{path}:{n}: row lacks {key!r} (need query, document, label)")
        document_text(row["document"], field=f"{path}:{n}: document")
        try:
            label = normalize_label(row["label"])
        except ValueError as err:
            raise ValueError(f"{path}:{n}: {err}") from None
        out.append(Pair(str(row["query"]), row["document"], label, str(row.get("qid", "")),
                        str(row.get("docid", ""))))
    if not out:
        raise ValueError(f"jsonl: {path} holds no pairs")
    return out


def write_jsonl_pairs(pairs: Iterable[Pair], path: str | Path) -> Path:
    """Write pairs as plain JSONL rows (the format ``read_jsonl_pairs`` reads), atomically."""
    lines = [
        json.dumps({"qid": p.qid, "docid": p.docid, "query": p.query, "document": p.document, "label": p.label},
                   ensure_ascii=False)
        for p in pairs
    ]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def prompt_rows(
    pairs: Sequence[Pair], builder: PromptBuilder, instruction: str | None = None
) -> list[dict[str, str]]:
    """Training rows ``{"prompt", "label", "qid", "docid"}`` with the shared, truncated prompt."""
    return [{"prompt": builder.encode(p.query, p.document, instruction).text,
             "label": p.label, "qid": p.qid, "docid": p.docid} for p in pairs]


def balanced_order(pairs: Sequence[Pair], seed: int = 0) -> list[Pair]:
    """``pairs`` alternating ``1, 0, 1, 0, ...``, each label's pairs in a seeded random order, the
    surplus of the larger label last: every run of an even number of consecutive pairs (from the
    start) holds as many relevant as non-relevant ones. Read in order (no shuffling), each GRPO
    step then sees both labels equally often.

    >>> [p.label for p in balanced_order([Pair("q", "d", l) for l in "0001011"])]
    ['1', '0', '1', '0', '1', '0', '0']
    """
    rng = random.Random(f"prorank-balanced:{seed}")
    by_label = {lab: [p for p in pairs if p.label == lab] for lab in ("1", "0")}
    for group in by_label.values():
        rng.shuffle(group)
    ones, zeros = by_label["1"], by_label["0"]
    out = [p for pair in zip(ones, zeros) for p in pair]
    n = min(len(ones), len(zeros))
    return out + ones[n:] + zeros[n:]


def label_counts(pairs: Iterable[Pair] | Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{"0": n_negative, "1": n_positive}``."""
    counts = {"0": 0, "1": 0}
    for p in pairs:
        lab = p.label if isinstance(p, Pair) else p["label"]
        counts[lab] = counts.get(lab, 0) + 1
    return counts
