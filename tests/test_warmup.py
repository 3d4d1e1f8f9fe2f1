"""Stage-1 GRPO warmup: a real (tiny) TRL run changes the weights and writes a loadable checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prorank.config import ConfigError, load_config
from prorank.train.stage1_warmup import WarmupConfig, grpo_args, main


def _cfg(model_dir, pairs_file, out, recipe=False, **grpo):
    """A tiny run: plain GRPO (TRL's group baseline, no restoring term, shuffled pairs: the cheapest
    path), or with ``recipe`` WarmupConfig's defaults, the adopted recipe (two prompts per step)."""
    plain = {} if recipe else {"baseline": "group", "label_balance": 0.0, "balanced_batches": False}
    return WarmupConfig(
        model=str(model_dir), output_dir=str(out), datasets=[], jsonl=str(pairs_file), max_length=128,
        num_threads=1, **plain,
        grpo={"max_steps": 2, "per_device_train_batch_size": 8 if recipe else 4, "num_generations": 4,
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
        WarmupConfig(balanced_batches=False)  # the default restoring term needs balanced batches
    with pytest.raises(ValueError, match="label_balance"):
        WarmupConfig(label_balance=-1.0)
    with pytest.raises(ValueError, match="reward_weights"):
        WarmupConfig(reward_weights={"graded_correctness": 1.0})  # retired with its teacher
    args = grpo_args(WarmupConfig(output_dir=str(tmp_path), grpo={"learning_rate": "1e-5", "use_cpu": True},
                                  reward_weights={"format": 0.5, "correctness": 2.0}))
    assert args.learning_rate == 1e-5 and args.reward_weights == [0.5, 2.0, 0.0]  # + label_one at 0
    assert args.output_dir == str(tmp_path / "trainer") and args.max_completion_length == 4
    # the defaults are the adopted recipe, and a bare grpo block gives it batches it can balance
    assert args.scale_rewards == "none" and args.shuffle_dataset is False
    assert args.generation_batch_size // args.num_generations == 4


@pytest.mark.parametrize("name", ["warmup.yaml", "warmup-cpu.yaml"])
def test_shipped_configs_load(name):
    """Both run the adopted recipe (WarmupConfig's defaults)."""
    path = Path(__file__).resolve().parents[1] / "configs" / name
    cfg = load_config(WarmupConfig, path)
    args = grpo_args(cfg)
    assert args.generation_batch_size % args.num_generations == 0
    defaults = WarmupConfig()
    for key in ("balanced_batches", "baseline", "label_balance"):
        assert getattr(cfg, key) == getattr(defaults, key), key
    assert args.scale_rewards == "none" and (args.generation_batch_size // args.num_generations) % 2 == 0
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
    from prorank.train.grpo_trainer import end_of_answer_bias

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


def test_a_resumed_run_continues_the_exploration_schedule(label_model_dir, pairs_file, tmp_path):
    """Each trainer checkpoint holds the schedule's state; resuming goes on from it instead of
    starting phase 1 again (here a checkpoint whose schedule had reached phase 2 with bias 7)."""
    from prorank.train.grpo_trainer import EXPLORATION_STATE

    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", max_completion_length=2)
    cfg.answer_first_phase, cfg.end_of_answer_bias = True, 4.0
    main(cfg)
    saved = tmp_path / "run" / "trainer" / "checkpoint-2" / EXPLORATION_STATE
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert json.loads(saved.read_text())["phase"] == records[-1]["phase"] == 1  # two steps: not yet 2 in a row
    saved.write_text(json.dumps({"phase": 2, "bias": 7.0, "streak": 0}))
    cfg.grpo["max_steps"], cfg.resume_from_checkpoint = 3, True
    main(cfg)
    step3 = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()][-1]
    assert step3["step"] == 3
    assert (step3["phase"], step3["generated_tokens"], step3["end_of_answer_bias"]) == (2, 2, 7.0)
    assert json.loads((tmp_path / "run" / "trainer" / "checkpoint-3" / EXPLORATION_STATE).read_text())["phase"] == 2


def test_balanced_batches_and_probe_reach_the_log(label_model_dir, pairs_file, tmp_path, data_dir):
    """Two prompts per step read in order 1, 0, 1, 0; the label_one diagnostic and the held-out
    probe (real scifact pairs, before training and every step) land in log.jsonl."""
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", recipe=True)
    from prorank.train.probe import ProbeConfig

    cfg.probe = ProbeConfig(dataset="scifact", split="test", max_queries=4, max_pairs=6, every=1)
    cfg.data_dir = str(data_dir)
    args = grpo_args(cfg)
    assert args.shuffle_dataset is False and args.generation_batch_size // args.num_generations == 2
    main(cfg)
    before, after = _weights(label_model_dir), _weights(tmp_path / "run" / "model")
    assert max(float((before[k] - after[k]).abs().max()) for k in before) > 0
    labels = [json.loads(line)["label"] for line in (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()]
    assert labels == ["1", "0"] * 4
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert 0.0 <= r["label_one_rate"] <= 1.0 and 0.0 <= r["frac_reward_zero_std"] <= 1.0
        assert 0.0 <= r["probe_auc"] <= 1.0 and 0.0 <= r["probe_label_one"] <= 1.0 and r["probe_score_std"] >= 0.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["order"] == "balanced"


def test_expected_baseline_advantages_are_reward_minus_the_policys_expected_reward(
        label_model_dir, pairs_file, tmp_path, monkeypatch):
    """The adopted recipe (WarmupConfig's defaults) -- each completion's advantage in the first step
    is its reward minus its prompt's expected reward under the untrained policy (answers of up to two
    tokens: a label, then the end of the turn), recomputed here from unpadded forward passes of the
    checkpoint; the run trains and logs the policy's own label-1 probability and the restoring term."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import LABELS, PromptBuilder
    from prorank.train import grpo_trainer

    seen = []

    class Recording(grpo_trainer.WarmupTrainer):  # the real trainer, its first step's advantages kept
        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            seen.append(([dict(r) for r in inputs], output["completion_ids"].tolist(),
                         output["advantages"].tolist()))
            return output

    monkeypatch.setattr(grpo_trainer, "WarmupTrainer", Recording)
    cfg = _cfg(label_model_dir, pairs_file, tmp_path / "run", recipe=True, max_completion_length=2)
    assert (cfg.baseline, cfg.label_balance, cfg.balanced_batches) == ("expected", 1.0, True)
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
    assert all(r["label_balance"] >= 0.0 and 0.0 <= r["answer_label_one"] <= 1.0 for r in records)


def test_balanced_batches_need_an_even_prompt_count_and_no_shuffling(tmp_path):
    with pytest.raises(ValueError, match="make it even"):
        grpo_args(WarmupConfig(output_dir=str(tmp_path), balanced_batches=True,
                               grpo={"per_device_train_batch_size": 12, "num_generations": 4, "use_cpu": True}))
    with pytest.raises(ValueError, match="shuffle_dataset"):
        WarmupConfig(balanced_batches=True, grpo={"shuffle_dataset": True})
    with pytest.raises(ValueError, match="baseline"):
        WarmupConfig(baseline="batch")  # retired
    with pytest.raises(ValueError, match="scale_rewards: none"):
        WarmupConfig(grpo={"scale_rewards": "group"})
    with pytest.raises(ValueError, match="probe.every"):
        WarmupConfig(probe={"every": 0})


def test_doctests_of_pairs_rewards_and_probe():
    import doctest

    from prorank.train import answers, grpo_trainer, pairs, probe, rewards

    for module in (answers, grpo_trainer, pairs, probe, rewards):
        assert doctest.testmod(module).failed == 0, module.__name__


def _assert_the_term_pulls_back_to_even(model_dir, pairs_file, tmp_path, share):
    """Four steps of ``model_dir`` without the term and with ``label_balance: 20`` (balanced batches,
    TRL's group baseline): step 1's logged answer_label_one is ``share`` of that step's two prompts
    before training, and the run with the term ends closer to 1:1 (``share`` over all prompts)
    than the start and than the run without it."""
    from transformers import AutoTokenizer

    from prorank.prompt import PromptBuilder
    from prorank.train.pairs import read_jsonl_pairs

    builder = PromptBuilder(AutoTokenizer.from_pretrained(model_dir), 128)
    ends = {}
    for coef in (0.0, 20.0):
        out = tmp_path / f"run-{coef:g}"
        cfg = _cfg(model_dir, pairs_file, out, per_device_train_batch_size=8, max_steps=4, learning_rate=3e-4)
        cfg.balanced_batches, cfg.label_balance = True, coef
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
    """label_balance: the logged answer_label_one of step 1 is the untrained model's mean
    P(exactly 1) / (P(exactly 0) + P(exactly 1)) over that step's prompts (recomputed from unpadded
    forwards), and for a model whose turn rarely ends after ``1`` (first tokens even, whole answers
    leaning to ``0``) the term brings whole answers closer to 1:1 than no term."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prorank.prompt import PromptBuilder
    from prorank.train.pairs import read_jsonl_pairs

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

    start = _assert_the_term_pulls_back_to_even(stalling, pairs_file, tmp_path, _exact_label_one)
    assert start < 0.3, start  # the construction: whole answers lean to 0
