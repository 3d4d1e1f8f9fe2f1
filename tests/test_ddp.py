"""Both training stages on two processes under the real ``accelerate launch`` (CPU, gloo).

Stage 2: two processes with B groups each follow the loss curve and reach the weights of one
process with 2B groups (same seed, same data order); the main process alone builds the data,
evaluates on the dev set and writes the files; a run stopped mid-way resumes to the weights of an
uninterrupted one. Stage 1 (TRL GRPO): two processes train, write their outputs once and resume
from a TRL checkpoint (GRPO samples completions, so no equality with one process is asserted).
The launch helpers are the DDP benchmark's (``benchmarks/ddp.py``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from ddp import compare, launch, losses, max_weight_difference  # noqa: E402

pytestmark = pytest.mark.slow
TIMEOUT = 600  # seconds per launch; a guard against a hung process group, not a speed check


def _score_cli(config: Path, *overrides: str) -> list[str]:
    return ["-m", "prorank.cli", "train", "score", "--config", str(config), *overrides]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _score_settings(model_dir: Path, data_dir: Path, out: Path, groups_per_batch: int) -> dict:
    return {"model": str(model_dir), "output_dir": str(out), "data_dir": str(data_dir),
            "datasets": [{"dataset": "scifact", "max_queries": 8}],  # BM25 negatives; 4 groups a step
            "dev": [{"dataset": "scifact", "split": "train", "max_queries": 2}], "dev_top_k": 4,
            "max_steps": 4, "eval_every": 2, "save_every": 2, "groups_per_batch": groups_per_batch,
            "gradient_accumulation_steps": 2, "learning_rate": 1e-3, "warmup_ratio": 0.1,
            "max_length": 160, "num_threads": 1, "cpu": True}


def _write_yaml(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_model_dir, data_dir):
    """Stage 2 through the CLI on two processes, one group per process and micro-batch."""
    work = tmp_path_factory.mktemp("ddp-score")
    config = _write_yaml(work / "two.yaml", _score_settings(tiny_model_dir, data_dir, work / "two", 1))
    done = launch(_score_cli(config), 2, timeout=TIMEOUT)
    return work / "two", done


def test_score_on_two_processes_equals_one_process_with_twice_the_batch(two_process_run, tiny_model_dir,
                                                                         data_dir, tmp_path):
    from prorank.config import load_config
    from prorank.train.stage2_score import ScoreConfig, main

    two, done = two_process_run
    main(load_config(ScoreConfig, None, _score_settings(tiny_model_dir, data_dir, tmp_path / "one", 2)))
    one = tmp_path / "one"

    # the same data, built by one process of each run
    for name in ("groups.jsonl", "dev.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    # the same run: per-step loss (mean over all 2B groups), learning rate, final weights
    diff = compare(one, two)
    assert diff["steps"] == 4
    assert diff["max_loss_difference"] < 1e-5, diff
    assert diff["max_weight_difference"] < 2e-4, diff  # lr 1e-3, 4 Adam steps: rounding only
    train_one = [r for r in _records(one) if "loss" in r]
    train_two = [r for r in _records(two) if "loss" in r]
    assert [r["learning_rate"] for r in train_two] == pytest.approx([r["learning_rate"] for r in train_one], abs=1e-12)
    assert train_two[-1]["groups_seen"] == train_one[-1]["groups_seen"] == 4 * 2 * 2

    # written once, by the main process: one record per step and per evaluation, one summary
    records = _records(two)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    dev_two = [(r["step"], r["dev_ndcg@10"]) for r in records if "dev_ndcg@10" in r]
    dev_one = [(r["step"], r["dev_ndcg@10"]) for r in _records(one) if "dev_ndcg@10" in r]
    assert [s for s, _ in dev_two] == [0, 2, 4] and len([r for r in records if "dev_bm25_ndcg@10" in r]) == 1
    assert [v for _, v in dev_two] == pytest.approx([v for _, v in dev_one], abs=1e-6)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert [h["step"] for h in summary["dev_history"]] == [0, 2, 4]
    assert done.stdout.count('"processes": 2') == 1, done.stdout  # the CLI prints the summary once
    state = two / "state"
    assert json.loads((state / "trainer.json").read_text())["step"] == 4
    assert sorted(p.name for p in state.glob("random_states_*.pkl")) == ["random_states_0.pkl", "random_states_1.pkl"]
    assert json.loads((two / "model" / "prorank.json").read_text())["train"]["step"] == summary["best_step"]


def test_score_on_two_processes_resumes_after_an_interruption(two_process_run, tiny_model_dir, data_dir, tmp_path):
    two, _ = two_process_run
    run = tmp_path / "resumed"
    config = _write_yaml(tmp_path / "resumed.yaml", _score_settings(tiny_model_dir, data_dir, run, 1))
    stop = tmp_path / "stop_at.py"  # ScoreConfig's main(cfg, stop_at=...): returns as an interruption would
    stop.write_text("import sys\nfrom prorank.config import load_config\nfrom prorank.train.stage2_score import ScoreConfig, main\n"
                    "main(load_config(ScoreConfig, sys.argv[1]), stop_at=int(sys.argv[2]))\n")
    launch([str(stop), str(config), "2"], 2, timeout=TIMEOUT)
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 2
    assert not (run / "summary.json").exists()
    assert max(losses(run)) == 2

    launch(_score_cli(config), 2, timeout=TIMEOUT)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4 and summary["processes"] == 2
    assert max_weight_difference(run, two) <= 1e-6
    assert compare(run, two)["max_loss_difference"] <= 1e-6
    assert [r["step"] for r in _records(run) if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in _records(run) if "dev_ndcg@10" in r] == [0, 2, 4]


def test_warmup_on_two_processes_writes_once_and_resumes(label_model_dir, pairs_file, tmp_path):
    from safetensors.torch import load_file

    from prorank.reranker import Reranker

    out = tmp_path / "warmup"
    config = _write_yaml(tmp_path / "warmup.yaml", {
        "model": str(label_model_dir), "output_dir": str(out), "datasets": [], "jsonl": str(pairs_file),
        "max_length": 128, "num_threads": 1,
        # per process: 4 completions = 1 prompt x 4 generations; each step samples 2 prompts in all,
        # one of each label (the adopted recipe, WarmupConfig's defaults: balanced batches, expected
        # baseline, restoring term)
        "grpo": {"max_steps": 2, "per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 1,
                 "learning_rate": 1e-3, "activation_checkpointing": False, "save_steps": 1, "use_cpu": True}})
    done = launch(["-m", "prorank.cli", "train", "warmup", "--config", str(config)], 2, timeout=TIMEOUT)

    assert done.stdout.count('"global_step"') == 1, done.stdout  # one summary printed
    ckpt = out / "trainer" / "checkpoint-2"
    assert sorted(p.name for p in ckpt.glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert [r["step"] for r in _records(out)] == [1, 2]
    assert all({"policy_label_one", "label_balance"} <= set(r) for r in _records(out))  # the recipe ran
    assert len((out / "pairs.jsonl").read_text().splitlines()) == 8
    assert json.loads((out / "data.json").read_text())["pairs"] == 8
    assert json.loads((out / "summary.json").read_text())["train"]["global_step"] == 2
    before, after = load_file(str(label_model_dir / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert max(float((before[k] - after[k]).abs().max()) for k in before) > 0
    assert Reranker.from_pretrained(out / "model", device="cpu", max_length=128).metadata["stage"] == "warmup"

    done = launch(["-m", "prorank.cli", "train", "warmup", "--config", str(config), "--grpo.max_steps", "3",
                   "--resume_from_checkpoint", "true"], 2, timeout=TIMEOUT)
    printed = json.loads(re.search(r"^\{$.*^\}$", done.stdout, re.M | re.S).group(0))  # the CLI's summary
    assert printed["resumed_from"].endswith("checkpoint-2") and printed["global_step"] == 3
    assert [r["step"] for r in _records(out)] == [1, 2, 3]
    assert json.loads((out / "summary.json").read_text())["train"]["global_step"] == 3
    assert sorted(p.name for p in (out / "trainer").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
