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


def test_every_flag_of_every_command_has_its_own_help():
    """Every flag of every `prorank ...` command (the whole argparse tree) has non-empty help that is
    its own: no two flags of one command share a text (a neighbour's comment, a copied line)."""
    import argparse

    from prorank.cli import _parsers

    for node in _parsers(build_parser()):
        seen: dict[str, str] = {}
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(choice.help for choice in action._choices_actions), node.prog
                continue
            name = f"{node.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help != argparse.SUPPRESS and action.help.strip(), name
            assert action.help not in seen, f"{name} has the help of {seen.get(action.help)}"
            seen[action.help] = name


def test_every_config_key_the_cli_lists_has_its_own_help():
    """`prorank train STAGE --help` lists its config's keys; each of them, and each key of the blocks
    nested in them (sources, probe, reranker options), has help from its declaration, distinct
    from every other key's of its class."""
    import dataclasses
    import importlib
    import typing

    from prorank.cli.train import COMMANDS
    from prorank.evaluation.job import EvalConfig

    todo = [getattr(importlib.import_module(module), cls) for module, cls, *_ in COMMANDS.values()] + [EvalConfig]
    done: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in done:
            continue
        done.add(cls)
        texts = [f.metadata.get("help", "") for f in dataclasses.fields(cls)]
        assert all(t.strip() for t in texts), [f.name for f, t in zip(dataclasses.fields(cls), texts) if not t]
        assert len(set(texts)) == len(texts), cls.__name__
        for hint in typing.get_type_hints(cls).values():
            todo += [t for t in (hint, *typing.get_args(hint), *sum(map(typing.get_args, typing.get_args(hint)), ()))
                     if dataclasses.is_dataclass(t)]
    assert {"DataSource", "ProbeConfig", "RerankerOptions"} <= {c.__name__ for c in done}


def test_eval_model_defaults_to_the_shipped_model_in_the_config_and_the_cli():
    from prorank.cli import parse_args
    from prorank.config import flag_values
    from prorank.evaluation.job import EvalConfig
    from prorank.registry import DEFAULT_MODEL

    assert EvalConfig(datasets=["adi"]).model == DEFAULT_MODEL
    args = parse_args(["eval", "--dataset", "adi"])
    assert "model" not in flag_values(args, "eval.")  # unset: EvalConfig's default applies
    assert flag_values(parse_args(["eval", "--dataset", "adi", "--model", "none"]), "eval.")["model"] == "none"


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
