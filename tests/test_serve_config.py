"""The service's configuration: the YAML files, the command line and the checks before starting
(no Ray needed; the running service is tested under ``tests/service/``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from prorank.config import ConfigError
from prorank.registry import DEFAULT_MODEL
from prorank.serve.config import ServeConfig, config_from_args, load_serve_config

REPO = Path(__file__).resolve().parents[1]


def test_config_files_work_for_both_launchers():
    from ray.serve.schema import ServeDeploySchema

    from prorank.serve.app import app_builder

    for name in ("serve.yaml", "serve-gpu.yaml"):
        path = REPO / "configs" / name
        ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))  # valid for `serve deploy`
        cfg = load_serve_config(path, ["--port", "9001", "max_batch_size=32", "--index", "/x"])
        assert (cfg.host, cfg.port, cfg.max_batch_size, cfg.index) == ("127.0.0.1", 9001, 32, "/x")
        assert cfg.model == DEFAULT_MODEL == "prorank-smollm2-135m"
        args = yaml.safe_load(path.read_text())["applications"][0]["args"]
        assert config_from_args(args) == load_serve_config(path)
        assert app_builder({"config": str(path)}) is not None


def test_default_config_file_equals_the_built_in_defaults():
    # `prorank serve` and `prorank serve --config configs/serve.yaml` run the same service
    assert load_serve_config(REPO / "configs" / "serve.yaml") == ServeConfig()


def test_cli_builds_the_config_from_yaml_and_overrides():
    from prorank.cli import build_parser
    from prorank.cli.serve import config_from_namespace

    args = build_parser().parse_args([
        "serve", "--config", str(REPO / "configs" / "serve.yaml"), "--port", "9005", "--max-length", "64",
        "--normalize", "sigmoid", "--index", "/x", "max_batch_size=8", "autoscaling.max_replicas=3",
    ])
    cfg = config_from_namespace(args)
    assert (cfg.port, cfg.reranker.max_length, cfg.reranker.normalize, cfg.index, cfg.max_batch_size) == (
        9005, 64, "sigmoid", "/x", 8)
    assert cfg.autoscaling == {"max_replicas": 3} and cfg.host == "127.0.0.1"


@pytest.mark.parametrize("argv, compile_, batch", [
    (["--compile", "max_batch_size=8"], True, 8),  # a bare flag does not swallow the override
    (["--compile", "false", "max_batch_size=8"], False, 8),
    (["--compile=false"], False, None),
])
def test_a_bare_boolean_flag_leaves_the_next_override_alone(argv, compile_, batch):
    from prorank.cli import parse_args
    from prorank.cli.serve import config_from_namespace

    cfg = config_from_namespace(parse_args(["serve", "--index", "/x", *argv]))
    assert cfg.reranker.compile is compile_
    assert cfg.max_batch_size == (batch or ServeConfig().max_batch_size)


def test_missing_model_or_index_fails_before_starting(tmp_path):
    from prorank.serve.app import check_paths

    with pytest.raises(ConfigError, match="model"):
        check_paths(ServeConfig(model=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="not a Lucene index"):
        check_paths(ServeConfig(index=str(tmp_path)))


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="max_batchsize"):
        load_serve_config(None, ["max_batchsize=3"])
    with pytest.raises(ConfigError, match="port"):
        ServeConfig(port=0)
    for field in ("batch_size", "streams"):
        with pytest.raises(ConfigError, match=field):
            ServeConfig(reranker={field: 0})
        with pytest.raises(ConfigError, match=f"did you mean reranker.{field}"):
            load_serve_config(None, [f"{field}=2"])  # the reranker's settings live in its block
    assert load_serve_config(None, ["reranker.batch_size=2"]).reranker.batch_size == 2
    with pytest.raises(ConfigError, match="fusion"):
        load_serve_config(None, ["reranker.fusion_weight=1.5", "reranker.fusion=interpolate"])
    # no batch_size: a request is cut into whole dynamic batches, the model splits them
    assert (ServeConfig().chunk_size, ServeConfig(reranker={"batch_size": 4}).chunk_size) == (32, 4)
    with pytest.raises(ConfigError, match="NO_SUCH_VAR_FOR_PRORANK"):
        ServeConfig(api_key_env="NO_SUCH_VAR_FOR_PRORANK").api_key()
    flat = tmp_path / "flat.yaml"
    flat.write_text(json.dumps({"model": "m", "port": 9002}))
    assert load_serve_config(flat).port == 9002


def test_serve_help_describes_every_field(capsys):
    from prorank.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    from prorank.options import RerankerOptions

    fields = [f for f in dataclasses.fields(ServeConfig) if f.name != "reranker"]
    for f in fields:
        described = " ".join(f.metadata["help"].split()).replace("%%", "%")
        assert f"--{f.name}" in out and described in out, f.name
    assert out.count("(default") >= len(fields)
    for f in dataclasses.fields(RerankerOptions):  # the reranker block: one flag per field
        described = " ".join(f.metadata["help"].split())
        assert f"--{f.name.replace('_', '-')}" in out and described in out, f.name


def test_ray_ports_stay_on_loopback_unless_every_interface_is_asked_for():
    from prorank.serve.loopback import loopback_node

    assert loopback_node(ServeConfig())
    assert loopback_node(ServeConfig(host="localhost"))
    assert not loopback_node(ServeConfig(host="0.0.0.0"))
    assert not loopback_node(ServeConfig(host="::"))
    assert not loopback_node(ServeConfig(ray_address="auto"))  # an existing cluster binds as it was started
