"""The throughput benchmark's own machinery: random-weight models of a given architecture, and a
small end-to-end run (real scifact pairs, real tokenizer, ProRank paths vs the plain loop)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

TINY_ARCH = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 50000, "max_position_embeddings": 4096,
    "rope_theta": 12345.0, "tie_word_embeddings": True, "initializer_range": 0.2,
}


@pytest.fixture()
def tiny_arch(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PRORANK_HOME", str(tmp_path / "home"))
    path = tmp_path / "tiny-arch.json"
    path.write_text(json.dumps(TINY_ARCH))
    return path


def test_random_model_is_seeded_and_carries_the_keys_transformers_4_reads(tiny_arch, smollm2_dir):
    from random_model import random_model_dir

    from prorank import Reranker

    out = random_model_dir(tiny_arch, smollm2_dir, dtype="float32")
    assert out == random_model_dir(tiny_arch, smollm2_dir, dtype="float32")  # cached by content
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 12345.0  # the key transformers 4.x reads
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] != "TokenizersBackend"
    again = random_model_dir(tiny_arch, smollm2_dir, seed=1, dtype="float32")
    assert again != out
    pair = ("what do cells need", "Cells need energy from glucose.")
    a = Reranker.from_pretrained(out, device="cpu", max_length=128).score_pairs([pair])
    b = Reranker.from_pretrained(again, device="cpu", max_length=128).score_pairs([pair])
    assert a != b  # the seed sets the weights
    assert a == Reranker.from_pretrained(out, device="cpu", max_length=128).score_pairs([pair])


def test_throughput_run_agrees_with_plain_loop(tiny_arch, smollm2_dir, data_dir, tmp_path):
    from throughput import ThroughputConfig, main

    cfg = ThroughputConfig(model=str(smollm2_dir), random_init=str(tiny_arch), data_dir=str(data_dir),
                           queries=2, docs_per_query=3, doc_tokens=60, max_length=128, repeats=2,
                           device="cpu", methods=["prorank", "prorank-unshared", "transformers"],
                           output=str(tmp_path / "out.json"))
    result = main(cfg)
    assert json.loads((tmp_path / "out.json").read_text())["pairs"] == result["pairs"] == 6
    methods = result["methods"]
    assert set(methods) == {"prorank", "prorank-unshared", "transformers"}
    assert methods["prorank-unshared"]["forward_per_prompt_token"] == 1.0
    assert methods["prorank"]["forward_per_prompt_token"] < 0.95  # CPU default: prefixes run once
    for name in ("prorank", "prorank-unshared"):
        check = result["agreement"][f"{name} vs transformers (same prompts)"]
        assert check["ok"], check
        assert len(methods[name]["seconds"]) == 2 and methods[name]["speedup_vs_transformers"] > 0
    with pytest.raises(ValueError, match="methods"):
        main(ThroughputConfig(methods=["prorank", "fastest"]))


def test_paired_compares_systems_of_eval_outputs(tmp_path):
    """benchmarks/paired.py: mean metrics per system and symmetric paired p-values from eval outputs'
    per_query.tsv; systems on different queries are refused."""
    from paired import compare

    header = "qid\tsystem\tnDCG@10\tRecall@100\tMRR@10\tMAP\n"
    for run, shift in (("a", 0.0), ("b", 0.3)):
        rows = "".join(f"q{i}\t{system}\t{0.1 * i + (shift if system == 'reranker' else 0.0):.4f}\t0.5\t0.5\t0.5\n"
                       for i in range(6) for system in ("bm25", "reranker"))
        (tmp_path / run / "scifact").mkdir(parents=True)
        (tmp_path / run / "scifact" / "per_query.tsv").write_text(header + rows)
    result = compare("scifact", {"BM25": (str(tmp_path / "a"), "bm25"), "A": (str(tmp_path / "a"), "reranker"),
                                 "B": (str(tmp_path / "b"), "reranker")})
    rows = {r["system"]: r for r in result["rows"]}
    assert result["queries"] == 6 and rows["BM25"]["metrics"]["nDCG@10"] == 0.25
    assert rows["A"]["p_vs_bm25"] == 1.0 and rows["B"]["metrics"]["nDCG@10"] == 0.55
    assert rows["B"]["p_vs_a"] == rows["A"]["p_vs_b"] < 0.05  # +0.3 on all six queries: 2 of 64 sign patterns
    (tmp_path / "c" / "scifact").mkdir(parents=True)
    (tmp_path / "c" / "scifact" / "per_query.tsv").write_text(header + "q9\treranker\t1\t1\t1\t1\n")
    with pytest.raises(ValueError, match="same queries"):
        compare("scifact", {"A": (str(tmp_path / "a"), "reranker"), "C": (str(tmp_path / "c"), "reranker")})
    with pytest.raises(ValueError, match="no rows of system 'fused'"):
        compare("scifact", {"A": (str(tmp_path / "a"), "fused")})


def test_headline_renders_the_result_files_and_refuses_a_mix_of_models(tmp_path, monkeypatch):
    """benchmarks/headline.py: the README's and the model card's result blocks come from the JSON
    files; --check fails on a stale page, --write mends it; files of different models are refused."""
    import shutil

    import headline

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    for name in [f for _, f in headline.QUALITY] + [headline.QUICKSTART]:
        shutil.copy(headline.REPO / headline.RESULTS / name, results / name)
    (tmp_path / "docs").mkdir()
    for page in headline.PAGES:
        shutil.copy(headline.REPO / page, tmp_path / page)
    monkeypatch.setattr(headline, "REPO", tmp_path)
    assert headline.main(["--check"]) == 0
    first = results / headline.QUALITY[0][1]
    record = json.loads(first.read_text())
    for row in record["rows"]:
        if row["system"] == headline.ROWS["fused"]:
            row["metrics"]["nDCG@10"] = 0.98765
    first.write_text(json.dumps(record))
    assert headline.main(["--check"]) == 1
    assert headline.main(["--write"]) == 0 and headline.main(["--check"]) == 0
    assert "**0.9877**" in (tmp_path / "README.md").read_text()
    model_row = next(r for r in record["rows"] if r["system"] == headline.ROWS["model"])
    fingerprint, model_row["fingerprint"] = model_row["fingerprint"], "another-model"
    first.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different models"):
        headline.main(["--check"])
    model_row["fingerprint"] = fingerprint  # the quality files agree again; the quick start's run does not
    first.write_text(json.dumps(record))
    quick = json.loads((results / headline.QUICKSTART).read_text())
    quick["model"]["fingerprint"] = "another-model"
    (results / headline.QUICKSTART).write_text(json.dumps(quick))
    with pytest.raises(ValueError, match="re-run the quick-start command"):
        headline.main(["--check"])


def test_selection_guard_keeps_a_challenger_that_wins_on_one_domain_by_losing_another():
    """benchmarks/selection.py: the challenger ships iff it is >= on all dev queries and, with a guard,
    no more than the tolerance below on the guarded collections pooled; a guard naming a collection the
    dev set lacks raises."""
    from selection import decide

    counts = {"scifact:train": 100, "nfcorpus:train": 30, "wikiqa:dev": 126}
    guard = {"collections": ["scifact:train", "nfcorpus:train"], "tolerance": 0.01}
    s = {"ndcg@10": 0.58, "per_collection": {"scifact:train": 0.75, "nfcorpus:train": 0.30, "wikiqa:dev": 0.58}}
    web = {"ndcg@10": 0.60, "per_collection": {"scifact:train": 0.70, "nfcorpus:train": 0.30, "wikiqa:dev": 0.70}}
    even = {"ndcg@10": 0.60, "per_collection": {"scifact:train": 0.745, "nfcorpus:train": 0.30, "wikiqa:dev": 0.66}}
    assert decide({"G": web, "S": s}, "G", counts, None)["ships"]  # without the guard the web gain decides
    lost = decide({"G": web, "S": s}, "G", counts, guard)
    assert not lost["ships"] and not lost["guard"]["held"]
    assert lost["guard"]["ndcg@10"]["S"] == pytest.approx((100 * 0.75 + 30 * 0.30) / 130)
    assert decide({"G": even, "S": s}, "G", counts, guard)["ships"]  # 0.005 below: within the tolerance
    assert not decide({"G": s, "S": web}, "G", counts, guard)["ships"]  # lower over all dev queries
    with pytest.raises(ValueError, match=r"guard: collections \['med:test'\]"):
        decide({"G": web, "S": s}, "G", counts, {"collections": ["med:test"]})


@pytest.mark.parametrize("script", ["ablation", "ddp", "eval_ray", "quality", "selection", "stage2_memory"])
def test_documented_benchmark_commands_parse(script):
    """Every command a benchmark's docstring gives (``... python benchmarks/<script>.py ARGS``) builds
    its config: a documented command that fails at its first line is what a user meets first."""
    import importlib
    import re
    import shlex

    from prorank.config import config_from_argv

    module = importlib.import_module(script)
    commands = re.findall(r"python benchmarks/" + script + r"\.py((?:\\\n|[^\n])*)", module.__doc__)
    assert commands, f"benchmarks/{script}.py documents no command"
    cls = next(v for k, v in vars(module).items() if k.endswith("Config") and isinstance(v, type))
    # raises ConfigError naming the field a documented value does not fit
    configs = [config_from_argv(cls, shlex.split(tail.replace("\\\n", " "))) for tail in commands]
    if script == "ablation":
        cfg = configs[0]
        assert cfg.base is None and cfg.score_only == "prorank-smollm2-135m" and cfg.max_queries is None
        assert cfg.ood == ["nfcorpus:dev", "cranfield", "cacm", "med"]
