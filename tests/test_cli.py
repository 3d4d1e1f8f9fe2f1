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


def test_rank_batch_mode_reranks_a_trec_run(tmp_path, tiny_model_dir, data_dir, capsys):
    """A first-stage TREC run in, the reranked TREC run out (the top-k reordered by the model)."""
    from prorank import Reranker
    from prorank.cli import main as cli
    from prorank.data import load_corpus, load_queries
    from prorank.evaluation.trec import read_run, write_run

    corpus = load_corpus(data_dir / "adi" / "corpus.jsonl")
    ids = sorted(corpus)[:6]
    first = {"1": [(d, 10.0 - i) for i, d in enumerate(ids)], "2": [(d, 5.0 - i) for i, d in enumerate(ids[:4])]}
    write_run(tmp_path / "bm25.trec", first, tag="bm25")
    out = tmp_path / "reranked.trec"
    assert cli(["rank", "--model", str(tiny_model_dir), "--run", str(tmp_path / "bm25.trec"), "--dataset",
                str(data_dir / "adi"), "--output", str(out), "--top-k", "3", "--max-length", "128",
                "--cache", "none"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["queries"] == 2 and summary["scored"] == 6
    reranked = read_run(out)
    r = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128)
    queries = load_queries(data_dir / "adi" / "queries.jsonl")
    for qid, hits in first.items():
        head = [d for d, _ in hits[:3]]
        scores = r.score(queries[qid], [corpus[d] for d in head])
        got = sorted(reranked[qid], key=lambda d: -reranked[qid][d])
        assert got[:3] == [head[i] for i in sorted(range(3), key=lambda i: (-scores[i], i))]
        assert got[3:] == [d for d, _ in hits[3:]]  # the rest keeps the first stage's order
    # bad input fails before any model is loaded
    assert cli(["rank", "--run", str(tmp_path / "bm25.trec"), "--dataset", str(data_dir / "adi")]) == 2
    assert cli(["rank", "--query", "q", "--docs", str(tmp_path / "bm25.trec"), "--top-k", "0"]) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli(["rank", "--query", "q", "--docs", str(empty)]) == 2


def test_every_command_takes_debug(tmp_path, capsys):
    """``--debug`` on every command: a traceback instead of the one-line error."""
    import argparse

    from prorank.cli import build_parser, main as cli_main

    def leaves(parser):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield parser
        for action in subs:
            for child in action.choices.values():
                yield from leaves(child)

    for leaf in leaves(build_parser()):
        assert "--debug" in leaf._option_string_actions, leaf.prog
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli_main(["rank", "--query", "q", "--docs", str(empty)]) == 2
    assert "no documents to rank" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no documents to rank"):
        cli_main(["rank", "--query", "q", "--docs", str(empty), "--debug"])
