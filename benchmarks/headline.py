"""The shipped model's numbers on the front page and the model card, rendered from committed JSON.

README.md and docs/model-card.md quote the shipped model's results only inside generated blocks,
``<!-- generated:NAME -->`` ... ``<!-- /generated:NAME -->``. This script renders every block from
the result files named below; ``tests/test_readme.py`` fails when a page and the files disagree.

    python benchmarks/headline.py            # print the blocks
    python benchmarks/headline.py --write    # rewrite them in the pages
    python benchmarks/headline.py --check    # exit 1 when a page differs

To show another model: re-run ``benchmarks/quality.py`` for it (same collections) and the README's
quick-start command with ``--summary benchmarks/results/quickstart-scifact.json``, point
``QUALITY`` / ``QUICKSTART`` / ``ROWS`` below at the new files if their names changed, then
``--write``. Every file must describe the same model (its fingerprint), else this script refuses.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path("benchmarks/results")  # relative to the repository, as the pages link it
# benchmarks/quality.py results, in table order: (label, file); the first is the headline collection
QUALITY = [
    ("SciFact test", "quality-scifact.json"),
    ("NFCorpus dev", "quality-nfcorpus.json"),
    ("med test", "quality-med.json"),
    ("cacm test", "quality-cacm.json"),
    ("cranfield test", "quality-cranfield.json"),
]
# the `system` of each row in those files
ROWS = {"bm25": "BM25", "zero_shot": "zero-shot base", "teacher": "teacher hybrid",
        "model": "shipped model", "fused": "shipped model fused"}
QUICKSTART = "quickstart-scifact.json"  # `prorank eval` summary of the README's quick-start command
PAGES = {"README.md": ("summary", "quickstart", "headline"), "docs/model-card.md": ("card-scifact", "card-all")}


def _load(name: str) -> dict[str, Any]:
    return json.loads((REPO / RESULTS / name).read_text(encoding="utf-8"))


def _rows(name: str) -> dict[str, dict[str, Any]]:
    return {r["system"]: r for r in _load(name)["rows"]}


def _f(x: float) -> str:
    return f"{x:.4f}"


def _p(row: dict[str, Any]) -> str:
    return f"{row['p_vs_bm25']:g}" if "p_vs_bm25" in row else "—"


def _link(name: str) -> str:
    return f"[`{name}`]({(RESULTS / name).as_posix()})"


def model_of(quality: list[tuple[str, str]] = QUALITY) -> tuple[str, str]:
    """(name, fingerprint) of the model every quality file measured; refuses a mix of models."""
    seen = {(r["model"], r["fingerprint"]) for _, f in quality for r in [_rows(f)[ROWS["model"]]]}
    if len(seen) != 1:
        raise ValueError(f"the quality files measured different models: {sorted(seen)}")
    return seen.pop()


def _queries(record: dict[str, Any]) -> str:
    return f"all {record['queries']}" if record["config"].get("max_queries") is None else f"the first {record['queries']}"


def summary() -> str:
    label, name = QUALITY[0]
    record, rows = _load(name), _rows(name)
    return (f"On {_queries(record)} {label} queries it reranks BM25's top {record['top_k']} to nDCG@10 "
            f"**{_f(rows[ROWS['model']]['metrics']['nDCG@10'])}** on its own and "
            f"**{_f(rows[ROWS['fused']]['metrics']['nDCG@10'])}** fused with BM25's scores "
            f"(BM25 {_f(rows[ROWS['bm25']]['metrics']['nDCG@10'])}; the teacher it distils "
            f"{_f(rows[ROWS['teacher']]['metrics']['nDCG@10'])}).")


def quickstart() -> str:
    record = _load(QUICKSTART)
    model, fingerprint = model_of()
    if record["model"]["fingerprint"] != fingerprint:
        raise ValueError(f"{QUICKSTART} was measured with model fingerprint {record['model']['fingerprint']}, the "
                         f"quality files with {fingerprint} ({model}): re-run the quick-start command with "
                         f"--summary {(RESULTS / QUICKSTART).as_posix()}")
    (dataset, result), = record["datasets"].items()
    m = {k: _f(result["metrics"][k]["nDCG@10"]) for k in ("bm25", "reranker", "fused")}
    return (f"Expected nDCG@10 on these {result['queries']} queries ({_link(QUICKSTART)}): BM25 {m['bm25']}, "
            f"`{record['model']['name']}` {m['reranker']}, fused with BM25 **{m['fused']}**.")


def headline() -> str:
    model, _ = model_of()
    protocol = {(_load(f)["top_k"], _load(f)["max_length"]) for _, f in QUALITY}
    if len(protocol) != 1:
        raise ValueError(f"the quality files used different depths / prompt lengths: {sorted(protocol)}")
    (top_k, max_length), = protocol
    lines = [f"nDCG@10 of BM25's top {top_k} reranked, every judged query of each collection, prompts of "
             f"{max_length} tokens; in parentheses the p-value of a two-sided paired randomization test against BM25.",
             "",
             f"| collection | queries | BM25 | teacher (p) | `{model}` alone (p) | fused with BM25 (p) | result file |",
             "|---|---|---|---|---|---|---|"]
    for label, name in QUALITY:
        record, rows = _load(name), _rows(name)
        if record["config"].get("max_queries") is not None:
            raise ValueError(f"{name}: measured on the first {record['queries']} queries, not all")
        cells = [f"{_f(rows[ROWS[k]]['metrics']['nDCG@10'])}" + (f" ({_p(rows[ROWS[k]])})" if k != "bm25" else "")
                 for k in ("bm25", "teacher", "model", "fused")]
        lines.append(f"| {label} | {record['queries']} | " + " | ".join(cells) + f" | {_link(name)} |")
    above = {k: sum(_rows(f)[ROWS[k]]["metrics"]["nDCG@10"] > _rows(f)[ROWS["bm25"]]["metrics"]["nDCG@10"]
                    for _, f in QUALITY) for k in ("fused", "model")}
    lines += ["", f"Above BM25: fused with BM25 on {above['fused']} of {len(QUALITY)} collections, "
                  f"alone on {above['model']} of {len(QUALITY)}."]
    return "\n".join(lines)


def card_scifact() -> str:
    label, name = QUALITY[0]
    rows = _rows(name)
    model, _ = model_of()
    names = {"bm25": "BM25", "teacher": f"teacher (MiniLM cosine + BM25, weight {rows[ROWS['teacher']].get('bm25_weight')})",
             "model": f"`{model}` alone", "fused": f"`{model}` fused with BM25",
             "zero_shot": "zero-shot base (SmolLM2-135M-Instruct)"}
    lines = ["| system | nDCG@10 | MRR@10 | Recall@100 | MAP | p vs BM25 |", "|---|---|---|---|---|---|"]
    for key in ("bm25", "teacher", "model", "fused", "zero_shot"):
        row = rows.get(ROWS[key])
        if row is None:
            continue
        m = row["metrics"]
        lines.append(f"| {names[key]} | " + " | ".join(_f(m[k]) for k in ("nDCG@10", "MRR@10", "Recall@100", "MAP"))
                     + f" | {_p(row)} |")
    return "\n".join(lines)


def card_all() -> str:
    lines = ["| collection | queries | metric | BM25 | teacher | alone | fused with BM25 |", "|---|---|---|---|---|---|---|"]
    for label, name in QUALITY:
        record, rows = _load(name), _rows(name)
        for metric in ("nDCG@10", "MRR@10", "MAP"):
            cells = [_f(rows[ROWS[k]]["metrics"][metric]) for k in ("bm25", "teacher", "model", "fused")]
            lines.append(f"| {label} | {record['queries']} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BLOCKS = {"summary": summary, "quickstart": quickstart, "headline": headline,
          "card-scifact": card_scifact, "card-all": card_all}


def block_pattern(name: str) -> re.Pattern[str]:
    """``<!-- generated:NAME -->`` + body + ``<!-- /generated:NAME -->``: on lines of their own
    around a block (a table), or inline around a sentence."""
    return re.compile(rf"<!-- generated:{re.escape(name)} -->(\n?)(.*?)<!-- /generated:{re.escape(name)} -->", re.S)


def page_blocks(text: str, name: str) -> list[str]:
    """The bodies of the page's NAME blocks, as rendered (without the newlines around a block)."""
    return [m.group(2)[:-1] if m.group(1) and m.group(2).endswith("\n") else m.group(2)
            for m in block_pattern(name).finditer(text)]


def rewrite(text: str, name: str, body: str) -> str:
    pattern = block_pattern(name)
    if not pattern.search(text):
        raise ValueError(f"no <!-- generated:{name} --> block")
    return pattern.sub(lambda m: f"<!-- generated:{name} -->{m.group(1)}{body}{m.group(1)}<!-- /generated:{name} -->", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the blocks in the pages")
    parser.add_argument("--check", action="store_true", help="exit 1 when a page differs from the files")
    args = parser.parse_args(argv)
    stale = []
    for page, names in PAGES.items():
        path = REPO / page
        text = new = path.read_text(encoding="utf-8")
        for name in names:
            body = BLOCKS[name]()
            if not (args.write or args.check):
                print(f"<!-- {page}: {name} -->\n{body}\n")
            new = rewrite(new, name, body)
        if new != text:
            stale.append(page)
            if args.write:
                path.write_text(new, encoding="utf-8")
    if stale:
        print(("rewrote: " if args.write else "differs from the result files: ") + ", ".join(stale), file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
