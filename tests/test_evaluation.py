"""The evaluation job: outputs, provenance, score cache, resuming and repeating without model work."""

from __future__ import annotations

import io
import json

import pytest

from prorank.evaluation import METRICS, ScoreCache, ScorerKey, document_key, evaluate, mean_metrics, read_run
from prorank.evaluation.job import EvalConfig, main
from prorank.evaluation.rerank import scorer_key


@pytest.fixture()
def home(tmp_path, monkeypatch, data_dir):
    """A private $PRORANK_HOME (index cache), the shared data as $PRORANK_DATA_DIR."""
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRORANK_DATA_DIR", str(data_dir))
    return tmp_path / "home"


def quiet_console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=120)


# --------------------------------------------------------------------------- score cache
def test_score_cache_round_trip_and_keys(tmp_path):
    key = ScorerKey(model="m1", prompt="p1", settings="dtype=float32")
    doc_a = document_key("a", {"title": "T", "text": "alpha"})
    doc_b = document_key("b", {"title": "", "text": "beta"})
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        assert cache.get(key, "q", [doc_a]) == {}
        cache.put(key, "q", {doc_a: 1.5, doc_b: -2.0})
        assert cache.get(key, "q", [doc_a, doc_b, "missing"]) == {doc_a: 1.5, doc_b: -2.0}
        assert cache.get(key, "other query", [doc_a]) == {}
        assert cache.get(ScorerKey("m2", "p1", "dtype=float32"), "q", [doc_a]) == {}
        assert cache.get(ScorerKey("m1", "p2", "dtype=float32"), "q", [doc_a]) == {}
        assert cache.get(ScorerKey("m1", "p1", "dtype=bfloat16"), "q", [doc_a]) == {}
        assert cache.count(key) == 2
    with ScoreCache(tmp_path / "c.sqlite") as cache:  # persisted
        assert cache.get(key, "q", [doc_a]) == {doc_a: 1.5}
    # an edited document (same id) is a different entry
    assert document_key("a", {"title": "T", "text": "alpha!"}) != doc_a
    assert document_key("a", {"title": "T2", "text": "alpha"}) != doc_a


def test_score_cache_transaction_is_all_or_nothing(tmp_path):
    key = ScorerKey("m", "p")
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(KeyboardInterrupt):
            with cache._transaction():
                cache._conn.execute("INSERT INTO scores VALUES ('m', 'p', '', 'q', 'd', 1.0)")
                raise KeyboardInterrupt
        assert cache.count() == 0
        cache.put(key, "q", {f"d{i}": float(i) for i in range(1200)})  # more than one SELECT chunk
        assert len(cache.get(key, "q", [f"d{i}" for i in range(1200)])) == 1200


# --------------------------------------------------------------------------- BM25 only
def test_bm25_only_eval_writes_runs_metrics_and_provenance(home, tmp_path):
    out = tmp_path / "out"
    summary = main(EvalConfig(datasets=["adi", "med"], model="none", max_queries=7, output=str(out),
                              summary=str(tmp_path / "copy.json")), console=quiet_console())
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads((tmp_path / "copy.json").read_text())
    assert on_disk["model"] is None and set(on_disk["datasets"]) == {"adi", "med"}
    adi = on_disk["datasets"]["adi"]
    assert adi["queries"] == 7 and adi["judged_queries"] == 35
    assert adi["files"]["corpus"]["sha256"] == "d627f152ca418088419d7ce110d354ba48d3e15e500676df36e19117b8e342e2"
    assert adi["rerank"] is None and set(adi["metrics"]) == {"bm25"}
    assert not (out / "adi" / "rerank.trec").exists()
    run = read_run(out / "adi" / "bm25.trec")
    assert list(run) == [str(i) for i in range(1, 8)]  # first 7 judged queries, natural order
    from prorank.data import load_dataset

    qrels = load_dataset("adi").qrels
    assert mean_metrics(evaluate(qrels, run, list(run))) == pytest.approx(adi["metrics"]["bm25"])
    rows = (out / "adi" / "per_query.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["qid", "system", *METRICS] and len(rows) == 1 + 7
    for metric in METRICS:
        both = (adi["metrics"]["bm25"][metric] + on_disk["datasets"]["med"]["metrics"]["bm25"][metric]) / 2
        assert on_disk["average"]["bm25"][metric] == pytest.approx(both)
    prov = on_disk["provenance"]
    assert {"git", "versions", "hardware", "started", "finished", "seconds"} <= set(prov)
    assert prov["versions"]["pyserini"] == "1.6.0" and prov["versions"]["java"].startswith("21")
    assert summary["output"] == str(out)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="top_k"):
        EvalConfig(datasets=["adi"], top_k=0)
    with pytest.raises(ValueError, match="max_queries"):
        EvalConfig(datasets=["adi"], max_queries=0)
    with pytest.raises(ValueError, match="datasets"):
        EvalConfig(datasets=[])


# --------------------------------------------------------------------------- reranking + cache
class Interrupting:
    """Delegates to a real reranker; raises KeyboardInterrupt on the (after+1)-th score call."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.calls = inner, after, 0

    def score(self, *args, **kwargs):
        if self.calls >= self.after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.score(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_rerank_eval_resumes_after_interrupt_and_repeats_without_model_work(home, tmp_path, tiny_reranker):
    cache = tmp_path / "scores.sqlite"

    def cfg(name: str) -> EvalConfig:
        return EvalConfig(datasets=["adi"], model="tiny", top_k=5, depth=20, max_queries=4,
                          output=str(tmp_path / name), cache=str(cache))

    # interrupted after one query's pairs (5 pairs < one cache chunk of 4 batches x 4)
    with pytest.raises(KeyboardInterrupt):
        main(cfg("a"), reranker=Interrupting(tiny_reranker, after=1), console=quiet_console())
    with ScoreCache(cache) as db:
        assert db.count(scorer_key(tiny_reranker)) == 5

    resumed = main(cfg("b"), reranker=tiny_reranker, console=quiet_console())["datasets"]["adi"]["rerank"]
    assert resumed == {**resumed, "pairs": 20, "cached": 5, "scored": 15}

    repeated = main(cfg("c"), reranker=Interrupting(tiny_reranker, after=0), console=quiet_console())
    stats = repeated["datasets"]["adi"]["rerank"]
    assert stats["scored"] == 0 and stats["cached"] == 20  # no model call at all (it would raise)
    assert (tmp_path / "b" / "adi" / "rerank.trec").read_text() == (tmp_path / "c" / "adi" / "rerank.trec").read_text()

    # the cached scores are the model's scores
    run = read_run(tmp_path / "c" / "adi" / "rerank.trec")
    from prorank.data import load_dataset

    ds = load_dataset("adi")
    top = sorted(run["1"].items(), key=lambda item: -item[1])[:5]
    fresh = tiny_reranker.score(ds.queries["1"], [ds.corpus[d] for d, _ in top])
    assert fresh == pytest.approx([s for _, s in top], abs=1e-5)


def test_reranked_run_keeps_bm25_tail_and_reports_model(home, tmp_path, tiny_reranker):
    out = tmp_path / "out"
    summary = main(EvalConfig(datasets=["adi"], model="tiny", top_k=3, depth=10, max_queries=2, output=str(out),
                              cache="none"), reranker=tiny_reranker, console=quiet_console())
    bm25 = read_run(out / "adi" / "bm25.trec")
    reranked = read_run(out / "adi" / "rerank.trec")
    for qid in bm25:
        assert set(reranked[qid]) == set(bm25[qid])  # same candidates
        bm25_order = sorted(bm25[qid], key=lambda d: -bm25[qid][d])
        new_order = sorted(reranked[qid], key=lambda d: -reranked[qid][d])
        assert set(new_order[:3]) == set(bm25_order[:3])  # only the top-3 are reordered
        assert new_order[3:] == bm25_order[3:]
    model = summary["model"]
    assert model["fingerprint"] == tiny_reranker.fingerprint and model["prompt_version"]
    assert set(summary["datasets"]["adi"]["metrics"]) == {"bm25", "reranker", "delta"}
    delta = summary["datasets"]["adi"]["metrics"]["delta"]
    metrics = summary["datasets"]["adi"]["metrics"]
    assert delta["nDCG@10"] == pytest.approx(metrics["reranker"]["nDCG@10"] - metrics["bm25"]["nDCG@10"])
    assert summary["datasets"]["adi"]["rerank"]["scored"] == 6


def test_eval_cli_bm25_only(home, tmp_path, capsys):
    from prorank.cli import main as cli

    out = tmp_path / "cli"
    assert cli(["eval", "--dataset", "cacm", "--model", "none", "--max-queries", "5", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cacm" in printed and "nDCG@10" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["max_queries"] == 5 and summary["datasets"]["cacm"]["queries"] == 5
    assert cli(["eval", "--dataset", "adi", "--model", "none", "--split", "dev", "--output", str(out)]) == 2


def test_fused_run_interpolates_model_and_bm25_scores(home, tmp_path, tiny_model_dir):
    """A checkpoint's fusion (weight tuned on dev) is used by default; weight 1 gives BM25's order."""
    from prorank.fusion import Fusion, interpolate
    from prorank.reranker import Reranker

    reranker = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, fusion="interpolate",
                                        fusion_weight=0.4)
    assert reranker.fusion == Fusion("interpolate", 0.4)
    out = tmp_path / "fused"
    summary = main(EvalConfig(datasets=["adi"], model="tiny", top_k=4, depth=10, max_queries=3, output=str(out),
                              cache="none"), reranker=reranker, console=quiet_console())
    metrics = summary["datasets"]["adi"]["metrics"]
    assert {"bm25", "reranker", "fused", "fused_delta"} <= set(metrics)
    assert summary["model"]["fusion"] == {"method": "interpolate", "weight": 0.4}
    bm25, model, fused = (read_run(out / "adi" / f"{n}.trec") for n in ("bm25", "rerank", "fused"))
    for qid in bm25:
        head = sorted(bm25[qid], key=lambda d: -bm25[qid][d])[:4]
        expected = interpolate([model[qid][d] for d in head], [bm25[qid][d] for d in head], 0.4)
        assert [fused[qid][d] for d in head] == pytest.approx(expected, abs=1e-5)
        assert set(fused[qid]) == set(bm25[qid])
    # weight 1: the fused run ranks like BM25
    only_bm25 = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, fusion="interpolate",
                                         fusion_weight=1.0)
    summary = main(EvalConfig(datasets=["adi"], model="tiny", top_k=4, depth=10, max_queries=3,
                              output=str(tmp_path / "w1"), cache="none"), reranker=only_bm25, console=quiet_console())
    assert summary["datasets"]["adi"]["metrics"]["fused"] == pytest.approx(summary["datasets"]["adi"]["metrics"]["bm25"])
    with pytest.raises(ValueError, match="fusion_weight"):
        EvalConfig(datasets=["adi"], reranker={"fusion": "interpolate", "fusion_weight": 1.5})
    from prorank.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="did you mean reranker.fusion_weight"):
        from_dict(EvalConfig, {"datasets": ["adi"], "fusion_weight": 0.5})  # the reranker's block holds it


def test_eval_reranks_a_first_stage_run_file(home, tmp_path, tiny_reranker, capsys):
    """--run FILE: its candidates (not BM25's) are reranked; BM25 and the run are reported beside."""
    from prorank.cli import main as cli
    from prorank.data import load_dataset
    from prorank.evaluation.trec import write_run

    bm25_dir = tmp_path / "bm25"
    main(EvalConfig(datasets=["adi"], model="none", top_k=10, depth=10, max_queries=4, output=str(bm25_dir)),
         console=quiet_console())
    bm25 = read_run(bm25_dir / "adi" / "bm25.trec")
    # a first stage that reverses BM25's order and drops its best document, for queries 1-3 only
    first = {q: sorted(bm25[q].items(), key=lambda kv: kv[1])[:-1] for q in ("1", "2", "3")}
    first = {q: [(d, float(i)) for i, (d, _) in enumerate(v)] for q, v in first.items()}
    run_file = tmp_path / "first.trec"
    write_run(run_file, first, tag="reversed")
    out = tmp_path / "out"
    summary = main(EvalConfig(datasets=["adi"], model="tiny", top_k=3, depth=10, max_queries=4, output=str(out),
                              cache="none", run_file=str(run_file)), reranker=tiny_reranker, console=quiet_console())
    adi = summary["datasets"]["adi"]
    assert summary["config"]["first_stage"] == "run" and adi["first_stage"]["judged_queries_missing"] == 1
    assert {"bm25", "run", "reranker", "run_delta"} <= set(adi["metrics"])
    reranked = read_run(out / "adi" / "rerank.trec")
    assert set(reranked) == {"1", "2", "3"}  # query 4 has no candidates in the run
    for qid, docs in first.items():
        assert set(reranked[qid]) == {d for d, _ in docs}  # the run's candidates, not BM25's
        head = [d for d, _ in sorted(docs, key=lambda kv: -kv[1])[:3]]
        assert set(sorted(reranked[qid], key=lambda d: -reranked[qid][d])[:3]) == set(head)
    qrels = load_dataset("adi").qrels
    assert adi["metrics"]["run"] == pytest.approx(mean_metrics(evaluate(qrels, {q: dict(v) for q, v in first.items()},
                                                                         ["1", "2", "3", "4"])))
    # bad input names the field, before any model is loaded
    with pytest.raises(ValueError, match="run_file"):
        EvalConfig(datasets=["adi", "med"], run_file=str(run_file))
    with pytest.raises(ValueError, match="run_file"):
        EvalConfig(datasets=["adi"], run_file=str(tmp_path / "missing.trec"))
    with pytest.raises(ValueError, match="run_file"):
        EvalConfig(datasets=["adi"], first_stage="run")
    wrong = tmp_path / "wrong.trec"
    write_run(wrong, {"1": [("no-such-doc", 1.0)]}, tag="x")
    assert cli(["eval", "--dataset", "adi", "--model", "none", "--run", str(wrong), "--output",
                str(tmp_path / "w")]) == 2
    assert "no-such-doc" in capsys.readouterr().err
