"""The CLI is a thin layer: help works, `rank` prints JSON for a real (tiny) model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prorank.cli import build_parser, main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("models", "rank"):
        assert command in out


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        assert sp.format_help().strip(), name
        assert sub._choices_actions and any(c.dest == name and c.help for c in sub._choices_actions)


def test_rank_from_files(tmp_path, tiny_model_dir, capsys):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "vaccines and immunity", "title": "Vaccines"}\n"plain string doc"\n{"text": "markets"}\n')
    assert main(["rank", "--model", str(tiny_model_dir), "--query", "vaccines", "--docs", str(jsonl),
                 "--top-k", "2", "--return-documents", "--max-length", "128"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 2 and out[0]["score"] >= out[1]["score"]
    assert {"index", "score", "document"} <= set(out[0])
    txt = tmp_path / "docs.txt"
    txt.write_text("first doc\n\nsecond doc\n")
    assert main(["rank", "--model", str(tiny_model_dir), "--query", "q", "--docs", str(txt),
                 "--max-length", "128"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(r["index"] for r in out) == [0, 1]


def test_rank_bad_jsonl_is_a_clear_error(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{broken\n')
    assert main(["rank", "--model", str(tiny_model_dir), "--query", "q", "--docs", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "prorank.cli", "models", "list"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "smollm2-135m-instruct" in result.stdout
