"""``prorank eval --engine ray``: a local Ray (2 CPUs), real Ray Data actor pools, the tiny model and
the real default model; the same scores, metrics and cache as ``--engine local``."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest

from prorank.evaluation import read_run
from prorank.evaluation.job import EvalConfig, main


def quiet_console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=120)


def cached_scores(path) -> dict[tuple[str, str, str], float]:
    """Every score in a cache file, keyed by (settings, query hash, document hash)."""
    with sqlite3.connect(path) as db:
        return {(settings, q, d): s for settings, q, d, s in db.execute("SELECT settings, query, doc, score FROM scores")}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from prorank.retrieval.java import init_ray_beside_jvm, shutdown_ray_beside_jvm

    started = not ray.is_initialized()
    if started:
        init_ray_beside_jvm(ray.init, num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        shutdown_ray_beside_jvm(ray.shutdown)  # a later test's BM25 runs on this process's JVM


def test_engine_options_are_checked_before_any_model_is_loaded(tmp_path, capsys):
    from prorank.cli import main as cli
    from prorank.config import ConfigError, from_dict

    base = {"datasets": ["adi"], "model": "no-such-model"}
    with pytest.raises(ConfigError, match="engine"):
        from_dict(EvalConfig, {**base, "engine": "spark"})
    with pytest.raises(ValueError, match="engine"):
        EvalConfig(**base, engine="spark")
    with pytest.raises(ValueError, match="actors"):
        EvalConfig(**base, engine="ray", actors=0)
    with pytest.raises(ValueError, match="cpus_per_actor"):
        EvalConfig(**base, engine="ray", cpus_per_actor=-1)
    for bad in (0, -0.5, True):
        with pytest.raises(ValueError, match="gpus_per_actor"):
            EvalConfig(**base, engine="ray", gpus_per_actor=bad)
    for name, value in (("actors", 2), ("gpus_per_actor", 1.0), ("address", "auto"), ("cpus_per_actor", 2)):
        with pytest.raises(ValueError, match=name):  # a Ray option without the Ray engine is a mistake
            EvalConfig(**base, **{name: value})
    with pytest.raises(ValueError, match="engine"):
        EvalConfig(datasets=["adi"], model="none", engine="ray")
    cfg = EvalConfig(**base, engine="ray", gpus_per_actor=0.5)
    assert (cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor) == (1, 1, 0.5)
    # the CLI fails on the option, naming it, without loading the (missing) model
    assert cli(["eval", "--dataset", "adi", "--model", "no-such-model", "--engine", "ray", "--actors", "0",
                "--output", str(tmp_path / "x")]) == 2
    assert "actors" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


class StopAfter:
    """Wraps ``RayScoring.score_chunks``: yields the first ``n`` results of the real stream, then
    raises KeyboardInterrupt, as Ctrl-C in the driver would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, real):
        def score_chunks(scoring, chunks):
            for i, done in enumerate(real(scoring, chunks)):
                if i == self.n:
                    raise KeyboardInterrupt
                yield done

        return score_chunks


def test_ray_engine_scores_like_local_and_resumes_after_interrupt(tmp_path, monkeypatch, local_ray, tiny_model_dir,
                                                                  data_dir):
    from prorank.evaluation import ray_engine

    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))  # a private index cache (the model is a folder)

    def cfg(name: str, **extra) -> EvalConfig:
        return EvalConfig(datasets=["adi"], model=str(tiny_model_dir),
                          reranker={"device": "cpu", "max_length": 128, "batch_size": 4},
                          top_k=5, depth=20, max_queries=4, output=str(tmp_path / name),
                          cache=str(tmp_path / f"{name}.sqlite"), **extra)

    local = main(cfg("local"), console=quiet_console())

    # the Ray run is interrupted after its first chunk (one query's 5 pairs) came back ...
    real = ray_engine.RayScoring.score_chunks
    monkeypatch.setattr(ray_engine.RayScoring, "score_chunks", StopAfter(1)(real))
    with pytest.raises(KeyboardInterrupt):
        main(cfg("ray", engine="ray", actors=2), console=quiet_console())
    assert len(cached_scores(tmp_path / "ray.sqlite")) == 5
    monkeypatch.setattr(ray_engine.RayScoring, "score_chunks", real)

    # ... and continued: only the other 15 pairs go to the actors
    ray = main(cfg("ray", engine="ray", actors=2), console=quiet_console())
    stats = ray["datasets"]["adi"]["rerank"]
    assert stats == {**stats, "engine": "ray", "pairs": 20, "cached": 5, "scored": 15}
    assert stats["workers"] and all(name.startswith("ray:") for name in stats["workers"])
    assert sum(w["pairs"] for w in stats["workers"].values()) == 15
    assert ray["provenance"]["ray"]["actors"] == 2 and ray["provenance"]["engine"] == "ray"

    # the same model, key, scores (bit for bit), runs and metrics as the local engine
    assert ray["model"]["fingerprint"] == local["model"]["fingerprint"]
    assert cached_scores(tmp_path / "ray.sqlite") == cached_scores(tmp_path / "local.sqlite")
    assert len(cached_scores(tmp_path / "local.sqlite")) == 20
    for name in ("rerank.trec", "bm25.trec", "per_query.tsv"):
        assert (tmp_path / "ray" / "adi" / name).read_text() == (tmp_path / "local" / "adi" / name).read_text()
    assert ray["datasets"]["adi"]["metrics"] == local["datasets"]["adi"]["metrics"]

    # a repeat sends nothing to Ray's actors
    again = main(cfg("ray", engine="ray", actors=2), console=quiet_console())["datasets"]["adi"]["rerank"]
    assert again == {**again, "scored": 0, "cached": 20, "workers": {}}


@pytest.mark.slow
def test_ray_engine_with_the_real_model_matches_local(tmp_path, local_ray, data_dir):
    """The shipped model on three SciFact queries x top-5: equal scores and metrics, both engines."""
    from prorank.registry import DEFAULT_MODEL

    def run(name: str, **extra) -> dict:
        return main(EvalConfig(datasets=["scifact"], model=DEFAULT_MODEL, top_k=5, depth=10, max_queries=3,
                               output=str(tmp_path / name), cache=str(tmp_path / f"{name}.sqlite"), **extra),
                    console=quiet_console())

    local, ray = run("local"), run("ray", engine="ray", actors=2)
    assert ray["datasets"]["scifact"]["rerank"]["scored"] == local["datasets"]["scifact"]["rerank"]["scored"] == 15
    local_run, ray_run = (read_run(tmp_path / n / "scifact" / "rerank.trec") for n in ("local", "ray"))
    assert ray_run.keys() == local_run.keys()
    for qid in local_run:
        assert ray_run[qid] == pytest.approx(local_run[qid], abs=1e-5)
    for system in ("reranker", "fused"):
        for metric, value in local["datasets"]["scifact"]["metrics"][system].items():
            assert round(ray["datasets"]["scifact"]["metrics"][system][metric], 4) == round(value, 4), (system, metric)
    assert json.loads((tmp_path / "ray" / "summary.json").read_text())["model"] == ray["model"]


def test_cli_engine_ray_in_a_fresh_process_keeps_the_jvm_alive(tmp_path, tiny_model_dir, data_dir):
    """``prorank eval --engine ray`` as users run it: a fresh interpreter (no pytest faulthandler),
    BM25's JVM started before Ray in the same process. Ray's driver would enable Python's
    faulthandler over HotSpot's SIGSEGV handler and crash the JVM ("SIGSEGV (sent by kill)");
    ``init_ray_beside_jvm`` keeps HotSpot's handler."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PRORANK_HOME": str(tmp_path / "home"), "PRORANK_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "prorank.cli", "eval", "--dataset", "adi", "--model", str(tiny_model_dir),
           "--device", "cpu", "--max-length", "128", "--top-k", "3", "--max-queries", "3",
           "--output", str(tmp_path / "out"), "--cache", "none", "--engine", "ray", "--actors", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["provenance"]["engine"] == "ray" and summary["datasets"]["adi"]["rerank"]["scored"] == 9
    assert not list(tmp_path.glob("hs_err_pid*.log"))
