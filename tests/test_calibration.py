"""Calibration (issue #31): the Platt fit and its errors, the stored map, the reliability measures,
the three score scales of ``Reranker`` (the ranking the same on each), degenerate documents, and
``prorank calibrate`` end to end on the shipped model (the service's side: tests/service/)."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest

from prorank import Reranker
from prorank.calibration import CALIBRATION_FORMAT, Calibration, fit_calibration, fit_platt, sigmoid
from prorank.degenerate import DEGENERATE_SCORE
from prorank.evaluation.reliability import (
    brier_score,
    calibration_measures,
    expected_calibration_error,
    reliability_table,
    threshold_counts,
)
from prorank.fusion import Fusion
from prorank.prompt import PROMPT_VERSION
from test_reranker import DOCS, QUERY  # the same query and documents as the Reranker tests

DEGENERATE = ["", "   \n\t", "...!? -- **", {"title": "", "text": "?"}]


def synthetic(a: float, b: float, n: int, seed: int = 0) -> tuple[list[float], list[int]]:
    """Scores spread over [-6, 6] and labels drawn from sigmoid(a * s + b)."""
    rng = random.Random(seed)
    scores = [rng.uniform(-6.0, 6.0) for _ in range(n)]
    return scores, [int(rng.random() < sigmoid(a * s + b)) for s in scores]


# --------------------------------------------------------------------------- the fit
def test_platt_recovers_the_map_that_drew_the_labels():
    scores, labels = synthetic(0.8, -2.0, 20_000)
    a, b = fit_platt(scores, labels)
    assert a == pytest.approx(0.8, abs=0.05) and b == pytest.approx(-2.0, abs=0.1)
    fitted = fit_calibration(scores, labels, fitted_on={"collections": ["synthetic"]}, model={"name": "m"})
    assert (fitted.a, fitted.b) == (a, b)
    assert fitted.fitted_on == {"collections": ["synthetic"], "pairs": 20_000, "positives": sum(labels)}
    assert fitted.threshold_score == pytest.approx(2.5, abs=0.2)  # sigmoid(0.8 * 2.5 - 2) = 0.5
    assert expected_calibration_error(fitted.probabilities(scores), labels) < 0.02


def test_few_positives_give_a_finite_moderate_fit():
    """Three positives that the scores separate perfectly: Platt's smoothed targets keep the slope
    finite (a plain maximum-likelihood fit would run to infinity)."""
    scores = [-3.0, -2.0, -1.0, 0.0, 0.5, 2.0, 2.5, 3.0]
    labels = [0, 0, 0, 0, 0, 1, 1, 1]
    cal = fit_calibration(scores, labels)
    assert 0 < cal.a < 20 and math.isfinite(cal.b)
    assert cal.probability(3.0) < 1.0 and cal.probability(-3.0) > 0.0
    assert cal.probability(0.5) < 0.5 < cal.probability(2.0)


@pytest.mark.parametrize("scores, labels, match", [
    ([1.0, 2.0, 3.0], [0, 0, 0], "no relevant pairs"),
    ([1.0, 2.0, 3.0], [1, 1, 1], "no irrelevant pairs"),
    ([], [], "empty"),
    ([1.0, 2.0], [0], "2 scores but 1 labels"),
    ([1.0, float("nan")], [0, 1], "score 1 is not finite"),
    ([1.0, 2.0], [0, 2], "label 1 must be 0 or 1"),
    ([3.0, 2.0, 1.0, 0.0], [0, 0, 1, 1], "do not rise with relevance"),
])
def test_data_it_cannot_fit_is_an_error(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_calibration(scores, labels)


def test_a_calibration_keeps_its_slope_positive_and_its_format():
    with pytest.raises(ValueError, match="slope a must be > 0"):
        Calibration(a=-0.5, b=0.0)
    with pytest.raises(ValueError, match="finite"):
        Calibration(a=float("inf"), b=0.0)
    with pytest.raises(ValueError, match="format"):
        Calibration.from_dict({"a": 1.0, "b": 0.0, "format": "prorank-calibration-v0"})
    with pytest.raises(ValueError, match="unknown calibration key"):
        Calibration.from_dict({"a": 1.0, "b": 0.0, "slope": 2})
    with pytest.raises(ValueError, match="needs 'b'"):
        Calibration.from_dict({"a": 1.0})


def test_a_calibration_round_trips_through_its_file(tmp_path):
    cal = fit_calibration(*synthetic(1.0, -1.0, 500), fitted_on={"queries": 3}, model={"fingerprint": "f"})
    path = cal.save(tmp_path / "cal.json")
    stored = json.loads(path.read_text())
    assert stored["format"] == CALIBRATION_FORMAT and stored["method"] == "platt"
    assert Calibration.load(path) == cal
    assert Calibration.from_metadata({"calibration": stored}) == cal
    assert Calibration.from_metadata({"prompt_version": PROMPT_VERSION}) is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="calibration file not found"):
        Calibration.load(tmp_path / "missing.json")


# --------------------------------------------------------------------------- measures
def test_reliability_measures_by_hand():
    probs = [0.05, 0.15, 0.15, 0.85, 0.95, 1.0]
    labels = [0, 0, 1, 1, 1, 1]
    table = reliability_table(probs, labels)
    assert [row["count"] for row in table] == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]
    assert table[1]["positive_rate"] == 0.5 and table[9]["mean_probability"] == pytest.approx(0.975)
    # |0.05-0| * 1 + |0.15-0.5| * 2 + |0.85-1| * 1 + |0.975-1| * 2, over 6
    assert expected_calibration_error(probs, labels) == pytest.approx((0.05 + 0.7 + 0.15 + 0.05) / 6)
    assert brier_score(probs, labels) == pytest.approx(
        (0.05**2 + 0.15**2 + 0.85**2 + 0.15**2 + 0.05**2 + 0.0) / 6)
    counts = threshold_counts(probs, labels, 0.5)
    assert (counts["kept"], counts["true_positives"], counts["missed"]) == (3, 3, 1)
    assert (counts["precision"], counts["recall"]) == (1.0, 0.75)
    assert threshold_counts([0.1], [1])["precision"] is None
    assert calibration_measures(probs, labels)["positive_rate"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1.5], [1])


# --------------------------------------------------------------------------- the reranker's scales
@pytest.fixture(scope="module")
def calibrated_checkpoint(tmp_path_factory, tiny_model_dir):
    """The tiny model as a checkpoint folder whose prorank.json holds a calibration."""
    folder = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(tiny_model_dir, folder)
    cal = Calibration(a=3.0, b=-0.5)
    (folder / "prorank.json").write_text(json.dumps({"format": "prorank-checkpoint-v1", "prompt_version": PROMPT_VERSION,
                                                     "max_length": 128, "calibration": cal.to_dict()}))
    return folder


def test_three_scales_one_ranking(calibrated_checkpoint):
    r = Reranker.from_pretrained(calibrated_checkpoint, device="cpu")
    assert r.normalize is False and r.calibration == Calibration(a=3.0, b=-0.5)
    raw = r.score(QUERY, DOCS)
    assert r.score(QUERY, DOCS, normalize="calibrated") == pytest.approx([sigmoid(3.0 * s - 0.5) for s in raw])
    assert r.score(QUERY, DOCS, normalize="sigmoid") == pytest.approx([sigmoid(s) for s in raw])
    assert r.score(QUERY, DOCS, normalize=True) == r.score(QUERY, DOCS, normalize="sigmoid")  # True: as before
    by_raw = [x.index for x in r.rank(QUERY, DOCS)]
    assert by_raw == sorted(range(len(DOCS)), key=lambda i: -raw[i])
    for scale in ("calibrated", "sigmoid", True):
        ranked = r.rank(QUERY, DOCS, normalize=scale)
        assert [x.index for x in ranked] == by_raw
        assert all(0.0 <= x.score <= 1.0 for x in ranked)
    calibrated = Reranker.from_pretrained(calibrated_checkpoint, device="cpu", normalize="calibrated")
    assert calibrated.score(QUERY, DOCS) == r.score(QUERY, DOCS, normalize="calibrated")


def test_a_saturating_calibration_ties_no_documents(calibrated_checkpoint):
    """Probabilities that round to 1.0 or 0.0 still rank as the raw scores do."""
    r = Reranker.from_pretrained(calibrated_checkpoint, device="cpu")
    raw = r.score(QUERY, DOCS)
    middle = sum(sorted(raw)[1:3]) / 2
    steep = Calibration(a=1e6, b=-1e6 * middle)  # everything is 0.0 or 1.0
    r.calibration = steep
    probs = r.score(QUERY, DOCS, normalize="calibrated")
    assert set(probs) <= {0.0, 1.0} and len(set(probs)) == 2
    assert [x.index for x in r.rank(QUERY, DOCS, normalize="calibrated")] == [x.index for x in r.rank(QUERY, DOCS)]


def test_calibrated_without_a_calibration_names_prorank_calibrate(tiny_model_dir, tiny_reranker):
    with pytest.raises(ValueError, match=r"has no calibration.*prorank calibrate"):
        Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, normalize="calibrated")
    with pytest.raises(ValueError, match="prorank calibrate"):
        tiny_reranker.score(QUERY, DOCS, normalize="calibrated")
    with pytest.raises(ValueError, match="prorank calibrate"):
        tiny_reranker.rank(QUERY, DOCS, normalize="calibrated")
    with pytest.raises(ValueError, match='normalize must be one of "calibrated", "sigmoid", false'):
        tiny_reranker.score(QUERY, DOCS, normalize="probability")
    with pytest.raises(ValueError, match="normalize must be one of"):
        Reranker.from_pretrained(tiny_model_dir, device="cpu", normalize=1)


def test_a_calibration_file_is_for_one_model_fingerprint(tmp_path, tiny_model_dir, tiny_reranker):
    good = Calibration(a=2.0, b=0.0, model={"fingerprint": tiny_reranker.fingerprint}).save(tmp_path / "good.json")
    r = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, normalize="calibrated", calibration=good)
    raw = tiny_reranker.score(QUERY, DOCS)
    assert r.score(QUERY, DOCS) == pytest.approx([sigmoid(2.0 * s) for s in raw], abs=1e-6)
    with pytest.raises(ValueError, match="fitted for model fingerprint"):  # 256 tokens: another fingerprint
        Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=256, calibration=good)


def test_options_take_the_scale_and_a_calibration_file(tmp_path, tiny_model_dir, tiny_reranker):
    import argparse

    from prorank.config import ConfigError, from_dict
    from prorank.options import RerankerOptions, add_option_flags, options_from_flags

    parser = argparse.ArgumentParser()
    add_option_flags(parser)
    flags = options_from_flags(parser.parse_args(["--normalize", "calibrated", "--calibration", "c.json"]))
    assert flags == {"normalize": "calibrated", "calibration": "c.json"}
    assert from_dict(RerankerOptions, {"normalize": False}).normalize is False
    with pytest.raises(ConfigError, match="normalize must be one of"):
        from_dict(RerankerOptions, {"normalize": "yes please"}, "test")
    path = Calibration(a=1.5, b=0.25, model={"fingerprint": tiny_reranker.fingerprint}).save(tmp_path / "c.json")
    r = Reranker.from_options(tiny_model_dir, RerankerOptions(device="cpu", max_length=128, normalize="calibrated",
                                                              calibration=str(path)))
    assert r.calibration.a == 1.5


# --------------------------------------------------------------------------- degenerate documents
def test_degenerate_documents_score_the_floor_and_rank_last(calibrated_checkpoint):
    r = Reranker.from_pretrained(calibrated_checkpoint, device="cpu")
    docs = [DEGENERATE[0], DOCS[0], DEGENERATE[1], DOCS[1], DEGENERATE[2], DEGENERATE[3]]
    raw = r.score(QUERY, docs)
    assert [raw[i] for i in (0, 2, 4, 5)] == [DEGENERATE_SCORE] * 4
    assert raw[1] == pytest.approx(r.score(QUERY, [DOCS[0]])[0], abs=1e-5)  # the others as alone
    for scale in ("calibrated", "sigmoid"):
        scores = r.score(QUERY, docs, normalize=scale)
        assert [scores[i] for i in (0, 2, 4, 5)] == [0.0] * 4 and min(scores[1], scores[3]) > 0.0
    for scale in (False, "calibrated"):
        assert [x.index for x in r.rank(QUERY, docs, normalize=scale)][2:] == [0, 2, 4, 5]  # last, input order
    # with fusion: last too, whatever their first-stage score; the rest fused among themselves
    r.fusion = Fusion("interpolate", 0.5)
    bm25 = [30.0, 1.0, 25.0, 2.0, 20.0, 10.0]
    ranked = r.rank(QUERY, docs, first_stage_scores=bm25)
    assert [x.index for x in ranked][2:] == [0, 2, 4, 5] and all(x.score == 0.0 for x in ranked[2:])
    alone = r.rank(QUERY, [docs[1], docs[3]], first_stage_scores=[1.0, 2.0])
    assert sorted(x.score for x in ranked[:2]) == pytest.approx(sorted(x.score for x in alone))


def test_a_query_of_only_degenerate_documents(tiny_reranker):
    assert tiny_reranker.score(QUERY, ["", "..."]) == [DEGENERATE_SCORE, DEGENERATE_SCORE]
    assert tiny_reranker.score(QUERY, ["", "..."], normalize="sigmoid") == [0.0, 0.0]


# --------------------------------------------------------------------------- prorank calibrate
def test_calibrate_refuses_what_it_cannot_write_before_loading_anything(tmp_path, tiny_model_dir, capsys):
    from prorank.cli import main

    assert main(["calibrate", "prorank-smollm2-135m"]) == 2
    assert "registry alias" in capsys.readouterr().err
    assert main(["calibrate", str(tiny_model_dir)]) == 2  # a plain model folder: no prorank.json
    assert "--output FILE" in capsys.readouterr().err
    assert main(["calibrate", str(tiny_model_dir), "--output", str(tmp_path / "c.json"), "--max-queries", "3"]) == 2
    assert "--max-queries samples the queries of --dataset" in capsys.readouterr().err


def test_calibrate_a_model_without_dev_queries_asks_for_data(tmp_path, tiny_model_dir, capsys):
    from prorank.cli import main

    assert main(["calibrate", str(tiny_model_dir), "--output", str(tmp_path / "c.json"), "--max-length", "64"]) == 2
    assert "names no dev queries" in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_the_shipped_checkpoint_dev_set_is_rebuilt_exactly(data_dir):
    """``prorank calibrate``'s default data: the shipped model's own dev queries, at its dev depth;
    the same queries and candidates training measured (BM25 nDCG@10 as recorded in prorank.json)."""
    from prorank.checkpoint import read_metadata
    from prorank.train.devset import checkpoint_dev
    from prorank.registry import REGISTRY, bundled_path

    meta = read_metadata(bundled_path(REGISTRY["prorank-smollm2-135m"]))
    dev = checkpoint_dev(meta)
    assert dev.top_k == 20 and dev.queries == meta["data"]["dev"]["queries"] == 130
    for col, recorded in zip(dev.collections, meta["data"]["dev"]["collections"]):
        assert (col.name, len(col.qids)) == (recorded["dataset"], recorded["queries"])
        assert col.bm25_ndcg == pytest.approx(recorded["bm25_ndcg@10"], abs=1e-9)


@pytest.mark.slow
def test_calibrate_end_to_end_with_the_score_cache(tmp_path, data_dir, capsys):
    """The shipped model on a few scifact train queries: into a file (an alias), then in place into a
    copy of its checkpoint folder, where every score comes from the cache; the stored calibration is
    what ``normalize="calibrated"`` uses, and the rest of prorank.json is untouched."""
    from prorank.checkpoint import read_metadata
    from prorank.cli import main
    from prorank.registry import REGISTRY, bundled_path

    common = ["--dataset", "scifact:train", "--max-queries", "4", "--top-k", "5", "--cache", str(tmp_path / "s.sqlite")]
    assert main(["calibrate", "prorank-smollm2-135m", "--output", str(tmp_path / "cal.json"), *common]) == 0
    out = capsys.readouterr().out
    assert "4 queries (scifact:train 4), BM25 top-5: 20 pairs" in out and "(0 from the score cache, 20 scored)" in out
    cal = Calibration.load(tmp_path / "cal.json")
    assert cal.a > 0 and cal.fitted_on["pairs"] == 20 and cal.fitted_on["collections"][0]["split"] == "train"
    assert set(cal.fitted_on["measures"]) == {"sigmoid", "calibrated"}

    bundled = bundled_path(REGISTRY["prorank-smollm2-135m"])
    folder = tmp_path / "checkpoint"
    shutil.copytree(bundled, folder)
    before = read_metadata(folder)
    assert main(["calibrate", str(folder), *common]) == 0
    out = capsys.readouterr().out
    assert "(20 from the score cache, 0 scored)" in out and "pin it" not in out  # not a bundled folder
    after = read_metadata(folder)
    assert {k: v for k, v in after.items() if k != "calibration"} == {k: v for k, v in before.items() if k != "calibration"}
    stored = Calibration.from_metadata(after)
    assert (stored.a, stored.b) == pytest.approx((cal.a, cal.b))
    r = Reranker.from_pretrained(folder, normalize="calibrated")
    probs = r.score("Vaccines train the immune system.", ["Vaccines make memory B cells.", ""])
    assert 0.0 < probs[0] < 1.0 and probs[1] == 0.0


def test_serve_fails_fast_without_a_calibration(tmp_path, tiny_model_dir):
    from prorank.config import ConfigError
    from prorank.serve.app import check_calibration
    from prorank.serve.config import ServeConfig

    with pytest.raises(ConfigError, match=r"reranker.normalize: .*prorank calibrate"):
        check_calibration(ServeConfig(model=str(tiny_model_dir)), str(tiny_model_dir))
    check_calibration(ServeConfig(model=str(tiny_model_dir), reranker={"normalize": "sigmoid"}), str(tiny_model_dir))
    with pytest.raises(ConfigError, match="reranker.calibration: calibration file not found"):
        check_calibration(ServeConfig(model=str(tiny_model_dir), reranker={"calibration": str(tmp_path / "no.json")}),
                          str(tiny_model_dir))
    assert ServeConfig().reranker.normalize == "calibrated"  # the service's default
    assert ServeConfig(reranker={"max_length": 64}).reranker.normalize == "calibrated"  # kept under a given block


# --------------------------------------------------------------------------- the benchmark's comparison maps
def test_the_maps_the_benchmark_compares_platt_with():
    """benchmarks/calibration.py: isotonic regression is the pool-adjacent-violators solution,
    interpolated and clamped; a temperature alone finds the slope of bias-free data."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from calibration import bootstrap_difference, fit_isotonic, fit_temperature

    iso = fit_isotonic([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1])  # PAV pools the middle two: 0, 0.5, 0.5, 1
    assert iso([1.0, 2.5, 4.0, 9.0, -3.0]) == [0.0, 0.5, 1.0, 1.0, 0.0]
    scores, labels = synthetic(1.5, 0.0, 20_000, seed=1)
    predict = fit_temperature(scores, labels)
    assert predict([1.0])[0] == pytest.approx(sigmoid(1.5), abs=0.01)
    same = bootstrap_difference([0.2, 0.7], [0.2, 0.7], [0, 1], ["q1", "q2"], 50, 0)
    assert same["brier"] == {"difference": 0.0, "ci95": [0.0, 0.0]}
