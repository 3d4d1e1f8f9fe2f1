"""Stage-2 training groups: one query, one positive first, then hard negatives.

A :class:`Group` is what a listwise loss sees as one row of the ``[groups, docs]`` score tensor.
Two sources:

- **BEIR folders** (:func:`build_groups`): for every judged positive ``(query, doc, grade > 0)``
  of the train split, one group ``[positive, n negatives]``. Negatives are BM25 hard negatives from
  :func:`prorank.train.negatives.mine_negatives` (ranks inside a configurable window, judged
  positives never used). Graded relevance is kept: the positive's label is its qrels grade
  (Cranfield 1-4), negatives get 0.
- **Plain JSONL** (:func:`read_jsonl_groups`), one object per line, for user data:

  * triples (MS MARCO style): ``{"query": q, "positive": doc, "negative": doc}`` or
    ``"negatives": [doc, ...]``;
  * teacher-scored lists: ``{"query": q, "documents": [doc, ...], "scores": [float, ...]}``
    with optional ``"labels": [grade, ...]`` (default: the top-scored document is the positive).

  A ``doc`` is a string or ``{"title": ..., "text": ...}``; every line may carry
  ``"instruction"``. Lists are reordered so the best document (highest label, then highest teacher
  score) is in column 0, which the listwise and MarginMSE losses expect.

Everything is deterministic under ``seed``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from prorank.data import read_json_lines
from prorank.prompt import Document


@dataclass(frozen=True)
class Group:
    """One training group: ``docs[0]`` is the positive; ``labels`` are graded relevance."""

    query: str
    docs: tuple[Document, ...]
    labels: tuple[float, ...]
    teacher: tuple[float, ...] | None = None
    qid: str | None = None
    docids: tuple[str, ...] | None = None
    instruction: str | None = None

    def __post_init__(self) -> None:
        if len(self.docs) < 1:
            raise ValueError("a group needs at least one document")
        if len(self.labels) != len(self.docs):
            raise ValueError(f"group {self.qid}: {len(self.labels)} labels for {len(self.docs)} docs")
        if self.teacher is not None and len(self.teacher) != len(self.docs):
            raise ValueError(f"group {self.qid}: {len(self.teacher)} teacher scores for {len(self.docs)} docs")


def build_groups(
    corpus: Mapping[str, Document],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    negatives: Mapping[str, Sequence[str]],
    n_negatives: int,
    seed: int = 0,
    max_positives: int | None = None,
) -> list[Group]:
    """One group per judged positive: ``[positive, n_negatives sampled from negatives[qid]]``.

    ``negatives`` is the per-query pool from ``mine_negatives`` (may be larger than
    ``n_negatives``; each group samples its own subset, seeded by ``(seed, qid, docid)``).
    Positives missing from the corpus and queries without negatives are skipped; with
    ``max_positives`` a query gives at most that many groups (best grades first).
    """
    from prorank.train.sources import positives_of

    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    groups: list[Group] = []
    for qid in sorted(qrels, key=str):
        if qid not in queries:
            continue
        judged = qrels[qid]
        pos_ids = {str(d) for d, g in judged.items() if int(g) > 0}
        pos = sorted(positives_of(judged, max_positives, seed, qid)) if max_positives else sorted(
            (str(d), int(g)) for d, g in judged.items() if int(g) > 0)
        pool = [d for d in negatives.get(qid, []) if d not in pos_ids and d in corpus]
        if not pool:
            continue
        for docid, grade in pos:
            if docid not in corpus:
                continue
            rng = random.Random(f"prorank-groups:{seed}:{qid}:{docid}")
            picked = pool if len(pool) <= n_negatives else rng.sample(pool, n_negatives)
            ids = (docid, *picked)
            groups.append(
                Group(
                    query=queries[qid],
                    docs=tuple(corpus[d] for d in ids),
                    labels=(float(grade),) + (0.0,) * len(picked),
                    qid=str(qid),
                    docids=tuple(ids),
                )
            )
    return groups


def group_to_json(group: Group) -> dict[str, Any]:
    """The JSONL object of a group (the scored-list form, read back by :func:`parse_group`)."""
    obj: dict[str, Any] = {"query": group.query, "documents": list(group.docs), "labels": list(group.labels)}
    if group.teacher is not None:
        obj["scores"] = list(group.teacher)
    if group.qid is not None:
        obj["qid"] = group.qid
    if group.docids is not None:
        obj["docids"] = list(group.docids)
    if group.instruction is not None:
        obj["instruction"] = group.instruction
    return obj


def write_jsonl_groups(groups: Iterable[Group], path: str | Path) -> Path:
    """Write groups as JSONL (atomically)."""
    from prorank.atomic import atomic_write_text

    lines = [json.dumps(group_to_json(g), ensure_ascii=False) for g in groups]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _doc(value: Any, where: str) -> Document:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        return {"title": value.get("title") or "", "text": value["text"]}
    raise ValueError(f"{where}: a document must be a string or an object with a string 'text'")


def _floats(value: Any, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise ValueError(f"{where}: expected a list of {n} numbers")
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected numbers, got {value!r}") from None


def parse_group(obj: Mapping[str, Any], where: str = "group") -> Group:
    """One JSONL object (triple or scored list, see the module doc) as a :class:`Group`."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a JSON object")
    query = obj.get("query")
    if not isinstance(query, str) or not query:
        raise ValueError(f"{where}: field 'query' must be a non-empty string")
    instruction = obj.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise ValueError(f"{where}: field 'instruction' must be a string")
    qid = str(obj["qid"]) if "qid" in obj else None
    if "documents" in obj:
        raw = obj["documents"]
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"{where}: field 'documents' must be a non-empty list")
        docs = [_doc(d, f"{where}: documents[{i}]") for i, d in enumerate(raw)]
        teacher = _floats(obj["scores"], len(docs), f"{where}: field 'scores'") if "scores" in obj else None
        if "labels" in obj:
            labels = _floats(obj["labels"], len(docs), f"{where}: field 'labels'")
        elif teacher is not None:
            best = max(range(len(docs)), key=lambda i: teacher[i])
            labels = tuple(1.0 if i == best else 0.0 for i in range(len(docs)))
        else:
            raise ValueError(f"{where}: a 'documents' list needs 'scores' (teacher) or 'labels'")
        order = sorted(
            range(len(docs)),
            key=lambda i: (-labels[i], -(teacher[i] if teacher is not None else 0.0), i),
        )
        docids = None
        if "docids" in obj:
            if not isinstance(obj["docids"], list) or len(obj["docids"]) != len(docs):
                raise ValueError(f"{where}: field 'docids' must list one id per document")
            docids = tuple(str(obj["docids"][i]) for i in order)
        return Group(
            docids=docids,
            query=query,
            docs=tuple(docs[i] for i in order),
            labels=tuple(labels[i] for i in order),
            teacher=tuple(teacher[i] for i in order) if teacher is not None else None,
            qid=qid,
            instruction=instruction,
        )
    if "positive" not in obj:
        raise ValueError(f"{where}: needs 'positive' (+ 'negative'/'negatives') or 'documents'")
    positive = _doc(obj["positive"], f"{where}: positive")
    if "negatives" in obj:
        raw_neg = obj["negatives"]
        if not isinstance(raw_neg, list) or not raw_neg:
            raise ValueError(f"{where}: field 'negatives' must be a non-empty list")
    elif "negative" in obj:
        raw_neg = [obj["negative"]]
    else:
        raise ValueError(f"{where}: a triple needs 'negative' or 'negatives'")
    negs = [_doc(d, f"{where}: negatives[{i}]") for i, d in enumerate(raw_neg)]
    return Group(
        query=query,
        docs=(positive, *negs),
        labels=(1.0,) + (0.0,) * len(negs),
        qid=qid,
        instruction=instruction,
    )


def read_jsonl_groups(path: str | Path) -> list[Group]:
    """All groups of a JSONL file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training groups file not found: {path}")
    out = []
    for no, obj in read_json_lines(path):
        out.append(parse_group(obj, f"{path}:{no}"))
    if not out:
        raise ValueError(f"{path}: no training groups")
    return out


@dataclass
class GroupBatch:
    """Flattened prompts of several groups plus the ``[G, D]`` tensors the losses take."""

    prompts: list[list[int]]  # token ids, one per real document, row-major over groups
    labels: torch.Tensor  # [G, D] float
    mask: torch.Tensor  # [G, D] bool
    teacher: torch.Tensor | None  # [G, D] float or None


def encode_groups(groups: Sequence[Group], builder: Any) -> GroupBatch:
    """Encode each (query, doc) with ``builder`` (a :class:`prorank.prompt.PromptBuilder`)."""
    if not groups:
        raise ValueError("encode_groups needs at least one group")
    width = max(len(g.docs) for g in groups)
    labels = torch.zeros(len(groups), width)
    mask = torch.zeros(len(groups), width, dtype=torch.bool)
    with_teacher = all(g.teacher is not None for g in groups)
    teacher = torch.zeros(len(groups), width) if with_teacher else None
    prompts: list[list[int]] = []
    for row, g in enumerate(groups):
        encoded = builder.encode_many([(g.query, doc) for doc in g.docs], g.instruction)
        for col, prompt in enumerate(encoded):
            prompts.append(prompt.input_ids)
            labels[row, col] = g.labels[col]
            mask[row, col] = True
            if teacher is not None:
                teacher[row, col] = g.teacher[col]  # type: ignore[index]
    return GroupBatch(prompts=prompts, labels=labels, mask=mask, teacher=teacher)


def scatter_scores(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place per-document scores (row-major over the mask's ``True`` cells) into ``[G, D]``."""
    out = flat.new_zeros(mask.shape)
    return out.masked_scatter(mask.to(flat.device), flat)
