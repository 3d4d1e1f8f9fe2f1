"""Stage-2 score learning on the tiny model: loss goes down, weights change, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from prorank.config import ConfigError, load_config, to_dict
from prorank.train.stage2_score import ScoreConfig, main

REPO = Path(__file__).resolve().parents[1]
MAX_LENGTH = 160


@pytest.fixture(scope="module")
def groups_file(tmp_path_factory) -> Path:
    rows = []
    topics = ["cats", "volcanoes", "tax law", "jazz", "protein folding", "rust lifetimes", "tides", "bread"]
    for i, topic in enumerate(topics):
        others = [t for t in topics if t != topic]
        rows.append({
            "query": f"facts about {topic}",
            "positive": {"title": topic, "text": f"{topic} are discussed here in detail"},
            "negatives": [f"a text on {others[i % 7]}", f"a text on {others[(i + 3) % 7]}", "unrelated"],
        })
    path = tmp_path_factory.mktemp("groups") / "groups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(model_dir: Path, groups: Path, out: Path, **kw) -> ScoreConfig:
    base = dict(model=str(model_dir), output_dir=str(out), datasets=[], jsonl=str(groups),
                max_length=MAX_LENGTH, max_steps=4, groups_per_batch=2, learning_rate=1e-3,
                warmup_ratio=0.0, save_every=2, num_threads=1, seed=0)
    base.update(kw)
    return ScoreConfig(**base)


def _fixed_batch_loss(model_dir: Path, groups: Path, loss: str = "listwise") -> float:
    """The loss on all groups at once, with the inference scoring path."""
    from prorank.reranker import Reranker
    from prorank.scoring import collate, relevance_scores
    from prorank.train.groups import encode_groups, read_jsonl_groups, scatter_scores
    from prorank.train.losses import compute_loss

    r = Reranker.from_pretrained(model_dir, device="cpu", dtype="float32", max_length=MAX_LENGTH)
    batch = encode_groups(read_jsonl_groups(groups), r.builder)
    ids, mask = collate(batch.prompts, r.tokenizer.pad_token_id)
    with torch.no_grad():
        flat = relevance_scores(r.model, ids, mask, r.builder.answer_token_ids)
    return compute_loss(loss, scatter_scores(flat, batch.mask), batch.labels, batch.mask).item()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_few_steps_lower_the_loss_and_change_weights(tiny_model_dir, groups_file, tmp_path) -> None:
    before = _fixed_batch_loss(tiny_model_dir, groups_file)
    summary = main(_cfg(tiny_model_dir, groups_file, tmp_path / "run", max_steps=8))
    assert summary["steps"] == 8 and summary["best_step"] == 8
    after = _fixed_batch_loss(tmp_path / "run" / "model", groups_file)
    assert after < before - 0.05, (before, after)
    old, new = _weights(tiny_model_dir), _weights(tmp_path / "run" / "model")
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    assert len(changed) > len(old) // 2

    meta = json.loads((tmp_path / "run" / "model" / "prorank.json").read_text())
    assert meta["stage"] == "score" and meta["loss"] == "listwise"
    assert meta["base_model"] == str(tiny_model_dir) and meta["parent"] is None
    assert meta["data"]["groups"] == 8 and meta["config"]["max_steps"] == 8
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9)) and all("loss" in r for r in records)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_resume_after_interruption_gives_the_same_state(tiny_model_dir, groups_file, tmp_path) -> None:
    straight = _cfg(tiny_model_dir, groups_file, tmp_path / "a", max_steps=5, save_every=3,
                    warmup_ratio=0.2, gradient_accumulation_steps=2)
    main(straight)
    interrupted = _cfg(tiny_model_dir, groups_file, tmp_path / "b", max_steps=5, save_every=3,
                       warmup_ratio=0.2, gradient_accumulation_steps=2)
    part = main(interrupted, stop_at=2)
    assert part == {"output_dir": str(tmp_path / "b"), "steps": 2, "interrupted": True}
    assert not (tmp_path / "b" / "model").exists()
    assert json.loads((tmp_path / "b" / "state" / "trainer.json").read_text())["step"] == 2
    summary = main(interrupted)
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 5
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key
    opt_a = torch.load(tmp_path / "a" / "state" / "optimizer.bin", weights_only=False)
    opt_b = torch.load(tmp_path / "b" / "state" / "optimizer.bin", weights_only=False)
    for sa, sb in zip(opt_a["state"].values(), opt_b["state"].values()):
        assert torch.allclose(sa["exp_avg"], sb["exp_avg"], rtol=0, atol=1e-6)
    log_a = [(r["step"], round(r["loss"], 5)) for r in map(json.loads, (tmp_path / "a" / "log.jsonl").open())]
    log_b = [(r["step"], round(r["loss"], 5)) for r in map(json.loads, (tmp_path / "b" / "log.jsonl").open())]
    assert log_a == log_b
    # a finished run resumes to a no-op
    again = main(interrupted)
    assert again["steps"] == 5 and again["resumed_from_step"] == 5


def test_a_finished_run_is_extended_by_raising_max_steps(tiny_model_dir, groups_file, tmp_path) -> None:
    """Training longer = the same command with a larger max_steps: it continues from the saved state,
    its learning rate following the schedule of the new length from there on."""
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "x", max_steps=3, save_every=3))
    first = _weights(tmp_path / "x" / "model")
    summary = main(_cfg(tiny_model_dir, groups_file, tmp_path / "x", max_steps=6, save_every=3))
    assert summary["resumed_from_step"] == 3 and summary["steps"] == 6
    assert any(not torch.equal(first[k], v) for k, v in _weights(tmp_path / "x" / "model").items())
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "y", max_steps=6, save_every=3))
    lrs = {d: {r["step"]: r["learning_rate"] for r in map(json.loads, (tmp_path / d / "log.jsonl").open())}
           for d in ("x", "y")}
    assert list(lrs["x"]) == [1, 2, 3, 4, 5, 6]
    assert [lrs["x"][s] for s in (4, 5, 6)] == pytest.approx([lrs["y"][s] for s in (4, 5, 6)])
    assert lrs["x"][3] < lrs["y"][3]  # the first 3 steps decayed towards 0 at step 3
    # the checkpoint's config records the old length, and retrains the same model from scratch
    config = json.loads((tmp_path / "x" / "model" / "prorank.json").read_text())["config"]
    assert config["max_steps"] == 6 and config["restarts"] == [3]
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "z", max_steps=6, save_every=3, restarts=[3]))
    x, z = _weights(tmp_path / "x" / "model"), _weights(tmp_path / "z" / "model")
    for key in x:
        assert torch.allclose(x[key], z[key], rtol=0, atol=1e-6), key
    with pytest.raises(ValueError, match="restarts"):
        _cfg(tiny_model_dir, groups_file, tmp_path / "w", max_steps=6, restarts=[6])


def test_resume_refuses_a_changed_config(tiny_model_dir, groups_file, tmp_path) -> None:
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "r", max_steps=2), stop_at=1)
    with pytest.raises(ValueError, match="loss"):
        main(_cfg(tiny_model_dir, groups_file, tmp_path / "r", max_steps=2, loss="bce"))


def test_train_layers_freezes_the_lower_layers(tiny_model_dir, groups_file, tmp_path) -> None:
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "top", max_steps=2, train_layers=1))
    old, new = _weights(tiny_model_dir), _weights(tmp_path / "top" / "model")
    assert all(torch.equal(old[k], new[k]) for k in old if "layers.0." in k or "embed" in k)
    assert any(not torch.equal(old[k], new[k]) for k in old if "layers.1." in k)


def test_lora_is_merged_into_a_loadable_checkpoint(tiny_model_dir, groups_file, tmp_path) -> None:
    from prorank.reranker import Reranker

    main(_cfg(tiny_model_dir, groups_file, tmp_path / "lora", max_steps=2, loss="ranknet",
              lora={"r": 4, "lora_alpha": 8}))
    folder = tmp_path / "lora" / "model"
    assert not (folder / "adapter_config.json").exists()
    new = _weights(folder)
    assert not any("lora" in k for k in new)
    old = _weights(tiny_model_dir)
    assert any(not torch.equal(old[k], new[k]) for k in old)
    r = Reranker.from_pretrained(folder, device="cpu", max_length=MAX_LENGTH)
    assert r.metadata["stage"] == "score" and r.metadata["loss"] == "ranknet"
    assert len(r.score("facts about cats", ["cats", "dogs"])) == 2


def test_lora_adapter_checkpoint_with_answer_rows_and_its_compact_export(real_tokenizer, groups_file, tmp_path) -> None:
    """merge_lora: false keeps the adapter (+ the trained answer rows) as the checkpoint; it loads
    over its base, scores like the training-time model, and exports to float16 nearly unchanged."""
    from conftest import build_tiny_model

    from prorank.prompt import LABELS, answer_token_id
    from prorank.reranker import Reranker
    from prorank.adapter_export import export_adapter

    tiny_model_dir = tmp_path / "tied"  # tied embeddings: the answer rows are the output rows
    build_tiny_model(real_tokenizer, tied=True).save_pretrained(tiny_model_dir)
    real_tokenizer.save_pretrained(tiny_model_dir)
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "ad", max_steps=3, lora={"r": 4, "lora_alpha": 8},
              merge_lora=False, train_answer_rows=True, learning_rate=1e-2))
    folder = tmp_path / "ad" / "model"
    assert (folder / "adapter_config.json").is_file() and not (folder / "model.safetensors").exists()
    adapter = load_file(str(folder / "adapter_model.safetensors"))
    assert any("trainable_tokens" in k for k in adapter) and any("lora_A" in k for k in adapter)
    loaded = Reranker.from_pretrained(folder, device="cpu", max_length=MAX_LENGTH)
    base = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=MAX_LENGTH)
    rows = [answer_token_id(base.tokenizer, label) for label in LABELS]
    merged_out = loaded.model.get_output_embeddings().weight
    assert not torch.equal(merged_out[rows], base.model.get_output_embeddings().weight[rows])  # rows trained
    docs = ["cats are discussed here in detail", "a text on jazz", "unrelated"]
    scores = loaded.score("facts about cats", docs)
    assert scores != pytest.approx(base.score("facts about cats", docs), abs=1e-3)
    with pytest.raises(ValueError, match="not portable"):  # its base is a local folder here
        export_adapter(folder, tmp_path / "bundle")
    sums = export_adapter(folder, tmp_path / "bundle", base=str(tiny_model_dir))
    assert set(sums) == {"adapter_config.json", "adapter_model.safetensors", "prorank.json"}
    assert json.loads((tmp_path / "bundle" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    small = Reranker.from_pretrained(tmp_path / "bundle", device="cpu", max_length=MAX_LENGTH)
    assert small.score("facts about cats", docs) == pytest.approx(scores, abs=1e-2)
    with pytest.raises(FileExistsError):
        export_adapter(folder, tmp_path / "bundle", base=str(tiny_model_dir))
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        export_adapter(tiny_model_dir, tmp_path / "other")


def test_stage_one_checkpoint_is_recorded_as_parent(tiny_model_dir, groups_file, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.checkpoint import save_checkpoint

    parent = tmp_path / "warmup" / "model"
    save_checkpoint(AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir),
                    parent, {"stage": "warmup", "base_model": "tiny-base"})
    main(_cfg(parent, groups_file, tmp_path / "s2", max_steps=1, loss="bce"))
    meta = json.loads((tmp_path / "s2" / "model" / "prorank.json").read_text())
    assert meta["parent"] == str(parent) and meta["parent_stage"] == "warmup"
    assert meta["base_model"] == "tiny-base"


def test_config_files_load() -> None:
    for name in ("score.yaml", "score-cpu.yaml", "score-cpu-dev30.yaml"):
        cfg = load_config(ScoreConfig, REPO / "configs" / name)
        assert cfg.loss in ("listwise", "bce", "ranknet", "kl", "margin_mse") or isinstance(cfg.loss, dict)
    cpu = load_config(ScoreConfig, REPO / "configs" / "score-cpu.yaml")
    assert cpu.max_length == 256 and cpu.model == "smollm2-135m-instruct"
    assert [s.dataset for s in cpu.datasets] == ["scifact", "nfcorpus"] and cpu.teacher == "all-minilm-l6-v2"
    from prorank.config import load_config as load
    from prorank.train.pipeline import PipelineConfig
    from prorank.train.sources import DataSource

    # the stage-2-only adapter was trained by this very recipe (its checkpoint records the config it
    # ran), but for the micro-batches: 1 group x 4 accumulated = 4 groups at once (equal batches and
    # gradients: test_micro_batches_equal_one_large_batch) and where the data is built (isolate_data: a
    # child process, the same groups)
    stage2_only = json.loads((REPO / "prorank" / "weights" / "prorank-smollm2-135m" / "prorank.json").read_text())
    batching = ("output_dir", "groups_per_batch", "gradient_accumulation_steps", "isolate_data")
    ran, now = dict(stage2_only["config"]), to_dict(cpu)
    for key in ("datasets", "dev"):  # sources gained fields since (at their defaults there)
        ran[key] = [to_dict(DataSource(**d)) for d in ran[key]]
    assert {k: v for k, v in ran.items() if k not in batching} == {k: v for k, v in now.items() if k not in batching}
    assert ran["groups_per_batch"] * ran["gradient_accumulation_steps"] == 4 == now["groups_per_batch"] * now[
        "gradient_accumulation_steps"]
    pipeline = load(PipelineConfig, REPO / "configs" / "pipeline-cpu.yaml")
    assert pipeline.score_config == "configs/score-cpu.yaml" and pipeline.warmup["max_length"] == cpu.max_length
    with pytest.raises(ConfigError, match="unknown"):
        load_config(ScoreConfig, REPO / "configs" / "score-cpu.yaml", ["--learning_rat", "1"])
    with pytest.raises(ValueError, match="loss"):
        ScoreConfig(loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_layers and lora"):
        ScoreConfig(train_layers=2, lora={"r": 4})


def test_distillation_needs_teacher_scores(tiny_model_dir, groups_file, tmp_path) -> None:
    with pytest.raises(ValueError, match="teacher"):
        main(_cfg(tiny_model_dir, groups_file, tmp_path / "kl", loss="kl"))
    scored = tmp_path / "scored.jsonl"
    scored.write_text(json.dumps({"query": "cats", "documents": ["cats", "dogs", "tax"], "scores": [3.0, 1.0, -2.0]}) + "\n")
    summary = main(_cfg(tiny_model_dir, scored, tmp_path / "mm", loss="margin_mse", max_steps=2, groups_per_batch=1))
    assert summary["steps"] == 2


@pytest.mark.slow
def test_several_datasets_teacher_distillation_and_dev_fusion(tiny_model_dir, data_dir, tmp_path) -> None:
    """Real scifact + nfcorpus train splits, BM25 negatives, the real MiniLM+BM25 teacher, a dev
    set from scifact train (held out) and nfcorpus dev; nDCG@10 and the fusion weight logged."""
    from prorank.data import load_dataset
    from prorank.registry import pull

    pull("all-minilm-l6-v2", quiet=True)
    cfg = load_config(ScoreConfig, None, {
        "model": str(tiny_model_dir), "output_dir": str(tmp_path / "beir"),
        "datasets": [{"dataset": str(data_dir / "scifact"), "max_queries": 6},
                     {"dataset": "nfcorpus", "max_queries": 5, "max_positives_per_query": 1}], "max_groups": 10,
        "dev": [{"dataset": str(data_dir / "scifact"), "split": "train", "max_queries": 3},
                {"dataset": "nfcorpus", "split": "dev", "max_queries": 2}],
        "teacher": "all-minilm-l6-v2", "loss": {"kl": 1.0, "listwise": 0.5},
        "dev_top_k": 5, "max_steps": 2, "eval_every": 1, "max_length": MAX_LENGTH, "num_threads": 1,
        "learning_rate": 1e-3, "fusion": "interpolate"})
    summary = main(cfg)
    assert [h["step"] for h in summary["dev_history"]] == [0, 1, 2]
    for h in summary["dev_history"]:
        assert 0.0 <= h["dev_ndcg@10"] <= 1.0 and 0.0 <= h["dev_fusion_weight"] <= 1.0
        assert h["dev_fused_ndcg@10"] >= max(h["dev_ndcg@10"], 0.0) - 1e-9  # weight 0 is in the grid
        assert set(h) >= {"dev_ndcg@10/scifact:train", "dev_ndcg@10/nfcorpus:dev"}
    dev = json.loads((tmp_path / "beir" / "dev.json").read_text())
    assert [c["name"] for c in dev["collections"]] == ["scifact", "nfcorpus"]
    held_out = {f"scifact/{q}" for q in dev["collections"][0]["qids"]}
    groups = [json.loads(line) for line in (tmp_path / "beir" / "groups.jsonl").open()]
    assert len(groups) == 10 and not {g["qid"] for g in groups} & held_out, "dev queries are never trained on"
    assert {g["qid"].split("/")[0] for g in groups} == {"scifact", "nfcorpus"}  # both collections mixed
    qrels = {"scifact": load_dataset(str(data_dir / "scifact"), split="train").qrels,
             "nfcorpus": load_dataset("nfcorpus", split="train").qrels}
    for g in groups:
        name, qid = g["qid"].split("/", 1)
        assert qrels[name][qid][g["docids"][0]] > 0 and all(qrels[name][qid].get(d, 0) <= 0 for d in g["docids"][1:])
        assert len(g["scores"]) == len(g["docids"]) and all(0.0 <= t <= 1.0 for t in g["scores"])
    data = json.loads((tmp_path / "beir" / "data.json").read_text())
    # built in a child process (BM25's JVM, the teacher, the corpora left with it), its peak recorded
    assert data["built_by"]["process"] == "child" and data["built_by"]["peak_rss_mb"] > 0
    for source in ("scifact:train", "nfcorpus:train"):
        teacher = data["sources"][source]["teacher"]
        assert 0.0 <= teacher["bm25_weight"] <= 1.0
        assert teacher["teacher_ndcg@10"] >= max(teacher["bm25_alone_ndcg@10"], teacher["dense_alone_ndcg@10"])
    meta = json.loads((tmp_path / "beir" / "model" / "prorank.json").read_text())
    assert meta["fusion"]["method"] == "interpolate" and 0.0 <= meta["fusion"]["weight"] <= 1.0
    assert meta["max_length"] == MAX_LENGTH
    assert ("calibration" in meta) != ("calibration_error" in meta)  # fitted on the kept step's dev pairs, or why not

    # benchmarks/selection.py (the shipped model's choice on dev) scores a checkpoint on a run's dev.json
    # with the function training evaluates itself with: for the kept step both agree
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from selection import from_run, measure  # noqa: E402  (benchmarks/selection.py)

    from prorank.train.devset import DevSet

    dev_file = tmp_path / "beir" / "dev.json"
    model, cache = str(tmp_path / "beir" / "model"), str(tmp_path / "scores.sqlite")
    recorded, scored = from_run(model, dev_file), measure(model, DevSet.load(dev_file), cache)
    assert measure(model, DevSet.load(dev_file), cache) == scored  # the second time from the score cache
    assert recorded["ndcg@10"] == pytest.approx(meta["train"]["dev_ndcg@10"])
    assert scored["ndcg@10"] == pytest.approx(recorded["ndcg@10"], abs=2e-3)
    assert scored["fused_ndcg@10"] == pytest.approx(recorded["fused_ndcg@10"], abs=2e-3)
    assert set(scored["per_collection"]) == set(recorded["per_collection"]) == {"scifact:train", "nfcorpus:dev"}


def test_stage2_stores_the_calibration_of_its_dev_pairs() -> None:
    """A kept checkpoint carries the Platt fit of its dev pairs (or says why it could not)."""
    from prorank.calibration import Calibration
    from prorank.evaluation.judged_pairs import JudgedPairs
    from prorank.train.stage2_score import dev_calibration

    def pairs(sign: float) -> JudgedPairs:  # 10 queries x 10 candidates, the first relevant
        lists = {f"c/q{i}": ([f"d{j}" for j in range(10)], [sign * (3.0 - j + 0.1 * i) for j in range(10)], [0.0] * 10)
                 for i in range(10)}
        return JudgedPairs(lists, {k: {"d0": 1} for k in lists}, [{"dataset": "c", "split": "dev"}], 10)

    meta = dev_calibration(pairs(1.0), 256)
    cal = Calibration.from_dict(meta["calibration"])
    assert cal.a > 0 and cal.fitted_on["pairs"] == 100 and cal.fitted_on["positives"] == 10
    assert cal.probability(3.5) > 0.5 > cal.probability(1.0)  # the relevant ones above, the rest below
    assert "scores do not rise" in dev_calibration(pairs(-1.0), 256)["calibration_error"]


def test_dataset_without_the_split_is_named(tmp_path, data_dir) -> None:
    from prorank.data import DatasetError
    from prorank.train.sources import DataSource, load_sources

    with pytest.raises(DatasetError, match="nfcorpus.*test"):
        load_sources([DataSource("nfcorpus", split="test")], [], str(data_dir))
    with pytest.raises(ConfigError, match="max_queries"):
        load_config(ScoreConfig, None, {"datasets": [{"dataset": "scifact", "max_queries": 0}]})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(ScoreConfig, None, {"datasets": [{"dataset": "scifact", "splt": "train"}]})
    with pytest.raises(ValueError, match="teacher"):
        ScoreConfig(loss="kl")
    with pytest.raises(ValueError, match="loss"):
        ScoreConfig(loss={"kl": 1.0, "hinge": 1.0})


def test_sources_hold_dev_queries_out_and_sample_deterministically(data_dir) -> None:
    from prorank.train.sources import DataSource, load_sources

    assert DataSource.from_string("nfcorpus:dev") == DataSource("nfcorpus", split="dev")
    assert DataSource.from_string("scifact") == DataSource("scifact", split="train")
    train = [DataSource("scifact"), DataSource("nfcorpus", max_queries=50)]
    dev = [DataSource("scifact", max_queries=20), DataSource("nfcorpus", split="dev", max_queries=10)]
    a_train, a_dev = load_sources(train, dev, str(data_dir), seed=3)
    b_train, b_dev = load_sources(train, dev, str(data_dir), seed=3)
    assert [s.qids for s in a_train] == [s.qids for s in b_train] and [s.qids for s in a_dev] == [s.qids for s in b_dev]
    assert len(a_dev[0].qids) == 20 and not set(a_dev[0].qids) & set(a_train[0].qids)
    assert len(a_train[0].qids) + 20 == len([q for q in a_train[0].data.qrels if q in a_train[0].data.queries])
    assert len(a_train[1].qids) == 50 and len(a_dev[1].qids) == 10  # another split: nothing held out
    assert load_sources(train, dev, str(data_dir), seed=4)[1][0].qids != a_dev[0].qids


# ----------------------------------------------------------------------------- pipeline
def test_flatten_merges_nested_blocks() -> None:
    from prorank.train.pipeline import flatten

    assert flatten({"grpo": {"max_steps": 2, "beta": 0.0}, "lora": None, "x": 1}) == {
        "grpo.max_steps": 2, "grpo.beta": 0.0, "lora": None, "x": 1}


def test_pipeline_without_warmup_runs_score_and_is_rerunnable(tiny_model_dir, groups_file, tmp_path) -> None:
    from prorank.config import from_dict
    from prorank.train.pipeline import PipelineConfig
    from prorank.train.pipeline import main as pipeline_main

    cfg = from_dict(PipelineConfig, {
        "output_dir": str(tmp_path / "p"), "warmup": None, "evaluation": None,
        "score": {"model": str(tiny_model_dir), "datasets": [], "jsonl": str(groups_file),
                  "max_length": MAX_LENGTH, "max_steps": 2, "num_threads": 1},
    })
    report = pipeline_main(cfg)
    assert report["stages"]["score"]["checkpoint"] == str(tmp_path / "p" / "score" / "model")
    assert (tmp_path / "p" / "score" / "model" / "prorank.json").is_file()
    assert json.loads((tmp_path / "p" / "pipeline.json").read_text())["stages"]["score"]["summary"]["steps"] == 2
    again = pipeline_main(cfg)
    assert again["stages"]["score"]["summary"]["resumed_from_step"] == 2


def _pipeline(model_dir: Path, groups: Path, out: Path, warmup: dict | None = None, grpo: dict | None = None,
              score: dict | None = None) -> Any:
    """A two-stage PipelineConfig on the tiny model: stage 1 on 4 JSONL pairs (1 GRPO step), stage 2
    on the groups file (1 step); ``warmup``, ``grpo`` and ``score`` override those blocks."""
    from prorank.config import from_dict
    from prorank.train.pipeline import PipelineConfig

    pairs = out / "pairs.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    pairs.write_text("".join(json.dumps({"query": f"q{i}", "document": f"doc {i}", "label": i % 2}) + "\n"
                             for i in range(4)))
    return from_dict(PipelineConfig, {
        "output_dir": str(out / "p"), "evaluation": None,
        "warmup": {"model": str(model_dir), "datasets": [], "jsonl": str(pairs), "max_length": MAX_LENGTH,
                   "num_threads": 1, **(warmup or {}),
                   "grpo": {"max_steps": 1, "per_device_train_batch_size": 4, "num_generations": 2,
                            "max_completion_length": 2, "use_cpu": True, "report_to": "none",
                            "save_strategy": "no", "logging_steps": 1, **(grpo or {})}},
        "score": {"datasets": [], "jsonl": str(groups), "max_length": MAX_LENGTH, "max_steps": 1,
                  "num_threads": 1, **(score or {})},
    })


def test_pipeline_chains_warmup_into_score(tiny_model_dir, groups_file, tmp_path) -> None:
    from prorank.train.pipeline import main as pipeline_main

    cfg = _pipeline(tiny_model_dir, groups_file, tmp_path)
    report = pipeline_main(cfg)
    warm = tmp_path / "p" / "warmup" / "model"
    meta = json.loads((tmp_path / "p" / "score" / "model" / "prorank.json").read_text())
    assert meta["parent"] == str(warm) and meta["parent_stage"] == "warmup"
    assert meta["base_model"] == str(tiny_model_dir)
    assert report["stages"]["warmup"]["checkpoint"] == str(warm)
    # stage 1 trained in a process of its own (gone before stage 2), its peak that process's
    assert report["stages"]["warmup"]["process"] == "child" and report["stages"]["warmup"]["peak_rss_mb"] > 0
    assert report["stages"]["score"]["process"] == "pipeline"
    again = pipeline_main(cfg)["stages"]["warmup"]
    assert again["skipped"] == "checkpoint exists"  # not trained twice, and its record is kept:
    assert again["seconds"] == report["stages"]["warmup"]["seconds"] and again["summary"]["global_step"] == 1


def test_an_interrupted_stage1_resumes_in_the_pipeline(tiny_model_dir, groups_file, tmp_path) -> None:
    """Killed after stage 1's first saved step (no model/ yet): re-running the pipeline continues
    stage 1 from that checkpoint instead of starting it again."""
    import shutil

    from prorank.train.pipeline import main as pipeline_main
    from prorank.train.pipeline import stage_configs
    from prorank.train.stage1_warmup import main as warmup_main

    cfg = _pipeline(tiny_model_dir, groups_file, tmp_path,
                    grpo={"max_steps": 2, "save_strategy": "steps", "save_steps": 1})
    first, _ = stage_configs(cfg)
    first.grpo["max_steps"] = 1
    warmup_main(first)  # the interrupted run: one step saved as trainer/checkpoint-1 ...
    shutil.rmtree(tmp_path / "p" / "warmup" / "model")  # ... and no final model
    report = pipeline_main(cfg)
    summary = report["stages"]["warmup"]["summary"]
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["global_step"] == 2
    log = [json.loads(line)["step"] for line in (tmp_path / "p" / "warmup" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2]


def test_pipeline_chains_lora_warmup_into_one_adapter(tiny_model_dir, groups_file, tmp_path) -> None:
    """Stage 1 as a LoRA adapter, stage 2's LoRA over it: the final checkpoint is one adapter over the
    base holding both (ranks added), which loads as a reranker."""
    from safetensors.torch import load_file

    from prorank.reranker import Reranker
    from prorank.train.pipeline import main as pipeline_main

    cfg = _pipeline(tiny_model_dir, groups_file, tmp_path, warmup={"lora": {"r": 2, "lora_alpha": 4}, "merge_lora": False},
                    grpo={"learning_rate": 0.05},
                    score={"max_steps": 2, "lora": {"r": 4, "lora_alpha": 8}, "merge_lora": False,
                           "train_answer_rows": True, "learning_rate": 1e-2})
    report = pipeline_main(cfg)
    warm, final = tmp_path / "p" / "warmup" / "model", tmp_path / "p" / "score" / "model"
    assert json.loads((warm / "adapter_config.json").read_text())["r"] == 2
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["base_model_name_or_path"] == str(tiny_model_dir)
    first, chained = load_file(str(warm / "adapter_model.safetensors")), load_file(str(final / "adapter_model.safetensors"))
    key = next(k for k in first if k.endswith("q_proj.lora_A.weight"))
    assert torch.equal(chained[key][:2], first[key])  # stage 1's rows, then stage 2's
    assert report["stages"]["warmup"]["peak_rss_mb"] > 0 and report["stages"]["score"]["peak_rss_mb"] > 0
    scores = Reranker.from_pretrained(final, device="cpu", max_length=MAX_LENGTH).score("q1", ["doc 1", "doc 2"])
    assert len(scores) == 2


def test_micro_batches_equal_one_large_batch(tiny_model_dir, groups_file, tmp_path) -> None:
    """2 groups at once == 1 group x 2 accumulated: the same weights after the same steps."""
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "big", groups_per_batch=2, max_steps=3, save_every=0))
    main(_cfg(tiny_model_dir, groups_file, tmp_path / "micro", groups_per_batch=1, gradient_accumulation_steps=2,
              max_steps=3, save_every=0))
    big, micro = _weights(tmp_path / "big" / "model"), _weights(tmp_path / "micro" / "model")
    assert all(torch.allclose(big[k], micro[k], atol=2e-4) for k in big)  # float rounding through Adam
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
              for run in ("big", "micro")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert not all(torch.equal(big[k], _weights(tiny_model_dir)[k]) for k in big)


def test_lora_block_is_read_in_one_place():
    """Both stages build their LoRA from ``prorank.train.lora``: defaults, overrides, a clear error."""
    from prorank.train.lora import LORA_DEFAULTS, lora_config

    cfg = lora_config({"r": 4}, trainable_token_indices=[1, 2])
    assert (cfg.r, cfg.lora_alpha, cfg.trainable_token_indices) == (4, LORA_DEFAULTS["lora_alpha"], [1, 2])
    with pytest.raises(ValueError, match="lora: .*peft.LoraConfig"):
        lora_config({"rank": 4})
