"""Stage-2 score learning on the tiny model: loss goes down, weights change, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prorank.config import ConfigError, load_config
from prorank.train.score import ScoreConfig, main

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
    base = dict(model=str(model_dir), output_dir=str(out), dataset=None, jsonl=str(groups),
                max_length=MAX_LENGTH, max_steps=4, groups_per_batch=2, learning_rate=1e-3,
                warmup_ratio=0.0, dev_queries=0, save_every=2, num_threads=1, seed=0)
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
    for name in ("score.yaml", "score-cpu.yaml"):
        cfg = load_config(ScoreConfig, REPO / "configs" / name)
        assert cfg.loss in ("listwise", "bce", "ranknet", "kl", "margin_mse")
    cpu = load_config(ScoreConfig, REPO / "configs" / "score-cpu.yaml")
    assert cpu.max_length == 256 and cpu.model == "smollm2-135m-instruct"
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
def test_beir_groups_and_dev_evaluation(tiny_model_dir, data_dir, tmp_path) -> None:
    """Real scifact train split: BM25 negatives, held-out dev queries, nDCG@10 logged."""
    summary = main(ScoreConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "beir"),
                               dataset=str(data_dir / "scifact"), max_queries=6, dev_queries=3,
                               dev_top_k=5, max_steps=2, eval_every=1, max_length=MAX_LENGTH,
                               num_threads=1, learning_rate=1e-3))
    assert [h["step"] for h in summary["dev_history"]] == [0, 1, 2]
    assert all(0.0 <= h["dev_ndcg@10"] <= 1.0 for h in summary["dev_history"])
    dev = json.loads((tmp_path / "beir" / "dev.json").read_text())
    groups = [json.loads(line) for line in (tmp_path / "beir" / "groups.jsonl").open()]
    assert not {g["qid"] for g in groups} & set(dev["qids"]), "dev queries must not be trained on"
    from prorank.data import load_dataset

    qrels = load_dataset(str(data_dir / "scifact"), split="train").qrels
    for g in groups:
        assert qrels[g["qid"]][g["docids"][0]] > 0 and g["labels"][0] > 0
        assert all(qrels[g["qid"]].get(d, 0) <= 0 for d in g["docids"][1:])


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
        "score": {"model": str(tiny_model_dir), "dataset": None, "jsonl": str(groups_file),
                  "max_length": MAX_LENGTH, "max_steps": 2, "dev_queries": 0, "num_threads": 1},
    })
    report = pipeline_main(cfg)
    assert report["stages"]["score"]["checkpoint"] == str(tmp_path / "p" / "score" / "model")
    assert (tmp_path / "p" / "score" / "model" / "prorank.json").is_file()
    assert json.loads((tmp_path / "p" / "pipeline.json").read_text())["stages"]["score"]["summary"]["steps"] == 2
    again = pipeline_main(cfg)
    assert again["stages"]["score"]["summary"]["resumed_from_step"] == 2


def test_pipeline_chains_warmup_into_score(tiny_model_dir, groups_file, tmp_path) -> None:
    from prorank.config import from_dict
    from prorank.train.pipeline import PipelineConfig
    from prorank.train.pipeline import main as pipeline_main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"q{i}", "document": f"doc {i}", "label": i % 2}) + "\n"
                             for i in range(4)))
    cfg = from_dict(PipelineConfig, {
        "output_dir": str(tmp_path / "p"), "evaluation": None,
        "warmup": {"model": str(tiny_model_dir), "dataset": None, "jsonl": str(pairs), "max_length": MAX_LENGTH,
                   "num_threads": 1,
                   "grpo": {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2,
                            "max_completion_length": 2, "use_cpu": True, "report_to": "none",
                            "save_strategy": "no", "logging_steps": 1}},
        "score": {"dataset": None, "jsonl": str(groups_file), "max_length": MAX_LENGTH, "max_steps": 1,
                  "dev_queries": 0, "num_threads": 1},
    })
    report = pipeline_main(cfg)
    warm = tmp_path / "p" / "warmup" / "model"
    meta = json.loads((tmp_path / "p" / "score" / "model" / "prorank.json").read_text())
    assert meta["parent"] == str(warm) and meta["parent_stage"] == "warmup"
    assert meta["base_model"] == str(tiny_model_dir)
    assert report["stages"]["warmup"]["checkpoint"] == str(warm)
    assert pipeline_main(cfg)["stages"]["warmup"]["skipped"] == "checkpoint exists"
