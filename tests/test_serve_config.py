"""The service's configuration as the command line shows it (no Ray needed)."""

from __future__ import annotations

import dataclasses

import pytest

from prorank.serve.config import ServeConfig


def test_serve_help_describes_every_field(capsys):
    from prorank.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    for f in dataclasses.fields(ServeConfig):
        described = " ".join(f.metadata["help"].split()).replace("%%", "%")
        assert f"--{f.name}" in out and described in out, f.name
    assert out.count("(default") >= len(dataclasses.fields(ServeConfig))
