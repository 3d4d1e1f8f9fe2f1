"""Stage-2 training groups: BEIR qrels + negatives, JSONL triples and scored lists."""

from __future__ import annotations

import json

import pytest
import torch

from prorank.train.groups import (
    Group,
    build_groups,
    encode_groups,
    parse_group,
    read_jsonl_groups,
    scatter_scores,
    write_jsonl_groups,
)

CORPUS = {f"d{i}": {"title": f"t{i}", "text": f"text {i}"} for i in range(12)}
QUERIES = {"q1": "first query", "q2": "second query", "q3": "no negatives"}
QRELS = {"q1": {"d0": 1, "d1": 2, "d9": 0}, "q2": {"d2": 3}, "q3": {"d3": 1}}
NEGATIVES = {"q1": ["d4", "d5", "d6", "d9", "d0"], "q2": ["d7", "d8"], "q3": []}


def test_build_groups_one_per_positive_with_grades() -> None:
    groups = build_groups(CORPUS, QUERIES, QRELS, NEGATIVES, n_negatives=3, seed=0)
    assert [(g.qid, g.docids[0], g.labels[0]) for g in groups] == [("q1", "d0", 1.0), ("q1", "d1", 2.0), ("q2", "d2", 3.0)]
    for g in groups:
        positives = {d for d, r in QRELS[g.qid].items() if r > 0}
        assert not positives & set(g.docids[1:]), "a judged positive was used as a negative"
        assert g.labels[1:] == (0.0,) * (len(g.docs) - 1)
        assert g.docs[0] == CORPUS[g.docids[0]]
    assert len(groups[0].docs) == 4 and len(groups[2].docs) == 3  # q2 has only 2 negatives


def test_build_groups_is_deterministic_and_seeded() -> None:
    a = build_groups(CORPUS, QUERIES, QRELS, NEGATIVES, n_negatives=2, seed=0)
    b = build_groups(CORPUS, QUERIES, QRELS, NEGATIVES, n_negatives=2, seed=0)
    assert a == b
    seeds = {tuple(g.docids for g in build_groups(CORPUS, QUERIES, QRELS, NEGATIVES, 2, seed=s)) for s in range(8)}
    assert len(seeds) > 1


def test_parse_triples_and_scored_lists() -> None:
    triple = parse_group({"query": "q", "positive": "p", "negative": "n"})
    assert triple.docs == ("p", "n") and triple.labels == (1.0, 0.0) and triple.teacher is None
    many = parse_group({"query": "q", "positive": {"title": "T", "text": "p"}, "negatives": ["a", "b"]})
    assert many.docs[0] == {"title": "T", "text": "p"} and many.labels == (1.0, 0.0, 0.0)
    scored = parse_group({"query": "q", "documents": ["a", "b", "c"], "scores": [0.1, 2.5, -1.0]})
    assert scored.docs == ("b", "a", "c") and scored.teacher == (2.5, 0.1, -1.0)
    assert scored.labels == (1.0, 0.0, 0.0)
    graded = parse_group({"query": "q", "documents": ["a", "b"], "labels": [0, 2], "docids": ["x", "y"],
                          "instruction": "find"})
    assert graded.docs == ("b", "a") and graded.labels == (2.0, 0.0) and graded.docids == ("y", "x")
    assert graded.instruction == "find"


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"positive": "p", "negative": "n"}, "query"),
        ({"query": "q", "positive": "p"}, "negative"),
        ({"query": "q", "documents": ["a"]}, "scores"),
        ({"query": "q", "documents": ["a", "b"], "scores": [1.0]}, "scores"),
        ({"query": "q", "positive": 3, "negative": "n"}, "document"),
    ],
)
def test_parse_errors_name_the_field(obj, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_group(obj, "f.jsonl:1")


def test_jsonl_roundtrip(tmp_path) -> None:
    groups = build_groups(CORPUS, QUERIES, QRELS, NEGATIVES, n_negatives=2, seed=0)
    groups.append(Group(query="q", docs=("a", "b"), labels=(1.0, 0.0), teacher=(3.0, 1.0)))
    path = write_jsonl_groups(groups, tmp_path / "g.jsonl")
    assert read_jsonl_groups(path) == groups
    (tmp_path / "bad.jsonl").write_text('{"query": "q", "positive": "p", "negative": "n"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_jsonl_groups(tmp_path / "bad.jsonl")


def test_encode_groups_masks_ragged_groups(real_tokenizer) -> None:
    from prorank.prompt import PromptBuilder

    builder = PromptBuilder(real_tokenizer, 160)
    groups = [Group("q1", ("a", "b", "c"), (1.0, 0.0, 0.0)), Group("q2", ("d", "e"), (2.0, 0.0))]
    batch = encode_groups(groups, builder)
    assert len(batch.prompts) == 5 and batch.teacher is None
    assert batch.mask.tolist() == [[True, True, True], [True, True, False]]
    assert batch.labels.tolist() == [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    assert batch.prompts[3] == builder.encode("q2", "d").input_ids
    flat = torch.arange(5, dtype=torch.float32, requires_grad=True)
    grid = scatter_scores(flat, batch.mask)
    assert grid.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 0.0]]
    grid.sum().backward()
    assert flat.grad.tolist() == [1.0] * 5


def test_groups_from_beir_json_dump_is_plain_json() -> None:
    groups = build_groups(CORPUS, QUERIES, QRELS, NEGATIVES, n_negatives=1, seed=0)
    from prorank.train.groups import group_to_json

    assert json.loads(json.dumps(group_to_json(groups[0])))["docids"][0] == "d0"
