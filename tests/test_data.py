"""BEIR loading: the shared collections, agreement with beir's loader, and malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prorank.data import DatasetError, available_splits, load_dataset, load_folder, natural_key, resolve_dataset

# documents, queries, judged test queries, test judgments (shared/data/README.md)
EXPECTED = {
    "scifact": (5183, 1109, 300, 339),
    "cranfield": (1400, 225, 225, 1837),
    "cacm": (3204, 64, 52, 796),
    "med": (1033, 30, 30, 696),
    "adi": (82, 35, 35, 170),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_collections_load_with_expected_sizes(data_dir, name):
    ds = load_dataset(name, data_dir=data_dir)
    docs, queries, judged, judgments = EXPECTED[name]
    assert (len(ds.corpus), len(ds.queries), len(ds.qrels)) == (docs, queries, judged)
    assert sum(len(v) for v in ds.qrels.values()) == judgments
    assert ds.dropped == {}
    assert ds.name == name and ds.split == "test"
    assert set(ds.files) == {"corpus", "queries", "qrels"} and all(p.is_file() for p in ds.files.values())


def test_matches_beir_generic_data_loader(data_dir):
    from beir.datasets.data_loader import GenericDataLoader

    corpus, queries, qrels = GenericDataLoader(str(data_dir / "scifact")).load(split="test")
    ds = load_dataset(data_dir / "scifact")
    assert ds.qrels == qrels
    assert {q: ds.queries[q] for q in queries} == queries
    assert ds.corpus == {d: {"title": v.get("title", ""), "text": v["text"]} for d, v in corpus.items()}


def test_train_split_and_available_splits(data_dir):
    assert available_splits(data_dir / "scifact") == ["test", "train"]
    ds = load_dataset("scifact", split="train", data_dir=data_dir)
    assert len(ds.qrels) == 809 and sum(len(v) for v in ds.qrels.values()) == 919


def test_judged_query_ids_are_natural_order_and_deterministic(data_dir):
    ds = load_dataset("cranfield", data_dir=data_dir)
    first = ds.judged_query_ids(12)
    assert first == [str(i) for i in range(1, 13)]  # "10" after "9", not after "1"
    assert ds.judged_query_ids(12) == first
    assert ds.judged_query_ids() == sorted(ds.qrels, key=natural_key)
    with pytest.raises(ValueError, match="max_queries"):
        ds.judged_query_ids(0)


def test_natural_key_mixes_numbers_and_text():
    assert sorted(["b", "10", "a", "2"], key=natural_key) == ["2", "10", "a", "b"]


# --------------------------------------------------------------------------- malformed input
def make_folder(root: Path, corpus=None, queries=None, qrels=None, split="test") -> Path:
    """A small BEIR folder; each argument is the list of lines of that file."""
    folder = root / "mini"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = corpus if corpus is not None else [
        json.dumps({"_id": "d1", "title": "Alpha", "text": "alpha text"}),
        json.dumps({"_id": "d2", "text": "beta text"}),
        json.dumps({"_id": "d3", "title": "Gamma", "text": "gamma text", "metadata": {}}),
    ]
    queries = queries if queries is not None else [
        json.dumps({"_id": "q1", "text": "alpha?"}),
        json.dumps({"_id": "q2", "text": "beta?"}),
        json.dumps({"_id": "q3", "text": "never judged"}),
    ]
    qrels = qrels if qrels is not None else ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t2", "q2\td3\t0"]
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def test_small_folder_loads(tmp_path):
    ds = load_folder(make_folder(tmp_path))
    assert ds.corpus["d2"] == {"title": "", "text": "beta text"}
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert ds.judged_query_ids() == ["q1", "q2"]  # q3 has no judgments
    assert len(ds.queries) == 3


def test_qrels_header_is_optional(tmp_path):
    ds = load_folder(make_folder(tmp_path, qrels=["q1\td1\t1"]))
    assert ds.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize(
    "corpus, pattern",
    [
        (['{"_id": "d1", "text": "ok"}', '{"_id": "d2", "text": '], r"corpus\.jsonl:2: invalid JSON"),
        (['{"_id": "d1", "text": "ok"}', '["a list"]'], r"corpus\.jsonl:2: expected a JSON object"),
        (['{"title": "no id", "text": "x"}'], r"corpus\.jsonl:1: missing field '_id'"),
        (['{"_id": "d1", "title": "no text"}'], r"corpus\.jsonl:1: missing field 'text'"),
        (['{"_id": "d1", "text": 5}'], r"corpus\.jsonl:1: field 'text' must be a string"),
        (['{"_id": "d1", "text": "a"}', '', '{"_id": "d1", "text": "b"}'], r"corpus\.jsonl:3: duplicate document id 'd1'"),
        ([], r"corpus\.jsonl: the corpus is empty"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path, corpus, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_folder(make_folder(tmp_path, corpus=corpus))


def test_queries_errors_name_file_and_line(tmp_path):
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: missing field 'text'"):
        load_folder(make_folder(tmp_path, queries=['{"_id": "q1", "text": "a"}', '{"_id": "q2"}']))
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: duplicate query id 'q1'"):
        load_folder(make_folder(tmp_path, queries=['{"_id": "q1", "text": "a"}', '{"_id": "q1", "text": "b"}']))


@pytest.mark.parametrize(
    "qrels, pattern",
    [
        (["q1\td1"], r"test\.tsv:1: expected 3 tab-separated columns"),
        (["q1\td1\t1", "q1 d2 1"], r"test\.tsv:2: expected 3 tab-separated columns"),
        (["query-id\tcorpus-id\tscore", "q1\td1\thigh"], r"test\.tsv:2: score 'high' is not an integer"),
        (["q1\td1\t1", "q1\td1\t2"], r"test\.tsv:2: \(q1, d1\) judged twice with different scores"),
        (["query-id\tcorpus-id\tscore"], r"test\.tsv: no usable judgments"),
    ],
)
def test_qrels_errors_name_file_and_line(tmp_path, qrels, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_folder(make_folder(tmp_path, qrels=qrels))


def test_repeated_identical_judgment_is_accepted(tmp_path):
    ds = load_folder(make_folder(tmp_path, qrels=["q1\td1\t1", "q1\td1\t1"]))
    assert ds.qrels == {"q1": {"d1": 1}}


def test_missing_split_lists_available_splits(tmp_path):
    folder = make_folder(tmp_path, split="dev")
    with pytest.raises(DatasetError, match=r"split 'test' not found; available splits: \['dev'\]"):
        load_folder(folder, split="test")


def test_missing_files_are_named(tmp_path):
    folder = make_folder(tmp_path)
    (folder / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl: queries file not found"):
        load_folder(folder)
    with pytest.raises(DatasetError, match="not a directory"):
        load_folder(tmp_path / "nothing-here")


def test_unknown_ids_in_qrels_are_dropped_counted_and_reported(tmp_path):
    qrels = ["q1\td1\t1", "q9\td1\t1", "q2\tdX\t1", "q2\tdY\t1", "q2\td2\t1"]
    folder = make_folder(tmp_path, qrels=qrels)
    with pytest.warns(UserWarning, match=r"dropped 1 with an unknown query id, 2 with an unknown document id"):
        ds = load_folder(folder)
    assert ds.dropped == {"unknown_query": 1, "unknown_document": 2}
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    with pytest.raises(DatasetError, match=r"test\.tsv:2: query id 'q9' is not in the query file"):
        load_folder(folder, strict=True)


# --------------------------------------------------------------------------- resolution
def test_resolve_dataset_by_path_data_dir_env_and_home(tmp_path, monkeypatch, data_dir):
    folder = make_folder(tmp_path)
    assert resolve_dataset(folder) == folder
    assert resolve_dataset("mini", data_dir=tmp_path) == tmp_path / "mini"
    monkeypatch.setenv("PRORANK_DATA_DIR", str(data_dir))
    assert resolve_dataset("adi") == data_dir / "adi"
    home = tmp_path / "home"
    make_folder(home / "datasets")  # an earlier "download" under $PRORANK_HOME/datasets
    monkeypatch.setenv("PRORANK_HOME", str(home))
    monkeypatch.delenv("PRORANK_DATA_DIR")
    assert resolve_dataset("mini") == home / "datasets" / "mini"


def test_resolve_dataset_unknown_without_download_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetError, match="dataset 'no-such-set' not found"):
        resolve_dataset("no-such-set", data_dir=tmp_path, download=False)
    with pytest.raises(DatasetError, match="not a directory"):
        resolve_dataset(__file__)


def test_download_path_unpacks_beir_zip_into_prorank_home(tmp_path, monkeypatch):
    """The download branch with beir's own unzip; only the HTTP transfer is replaced by a copy."""
    import shutil
    import zipfile

    from beir import util as beir_util

    source = make_folder(tmp_path / "src")
    archive = tmp_path / "mini.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*"):
            zf.write(path, Path("mini") / path.relative_to(source))
    urls = []
    monkeypatch.setattr(beir_util, "download_url", lambda url, dest, *a, **k: (urls.append(url), shutil.copy(archive, dest)))
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PRORANK_DATA_DIR", raising=False)
    ds = load_dataset("mini")
    target = tmp_path / "home" / "datasets" / "mini"
    assert urls == ["https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/mini.zip"]
    assert ds.path == target and len(ds.corpus) == 3
    assert sorted(p.name for p in target.iterdir()) == ["corpus.jsonl", "qrels", "queries.jsonl"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["mini"]  # no temporary folder left
    assert load_dataset("mini").path == target and len(urls) == 1  # found locally the second time
