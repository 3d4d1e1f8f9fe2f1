"""Typed YAML configs: unknown keys raise, overrides apply, types are checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from prorank.config import ConfigError, load_config, option, parse_overrides


@dataclass
class Inner:
    depth: int = 10


@dataclass
class Cfg:
    model: str
    lr: float = 1e-4
    steps: int = 10
    use_lora: bool = False
    loss: Literal["bce", "listwise"] = "bce"
    datasets: list[str] = field(default_factory=list)
    note: Optional[str] = None
    grpo: dict = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nlr: 1e-5\ngrpo:\n  beta: 0.0\ninner:\n  depth: 3\n")
    cfg = load_config(Cfg, path, ["--steps", "5", "grpo.beta=0.04", "--use-lora", "--datasets", "[a, b]"])
    assert cfg.model == "m" and cfg.lr == 1e-5 and cfg.steps == 5 and cfg.use_lora is True
    assert cfg.grpo == {"beta": 0.04} and cfg.datasets == ["a", "b"] and cfg.inner.depth == 3


def test_a_nested_block_changes_only_the_keys_it_names():
    from prorank.config import from_dict
    from prorank.train.heldout import HeldoutConfig

    cfg = from_dict(HeldoutConfig, {"models": ["m"], "reranker": {"max_length": 128}})
    assert cfg.reranker.max_length == 128 and cfg.reranker.batch_size == 8  # the field's default stays
    assert from_dict(HeldoutConfig, {"models": ["m"], "reranker": {"batch_size": 2}}).reranker.max_length == 512
    assert from_dict(Cfg, {"model": "m", "inner": {}}).inner.depth == 10


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nlearning_rat: 1\n")
    with pytest.raises(ConfigError, match=r"learning_rat.*|c\.yaml"):
        load_config(Cfg, path)
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(Cfg, None, {"model": "m", "inner.bogus": 1})


@pytest.mark.parametrize(
    "data, match",
    [
        ({"model": "m", "steps": "many"}, "steps"),
        ({"model": "m", "loss": "hinge"}, "loss"),
        ({"model": "m", "use_lora": "yes"}, "use_lora"),
        ({"model": "m", "grpo": 3}, "grpo"),
        ({}, "missing"),
    ],
)
def test_bad_values(data, match):
    with pytest.raises(ConfigError, match=match):
        load_config(Cfg, None, data)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Cfg, bad)


def test_parse_overrides_forms():
    assert parse_overrides(["a=1", "--b", "x", "--flag", "--c.d=[1,2]"]) == {
        "a": 1, "b": "x", "flag": True, "c.d": [1, 2]}
    with pytest.raises(ConfigError):
        parse_overrides(["loose"])


@dataclass
class Documented:
    # a comment is not help: only the declaration's is shown
    dataset: str = option("scifact", "BEIR folder or name")
    window: list = option([0, 50], "BM25 ranks [start, end)")
    loss: str = "listwise"  # no help here
    seed: int = field(default=0, metadata={"help": "random seed"})


def test_describe_fields_reads_the_declarations_help():
    from prorank.config import describe_fields

    assert describe_fields(Documented) == [
        ("dataset", "scifact", "BEIR folder or name"),
        ("window", "[0, 50]", "BM25 ranks [start, end)"),
        ("loss", "listwise", ""),
        ("seed", "0", "random seed"),
    ]
    a, b = Documented(), Documented()
    a.window.append(99)
    assert b.window == [0, 50]  # a list default is copied for each instance
    with pytest.raises(ValueError, match="help"):
        option(1, " ")


@pytest.mark.parametrize("stage", ["score", "warmup", "pipeline", "heldout"])
def test_train_help_lists_every_config_key_with_its_default(stage, capsys):
    import dataclasses
    import importlib

    from prorank.cli import main
    from prorank.cli.train import COMMANDS

    module, cls_name, _, example = COMMANDS[stage]
    cls = getattr(importlib.import_module(module), cls_name)
    with pytest.raises(SystemExit):
        main(["train", stage, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        assert f"\n  {f.name} = " in text, f.name
    if stage == "score":
        assert "  max_steps = 100\n      optimizer steps" in text
    assert f"e.g. {example}" in " ".join(text.split())  # the epilog's example is this command's (wrapped)


@pytest.mark.parametrize("stage", ["score", "warmup", "pipeline", "heldout"])
def test_train_epilog_example_is_accepted_by_its_command(stage):
    """Each `prorank train STAGE` epilog suggests overrides its own config takes."""
    import importlib
    import shlex

    from prorank.cli.train import COMMANDS

    module, cls_name, _, example = COMMANDS[stage]
    cls = getattr(importlib.import_module(module), cls_name)
    required = {"models": ["m"]} if stage == "heldout" else {}
    assert load_config(cls, None, {**required, **parse_overrides(shlex.split(example))})


@dataclass
class ScriptDemo:
    top_k: int = option(10, "candidates per query")
    name: str = option("x", "a name")


def test_script_configs_explain_themselves(capsys):
    """Benchmark scripts read their config with ``config_from_argv``; ``--help`` lists the keys."""
    from prorank.config import config_from_argv

    Demo = ScriptDemo
    with pytest.raises(SystemExit) as stop:
        config_from_argv(Demo, ["--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "top_k = 10" in out and "candidates per query" in out
    assert config_from_argv(Demo, ["--top_k", "3"]).top_k == 3
