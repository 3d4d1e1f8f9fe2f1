"""Stage-1 GRPO warmup: a real (tiny) TRL run changes the weights and writes a loadable checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prorank.config import ConfigError, load_config
from prorank.train.stage1_warmup import WarmupConfig, grpo_args, main


def _cfg(model_dir, pairs_file, out, **grpo):
    return WarmupConfig(
        model=str(model_dir), output_dir=str(out), datasets=[], jsonl=str(pairs_file), max_length=128,
        num_threads=1,
        grpo={"max_steps": 2, "per_device_train_batch_size": 4, "num_generations": 4,
              "max_completion_length": 1, "learning_rate": 1e-3, "activation_checkpointing": False,
              "save_steps": 1, "use_cpu": True, **grpo},
    )


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_two_grpo_steps_change_weights_and_save_loadable_checkpoint(label_model_dir, pairs_file, tmp_path):
    from prorank.reranker import Reranker

    summary = main(_cfg(label_model_dir, pairs_file, tmp_path / "run"))
    ckpt = tmp_path / "run" / "model"
    assert summary["global_step"] == 2 and summary["checkpoint"] == str(ckpt)

    before, after = _weights(label_model_dir), _weights(ckpt)
    assert before.keys() == after.keys()
    assert max(float((before[k] - after[k]).abs().max()) for k in before) > 0

    reranker = Reranker.from_pretrained(ckpt, device="cpu", max_length=128)
    assert reranker.metadata["stage"] == "warmup"
    assert reranker.metadata["base_model"] == str(label_model_dir)
    assert reranker.metadata["data"]["pairs"] == 8
    assert reranker.metadata["config"]["grpo"]["max_steps"] == 2
    scores = reranker.score("question 1", ["passage 1", "passage 2"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)

    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert {"reward", "format_rate", "accuracy", "loss"} <= set(records[0])
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert len((tmp_path / "run" / "pairs.jsonl").read_text().splitlines()) == 8
    record = json.loads((tmp_path / "run" / "summary.json").read_text())  # prorank.train.warmup_record
    assert record["format"] == "prorank-warmup-run-v1" and record["stage"] == "warmup" and record["heldout"] is None
    assert record["training_curve"]["steps_logged"] == 2 and record["training_curve"]["last"]["step"] == 2


def test_resume_continues_from_the_last_trainer_checkpoint(label_model_dir, pairs_file, tmp_path):
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run")
    main(cfg)
    cfg.grpo["max_steps"] = 3
    cfg.resume_from_checkpoint = True
    summary = main(cfg)
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["global_step"] == 3
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_lora_is_merged_into_the_checkpoint(label_model_dir, pairs_file, tmp_path):
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", max_steps=1, save_strategy="no")
    cfg.lora = {"r": 4, "lora_alpha": 8}
    main(cfg)
    ckpt = tmp_path / "run" / "model"
    assert not (ckpt / "adapter_config.json").exists()
    assert _weights(ckpt).keys() == _weights(label_model_dir).keys()


def test_resume_without_checkpoint_names_the_field(label_model_dir, pairs_file, tmp_path):
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "fresh")
    cfg.resume_from_checkpoint = True
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint"):
        main(cfg)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="reward_weights"):
        WarmupConfig(reward_weights={"fromat": 1.0})
    with pytest.raises(ValueError, match="grpo"):
        grpo_args(WarmupConfig(grpo={"no_such_field": 1}))
    with pytest.raises(ValueError, match="label_balance.*balanced_batches"):
        WarmupConfig(label_balance=1.0)
    with pytest.raises(ValueError, match="label_balance"):
        WarmupConfig(label_balance=-1.0, balanced_batches=True)
    args = grpo_args(WarmupConfig(output_dir=str(tmp_path), grpo={"learning_rate": "1e-5", "use_cpu": True},
                                  reward_weights={"format": 0.5, "correctness": 2.0}))
    assert args.learning_rate == 1e-5 and args.reward_weights == [0.5, 2.0, 0.0]  # + label_one at 0
    assert args.output_dir == str(tmp_path / "trainer") and args.max_completion_length == 4


@pytest.mark.parametrize("name", ["warmup.yaml", "warmup-cpu.yaml", "warmup-cpu-levers.yaml"])
def test_shipped_configs_load(name):

    path = Path(__file__).resolve().parents[1] / "configs" / name
    cfg = load_config(WarmupConfig, path)
    args = grpo_args(cfg)
    assert args.generation_batch_size % args.num_generations == 0
    with pytest.raises(ConfigError, match="unknown"):
        load_config(WarmupConfig, path, ["--no_such_key", "1"])


def test_cli_overrides_reach_the_grpo_block(capsys, tmp_path):
    from prorank.cli import main as cli

    assert cli(["train", "warmup", "--print-config", "--grpo.max_steps", "7", "max_length=200",
                "--lora", "{r: 8}"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["grpo"] == {"max_steps": 7} and cfg["max_length"] == 200 and cfg["lora"] == {"r": 8}


def test_heldout_measurement_derived_from_a_warmup_config(capsys):
    """`prorank train heldout --warmup-config`: the base model vs the run's checkpoint, the warmup's
    prompt length, and the config's own `heldout` block (overrides apply to the warmup config)."""
    from prorank.cli import main as cli

    config = Path(__file__).resolve().parents[1] / "configs" / "warmup-cpu.yaml"
    assert cli(["train", "heldout", "--warmup-config", str(config), "--print-config",
                "output_dir=runs/elsewhere", "max_length=200"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["models"] == ["smollm2-135m-instruct", "runs/elsewhere/model"]
    assert cfg["names"] == ["zero-shot", "warmup"] and cfg["output"] == "runs/elsewhere/heldout.json"
    assert cfg["reranker"]["max_length"] == 200 and cfg["split"] == "test"


def test_dev_measurement_is_the_training_split_less_the_queries_trained_on(tmp_path):
    """The `dev` block: by default the first training source's split, without the queries in the
    run's pairs.jsonl and without a ranking effect (which cannot leave them out)."""
    from prorank.train.heldout import HeldoutConfig
    from prorank.train.warmup_record import heldout_config

    config = Path(__file__).resolve().parents[1] / "configs" / "warmup-cpu.yaml"
    cfg = load_config(WarmupConfig, config, ["output_dir=runs/elsewhere", "dev={max_pairs: 60}"])
    dev = heldout_config(cfg, "dev")
    assert (dev.dataset, dev.split, dev.max_pairs, dev.ranking_queries) == ("scifact", "train", 60, 0)
    assert dev.exclude_queries_of == ["runs/elsewhere/pairs.jsonl"] and dev.output == "runs/elsewhere/dev.json"
    assert dev.models == ["smollm2-135m-instruct", "runs/elsewhere/model"] and dev.reranker.max_length == 128
    assert heldout_config(cfg).split == "test" and not heldout_config(cfg).exclude_queries_of
    with pytest.raises(ValueError, match="dev: the training pairs came from a JSONL file"):  # at load time
        WarmupConfig(model="m", datasets=[], jsonl="pairs.jsonl", dev={})
    with pytest.raises(ConfigError, match="unknown"):
        load_config(WarmupConfig, config, ["heldout.max_pair=5"])
    with pytest.raises(ValueError, match="ranking_queries: .* cannot leave out exclude_queries_of"):
        HeldoutConfig(models=["m"], exclude_queries_of=["pairs.jsonl"], ranking_queries=50)


def test_a_run_measures_dev_pairs_of_queries_it_did_not_train_on(label_model_dir, tmp_path):
    rows = [{"qid": f"q{i}", "query": f"question {i}", "document": {"title": f"t{i}", "text": f"passage {i}"},
             "label": i % 2} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))  # q4-q7 trained on
    cfg = _cfg(label_model_dir, tmp_path / "train.jsonl", tmp_path / "run", save_strategy="no")
    cfg.dev = {"jsonl": str(tmp_path / "dev.jsonl"), "max_new_tokens": 1}
    summary = main(cfg)
    report = json.loads((tmp_path / "run" / "dev.json").read_text())
    assert report["pairs"]["count"] == 4 and report["pairs"]["labels"] == {"0": 2, "1": 2}
    assert [m["name"] for m in report["models"]] == ["zero-shot", "warmup"]
    assert report["config"]["exclude_queries_of"] == [str(tmp_path / "run" / "pairs.jsonl")]
    record = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert record["dev"] == report == summary["dev"] and record["heldout"] is None


def test_end_of_answer_bias_targets_only_the_turn_end_after_a_label(real_tokenizer):
    from transformers import GenerationConfig

    from prorank.prompt import PromptBuilder
    from prorank.train.stage1_warmup import end_of_answer_bias

    builder = PromptBuilder(real_tokenizer, 128)
    bias = end_of_answer_bias(builder, 8.0)
    eos = real_tokenizer.eos_token_id
    assert bias == [[[builder.answer_token_ids[0], eos], 8.0], [[builder.answer_token_ids[1], eos], 8.0]]
    GenerationConfig(sequence_bias=bias).validate()  # the form TRL passes on to generate()


def test_exploration_schedule_is_logged(label_model_dir, pairs_file, tmp_path):
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", max_completion_length=2, save_strategy="no",
               max_steps=3)
    cfg.answer_first_phase, cfg.end_of_answer_bias = True, 4.0
    main(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for r in records:
        assert r["phase"] in (1, 2)
        assert r["generated_tokens"] == (1 if r["phase"] == 1 else 2)
        assert r["end_of_answer_bias"] == 0.0 if r["phase"] == 1 else 0.0 <= r["end_of_answer_bias"] <= 8.0
        if r["phase"] == 1:
            assert r["completions/max_length"] == 1
    assert records[0]["phase"] == 1


def test_balanced_batches_and_probe_reach_the_log(label_model_dir, pairs_file, tmp_path, data_dir):
    """Two prompts per step read in order 1, 0, 1, 0; the label_one diagnostic and the held-out
    probe (real scifact pairs, before training and every step) land in log.jsonl."""
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", per_device_train_batch_size=8)
    from prorank.train.probe import ProbeConfig

    cfg.balanced_batches, cfg.baseline = True, "batch"
    cfg.probe = ProbeConfig(dataset="scifact", split="test", max_queries=4, max_pairs=6, every=1)
    cfg.data_dir = str(data_dir)
    args = grpo_args(cfg)
    assert args.shuffle_dataset is False and args.generation_batch_size // args.num_generations == 2
    main(cfg)
    before, after = _weights(label_model_dir), _weights(tmp_path / "run" / "model")
    assert max(float((before[k] - after[k]).abs().max()) for k in before) > 0  # the batch baseline trains
    labels = [json.loads(line)["label"] for line in (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()]
    assert labels == ["1", "0"] * 4
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert 0.0 <= r["label_one_rate"] <= 1.0 and 0.0 <= r["frac_reward_zero_std"] <= 1.0
        assert 0.0 <= r["probe_auc"] <= 1.0 and 0.0 <= r["probe_label_one"] <= 1.0 and r["probe_score_std"] >= 0.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["order"] == "balanced"

    # benchmarks/warmup_levers.py reads the run's log and, once measured, its held-out report
    import sys

    from prorank.train.heldout import HeldoutConfig
    from prorank.train.heldout import main as measure

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from warmup_levers import summarise

    row = summarise(tmp_path / "run")
    assert row["steps"] == 2 and row["heldout"] is None
    assert [p[0] for p in row["probe"]["series"]] == [1, 2] and row["settings"]["baseline"] == "batch"
    report = measure(HeldoutConfig(models=[str(label_model_dir), str(tmp_path / "run" / "model")],
                                   names=["zero-shot", "warmup"], data_dir=str(data_dir), max_queries=3, max_pairs=4,
                                   ranking_queries=0, output=str(tmp_path / "run" / "heldout.json")))
    warm = report["models"][1]
    held = summarise(tmp_path / "run")["heldout"]
    assert held["pairs"] == 4 and held["format_rate"] == warm["format_rate"]
    assert held["label_one_share"] == round(warm["answered"]["1"] / 4, 4)
    assert held["score_auc"] == round(warm["score_auc"], 4) and held["zero_shot_auc"] is not None
    assert held["score_std"] == round(warm["score_std"], 4) and held["zero_shot_score_std"] > 0

    # --keep: rows of runs no longer on disk stay; a named run is added or replaced
    import warmup_levers

    out, run = tmp_path / "levers.json", tmp_path / "run"
    warmup_levers.main(["--run", f"a={run}", "--run", f"b={run}", "--out", str(out)])
    rows = json.loads(out.read_text())["runs"]
    rows[0]["steps"] = 99  # as if run a had been measured elsewhere
    out.write_text(json.dumps({**json.loads(out.read_text()), "runs": rows}))
    record = warmup_levers.main(["--run", f"b={run}", "--run", f"c={run}", "--out", str(out), "--keep"])
    assert [(r["name"], r["steps"]) for r in record["runs"]] == [("a", 99), ("b", 2), ("c", 2)]
    assert len(record["earlier"]) == 1 and "a=" in record["earlier"][0]["command"]
    assert [r["name"] for r in warmup_levers.main(["--run", f"d={run}", "--out", str(out)])["runs"]] == ["d"]
    named = warmup_levers.main(["--run", f"lr=1e-4 (grpo.learning_rate=1e-4)={run}", "--out", str(out)])
    assert [r["name"] for r in named["runs"]] == ["lr=1e-4 (grpo.learning_rate=1e-4)"]  # split at the last "="


def test_negatives_curriculum_reads_harder_negatives_later(data_dir):
    """The curriculum splits the queries into parts read in order, each part balanced 1, 0, 1, 0 and
    its negatives drawn from its own BM25 rank window (checked against the real BM25 ranking)."""
    from prorank.train import pairs as P
    from prorank.train.negatives import ranked_docids
    from prorank.train.sources import DataSource
    from prorank.train.stage1_warmup import build_pairs

    cfg = WarmupConfig(datasets=[DataSource("scifact", "train", max_queries=8, max_positives_per_query=1)],
                       data_dir=str(data_dir), balanced_batches=True, negatives_depth=50,
                       negatives_curriculum=[[20, 50], [0, 3]])
    items, source = build_pairs(cfg, progress=False)
    assert source["negatives"]["curriculum"] == [[20, 50], [0, 3]] and source["curriculum_pairs"] == [8, 8]
    assert [p.stage for p in items] == [0] * 8 + [1] * 8
    assert [p.label for p in items] == ["1", "0"] * 8
    assert len({p.qid for p in items[:8]} & {p.qid for p in items[8:]}) == 0  # disjoint query parts
    data = P.load_beir("scifact", "train", data_dir)
    ranking = ranked_docids(P.bm25_searcher(data.path), {p.qid: p.query for p in items}, 50, progress=False)
    for p in items:
        if p.label == "0":
            start, end = cfg.negatives_curriculum[p.stage]
            assert start <= ranking[p.qid].index(p.docid) < end
    capped, _ = build_pairs(WarmupConfig(**{**cfg.__dict__, "max_pairs": 8}), progress=False)
    assert [p.stage for p in capped] == [0] * 4 + [1] * 4  # max_pairs caps each part, so the last is reached

    with pytest.raises(ValueError, match="balanced_batches"):
        WarmupConfig(negatives_curriculum=[[0, 10]])
    with pytest.raises(ValueError, match="negatives_depth"):
        WarmupConfig(balanced_batches=True, negatives_curriculum=[[50, 150]])


def test_teacher_scores_grade_the_correctness_reward(label_model_dir, data_dir, tmp_path):
    """`teacher`: every pair gets the real MiniLM+BM25 teacher's score (positives above negatives on
    average); the scores survive pairs.jsonl and reach TRL's graded_correctness reward in a real run."""
    from prorank.train import pairs as P
    from prorank.train.sources import DataSource
    from prorank.train.stage1_warmup import build_pairs

    cfg = WarmupConfig(datasets=[DataSource("scifact", "train", max_queries=12, max_positives_per_query=1)],
                       data_dir=str(data_dir), teacher="all-minilm-l6-v2",
                       reward_weights={"format": 1.0, "graded_correctness": 1.0})
    items, source = build_pairs(cfg, progress=False)
    assert all(0.0 <= p.teacher <= 1.0 for p in items)
    mean = {lab: sum(p.teacher for p in items if p.label == lab) / 12 for lab in "01"}
    assert mean["1"] > mean["0"], mean
    assert 0.0 <= source["datasets"][0]["teacher"]["bm25_weight"] <= 1.0

    path = P.write_jsonl_pairs(items[:8], tmp_path / "graded.jsonl")
    assert [p.teacher for p in P.read_jsonl_pairs(path)] == [p.teacher for p in items[:8]]
    run = _cfg(label_model_dir, path, tmp_path / "run")
    run.reward_weights = {"format": 1.0, "graded_correctness": 1.0}
    main(run)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(0.0 <= r["rewards/graded_correctness_reward/mean"] <= 1.0 for r in records)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "document": "d", "label": 1, "teacher": 1.5}) + "\n")
    with pytest.raises(ValueError, match="teacher must be a number in"):
        P.read_jsonl_pairs(bad)
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"query": "q", "document": "d", "label": 1}) + "\n")
    with pytest.raises(ValueError, match="need a 'teacher' score"):
        build_pairs(WarmupConfig(datasets=[], jsonl=str(plain), reward_weights={"graded_correctness": 1.0}),
                    progress=False)
    with pytest.raises(ValueError, match="needs teacher scores"):
        WarmupConfig(reward_weights={"graded_correctness": 1.0})


def test_expected_baseline_advantages_are_reward_minus_the_policys_expected_reward(
        label_model_dir, pairs_file, tmp_path, monkeypatch):
    """baseline: expected -- each completion's advantage in the first step is its reward minus its
    prompt's expected reward under the untrained policy (answers of up to two tokens: a label, then
    the end of the turn), recomputed here from unpadded forward passes of the checkpoint; the run
    trains and logs the policy's own label-1 probability."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import LABELS, PromptBuilder
    from prorank.train import baseline

    seen = []
    real = baseline.grpo_trainer_class

    def recording(name, label_token_ids=None):
        class Recording(real(name, label_token_ids)):
            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                seen.append(([dict(r) for r in inputs], output["completion_ids"].tolist(),
                             output["advantages"].tolist()))
                return output
        return Recording

    monkeypatch.setattr(baseline, "grpo_trainer_class", recording)
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", per_device_train_batch_size=8, scale_rewards="none",
               max_completion_length=2)
    cfg.balanced_batches, cfg.baseline = True, "expected"
    main(cfg)
    before, after = _weights(label_model_dir), _weights(tmp_path / "run" / "model")
    assert max(float((before[k] - after[k]).abs().max()) for k in before) > 0

    tok = AutoTokenizer.from_pretrained(label_model_dir)
    model = AutoModelForCausalLM.from_pretrained(label_model_dir, dtype=torch.float32)
    ids = PromptBuilder(tok, 128).answer_token_ids
    rows, completions, advantages = seen[0]
    assert len(rows) == len(advantages) == 8
    for row, completion, advantage in zip(rows, completions, advantages):
        prompt = tok(row["prompt"])["input_ids"]
        with torch.no_grad():  # p(answer is exactly label a) = p(a first) * p(end of turn right after a)
            exact = [float(torch.softmax(model(torch.tensor([prompt])).logits[0, -1], dim=-1)[a]
                           * torch.softmax(model(torch.tensor([prompt + [a]])).logits[0, -1], dim=-1)[tok.eos_token_id])
                     for a in ids]
        gold = LABELS.index(str(row["label"]))
        expected = 2 * exact[gold] + exact[1 - gold]  # format + correctness of each label, 0 otherwise
        answer = tok.decode(completion, skip_special_tokens=True).strip()
        reward = (answer in LABELS) + (answer == LABELS[gold])
        assert advantage == pytest.approx(reward - expected, abs=1e-4)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["policy_label_one"] <= 1.0 and 0.0 < r["exact_answer_mass"] < r["label_mass"] <= 1.0
               for r in records)


def test_balanced_batches_need_an_even_prompt_count_and_no_shuffling(tmp_path):
    with pytest.raises(ValueError, match="make it even"):
        grpo_args(WarmupConfig(output_dir=str(tmp_path), balanced_batches=True,
                               grpo={"per_device_train_batch_size": 12, "num_generations": 4, "use_cpu": True}))
    with pytest.raises(ValueError, match="shuffle_dataset"):
        WarmupConfig(balanced_batches=True, grpo={"shuffle_dataset": True})
    with pytest.raises(ValueError, match="baseline"):
        WarmupConfig(baseline="prompt")
    with pytest.raises(ValueError, match="scale_rewards: none"):
        WarmupConfig(baseline="expected")
    with pytest.raises(ValueError, match="probe.every"):
        WarmupConfig(probe={"every": 0})


def test_doctests_of_pairs_rewards_and_probe():
    import doctest

    from prorank.train import answers, baseline, label_balance, pairs, probe, rewards

    for module in (answers, baseline, label_balance, pairs, probe, rewards):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_gpu_levers_run_from_recorded_pairs(label_model_dir, pairs_file, tmp_path):
    """benchmarks/warmup_gpu.py run (the device-machine path): each lever a `prorank train warmup`
    process on recorded pairs (training, probe and held-out read from JSONL, no BM25), gathered into
    one JSON with its held-out result, probe curve and the overrides that define it."""
    import shutil
    import sys

    import yaml

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("train", "probe", "heldout"):
        shutil.copy(pairs_file, pairs / f"{name}.jsonl")
    config = tmp_path / "warmup.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(label_model_dir), "max_length": 128, "balanced_batches": True, "baseline": "batch",
        "probe": {"max_pairs": 8}, "heldout": {"max_pairs": 4, "max_new_tokens": 2},
        "grpo": {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 2,
                 "learning_rate": 1e-3, "activation_checkpointing": False}}))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from warmup_gpu import run

    result = run(pairs, tmp_path / "out", minutes=10, levers=["recipe", "kl"], config=str(config),
                 extra=["grpo.max_steps=2", "probe.every=1", "num_threads=1"], runs=tmp_path / "runs")
    rows = {r["lever"]: r for r in result["levers"]}
    assert [r["returncode"] for r in rows.values()] == [0, 0], [r.get("tail") for r in rows.values()]
    for name, row in rows.items():
        assert row["steps"] == 2 and [p[0] for p in row["probe"]["series"]] == [1, 2]
        assert all(0.0 <= p[1] <= 1.0 for p in row["probe"]["series"])
        assert row["heldout"]["pairs"] == 4 and 0.0 <= row["heldout"]["score_auc"] <= 1.0
        report = json.loads((tmp_path / "runs" / name / "heldout.json").read_text())
        assert [m["name"] for m in report["models"]] == ["zero-shot", "warmup"] and "jsonl" in report["pairs"]
        assert (tmp_path / "out" / f"log-{name}.jsonl").is_file()
    assert "grpo.beta=0.04" in rows["kl"]["command"] and "grpo.beta" not in rows["recipe"]["command"]
    saved = json.loads((tmp_path / "out" / "warmup-gpu-levers.json").read_text())
    assert [r["lever"] for r in saved["levers"]] == ["recipe", "kl"]


def _answer_label_one(model_dir, prompts):
    """Mean p(1) / (p(0) + p(1)) at the answer position of ``prompts`` (unpadded forwards)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import PromptBuilder

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = list(PromptBuilder(tok, 128).answer_token_ids)
    with torch.no_grad():
        return sum(float(torch.softmax(model(torch.tensor([tok(p)["input_ids"]])).logits[0, -1, ids], dim=-1)[1])
                   for p in prompts) / len(prompts)


def test_label_balance_term_pulls_the_shared_label_bias_back_to_even(label_model_dir, pairs_file, tmp_path):
    """label_balance: the logged answer_label_one of step 1 is the untrained model's mean
    p(1) / (p(0) + p(1)) over that step's two prompts (recomputed here from unpadded forwards), and
    a run whose base model leans to one label ends closer to 1:1 with the term than without it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import PromptBuilder
    from prorank.train.pairs import read_jsonl_pairs

    leaning = tmp_path / "leaning"  # the label model with its label-1 logit raised by ~2.5 on the pairs
    tok = AutoTokenizer.from_pretrained(label_model_dir)
    model = AutoModelForCausalLM.from_pretrained(label_model_dir, dtype=torch.float32)
    builder = PromptBuilder(tok, 128)
    with torch.no_grad():
        hidden = torch.stack([model.model(torch.tensor([builder.encode(p.query, p.document).input_ids]))
                              .last_hidden_state[0, -1] for p in read_jsonl_pairs(pairs_file)]).mean(0)
        model.lm_head.weight[builder.answer_token_ids[1]] += 2.5 * hidden / hidden.dot(hidden)
    model.save_pretrained(leaning)
    tok.save_pretrained(leaning)

    _assert_the_term_pulls_back_to_even(leaning, pairs_file, tmp_path, "first_token", _answer_label_one)


def _assert_the_term_pulls_back_to_even(model_dir, pairs_file, tmp_path, answer, share):
    """Four steps of ``model_dir`` without the term and with ``label_balance: 20`` on ``answer``
    (balanced batches, batch baseline): step 1's logged answer_label_one is ``share`` of that
    step's two prompts before training, and the run with the term ends closer to 1:1 (``share``
    over all prompts) than the start and than the run without it."""
    from transformers import AutoTokenizer

    from prorank.prompt import PromptBuilder
    from prorank.train.pairs import read_jsonl_pairs

    builder = PromptBuilder(AutoTokenizer.from_pretrained(model_dir), 128)
    ends = {}
    for coef in (0.0, 20.0):
        out = tmp_path / f"run-{answer}-{coef:g}"
        cfg = _cfg(model_dir, pairs_file, out, per_device_train_batch_size=8, max_steps=4, learning_rate=3e-4)
        cfg.balanced_batches, cfg.baseline = True, "batch"
        cfg.label_balance, cfg.label_balance_answer = coef, answer
        main(cfg)
        prompts = [builder.encode(p.query, p.document).text for p in read_jsonl_pairs(out / "pairs.jsonl")]
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        if coef:
            assert records[0]["answer_label_one"] == pytest.approx(share(model_dir, prompts[:2]), abs=1e-4)
            assert all(r["label_balance"] >= 0.0 for r in records)
        else:
            assert "answer_label_one" not in records[0]
        ends[coef] = share(out / "model", prompts)
    start = share(model_dir, prompts)
    assert abs(ends[20.0] - 0.5) < abs(ends[0.0] - 0.5) and abs(ends[20.0] - 0.5) < abs(start - 0.5), (start, ends)
    return start


def _exact_label_one(model_dir, prompts):
    """Mean P(answer is exactly 1) / (P(exactly 0) + P(exactly 1)) of ``prompts`` (unpadded
    forwards: the label as first token, then any end-of-turn token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import PromptBuilder

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    labels = list(PromptBuilder(tok, 128).answer_token_ids)
    eos = model.generation_config.eos_token_id
    eos = sorted({tok.eos_token_id, *([eos] if isinstance(eos, int) else eos or [])})
    shares = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt)["input_ids"]
            first = torch.softmax(model(torch.tensor([ids])).logits[0, -1], dim=-1)[labels]
            stop = torch.stack([torch.softmax(model(torch.tensor([ids + [a]])).logits[0, -1], dim=-1)[eos].sum()
                                for a in labels])
            exact = first * stop
            shares.append(float(exact[1] / exact.sum()))
    return sum(shares) / len(shares)


def test_label_balance_on_exact_answers_balances_whole_answers(label_model_dir, pairs_file, tmp_path):
    """label_balance_answer: exact: the logged answer_label_one of step 1 is the untrained model's
    mean P(exactly 1) / (P(exactly 0) + P(exactly 1)) over that step's prompts (recomputed from
    unpadded forwards), and for a model whose turn rarely ends after ``1`` (first tokens even,
    whole answers leaning to ``0``) the exact term brings whole answers closer to 1:1 than no term."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import PromptBuilder
    from prorank.train.pairs import read_jsonl_pairs

    with pytest.raises(ValueError, match="label_balance_answer"):
        WarmupConfig(label_balance=1.0, balanced_batches=True, label_balance_answer="last")
    stalling = tmp_path / "stalling"  # end of turn after "1" lowered by 4 against after "0"
    tok = AutoTokenizer.from_pretrained(label_model_dir)
    model = AutoModelForCausalLM.from_pretrained(label_model_dir, dtype=torch.float32)
    builder = PromptBuilder(tok, 128)
    with torch.no_grad():
        after = {a: torch.stack([model.model(torch.tensor([builder.encode(p.query, p.document).input_ids + [a]]))
                                 .last_hidden_state[0, -1] for p in read_jsonl_pairs(pairs_file)]).mean(0)
                 for a in builder.answer_token_ids}
        d = after[builder.answer_token_ids[1]] - after[builder.answer_token_ids[0]]
        model.lm_head.weight[tok.eos_token_id] -= 4.0 * d / d.dot(d)
    model.save_pretrained(stalling)
    tok.save_pretrained(stalling)

    start = _assert_the_term_pulls_back_to_even(stalling, pairs_file, tmp_path, "exact", _exact_label_one)
    assert start < 0.3, start  # the construction: whole answers lean to 0
