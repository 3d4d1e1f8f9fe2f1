"""The README and docs/: every Python block runs as written (with the real shipped reranker), every
number of the front page's results is the one in its committed JSON file, the quick start is the
command its expected numbers come from, and every relative link resolves."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
RESULTS = REPO / "benchmarks" / "results"
ARCHIVE = REPO / "benchmarks" / "archive"
QUICK_START = ('python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt torch && '
               'pip install -c constraints.txt -e ".[all,test]" && PRORANK_DATA_DIR=../shared/data '
               'prorank eval --dataset scifact --max-queries 50 --top-k 20')
TEST_COMMAND = ".venv/bin/python -m pytest -q"
# pages other sessions write; the front page and docs link them already
HANDED_IN = ("docs/docker.md", "docs/calibration.md")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def headline():
    """benchmarks/headline.py, loaded from its file (benchmarks/ is no package and not on sys.path)."""
    spec = importlib.util.spec_from_file_location("prorank_headline", REPO / "benchmarks" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md")), REPO / "benchmarks" / "README.md", ARCHIVE / "README.md",
            REPO / "prorank" / "weights" / "README.md"]


def python_blocks() -> list[tuple[str, str]]:
    return [(f"{page.relative_to(REPO)}#{i}", code) for page in [README, *sorted(DOCS.rglob("*.md"))]
            for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S))]


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## `` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def without_generated(text: str) -> str:
    return re.sub(r"<!-- generated:([\w-]+) -->.*?<!-- /generated:\1 -->", "", text, flags=re.S)


def rounded(x: float) -> str:
    return f"{x:.4f}"


# ------------------------------------------------------------------------------------ Python blocks


def test_the_readme_has_a_python_example() -> None:
    blocks = dict(python_blocks())
    assert any("Reranker.from_pretrained" in code for name, code in blocks.items() if name.startswith("README.md"))
    assert any("from_pretrained(" in code and "fusion_weight=None" in code for code in blocks.values())  # every option


@pytest.mark.slow
@pytest.mark.parametrize("name, code", python_blocks(), ids=[name for name, _ in python_blocks()])
def test_python_block_runs(name, code, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    if "langchain_cohere" in code or "import cohere" in code:
        pytest.skip("needs a running service and langchain-cohere (covered by tests/service with cohere)")
    exec(compile(code, name, "exec"), {"__name__": "__readme__"})


# ---------------------------------------------------------------------------- the front page's numbers


def test_every_generated_block_is_what_the_result_files_give() -> None:
    """README.md and docs/model-card.md quote the shipped model only through generated blocks; each
    must equal what benchmarks/headline.py renders from the committed JSON files."""
    h = headline()
    for page, names in h.PAGES.items():
        text = (REPO / page).read_text(encoding="utf-8")
        for name in names:
            assert h.page_blocks(text, name) == [h.BLOCKS[name]()], (
                f"{page}: block {name!r} differs from the result files; run `python benchmarks/headline.py --write`")


def test_headline_table_cells_equal_their_json_rows() -> None:
    """Read back cell by cell, independently of the renderer: each row names its JSON file, each column
    a row of it (value rounded to 4 decimals, p-value as stored)."""
    h = headline()
    table_text = h.page_blocks(README.read_text(encoding="utf-8"), "headline")[0]
    table = [line for line in table_text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[2:6] == ["BM25", "teacher (p)", f"`{h.model_of()[0]}` alone (p)", "fused with BM25 (p)"]
    systems = ["BM25", "teacher hybrid", "shipped model", "shipped model fused"]
    files = []
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue
        file = re.fullmatch(r"\[`([\w.-]+)`\]\(benchmarks/results/\1\)", cells[6]).group(1)
        files.append(file)
        record = json.loads((RESULTS / file).read_text(encoding="utf-8"))
        rows = {r["system"]: r for r in record["rows"]}
        assert int(cells[1]) == record["queries"] and record["config"]["max_queries"] is None, file
        assert record["top_k"] == 20 and record["max_length"] == 256, file  # the caption's protocol
        for cell, system in zip(cells[2:6], systems):
            value, p = re.fullmatch(r"(\d\.\d{4})(?: \(([\d.]+)\))?", cell).groups()
            assert value == rounded(rows[system]["metrics"]["nDCG@10"]), (file, system, cell)
            assert (p is None) == (system == "BM25"), (file, system, cell)
            if p is not None:
                assert float(p) == rows[system]["p_vs_bm25"], (file, system, cell)
    assert files and len(files) == len(set(files)) and files[0] == "quality-scifact.json"
    above = {s: 0 for s in systems[2:]}
    for file in files:
        rows = {r["system"]: r["metrics"]["nDCG@10"] for r in json.loads((RESULTS / file).read_text())["rows"]}
        for s in above:
            above[s] += rows[s] > rows["BM25"]
    assert (f"Above BM25: fused with BM25 on {above['shipped model fused']} of {len(files)} collections, "
            f"alone on {above['shipped model']} of {len(files)}.") in table_text
    caption = h.page_blocks(README.read_text(encoding="utf-8"), "headline")[0].splitlines()[0]
    assert "top 20" in caption and "256 tokens" in caption


def test_opening_and_quick_start_numbers_equal_their_json() -> None:
    h = headline()
    text = README.read_text(encoding="utf-8")
    scifact = {r["system"]: r["metrics"]["nDCG@10"] for r in
               json.loads((RESULTS / "quality-scifact.json").read_text(encoding="utf-8"))["rows"]}
    (summary,) = h.page_blocks(text, "summary")
    assert DECIMAL.findall(summary) == [rounded(scifact[s]) for s in
                                        ("shipped model", "shipped model fused", "BM25", "teacher hybrid")]
    assert "all 300 SciFact test queries" in summary and "top 20" in summary
    quick = json.loads((RESULTS / "quickstart-scifact.json").read_text(encoding="utf-8"))
    metrics = quick["datasets"]["scifact"]["metrics"]
    (line,) = h.page_blocks(text, "quickstart")
    assert DECIMAL.findall(line) == [rounded(metrics[s]["nDCG@10"]) for s in ("bm25", "reranker", "fused")]
    assert f"these {quick['datasets']['scifact']['queries']} queries" in line


def test_front_page_quotes_no_number_outside_generated_blocks() -> None:
    """The opening paragraphs and the results section: every decimal number is a generated one."""
    text = README.read_text(encoding="utf-8")
    opening = text[:text.index("\n## ")]
    for name, part in (("opening", opening), ("results", section(text, "Results: the shipped model"))):
        assert not DECIMAL.findall(without_generated(part)), (name, DECIMAL.findall(without_generated(part)))
        assert "<!-- generated:" in part, name


def test_quick_start_is_the_two_commands_and_made_the_expected_numbers() -> None:
    text = README.read_text(encoding="utf-8")
    quick = section(text, "Quick start (two commands)")
    blocks = re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)
    assert blocks == [QUICK_START, TEST_COMMAND]
    # the expected numbers come from this very command (plus --output/--summary)
    args = shlex.split(QUICK_START.split("prorank eval ", 1)[1])
    flags = dict(zip(args[::2], args[1::2]))
    config = json.loads((RESULTS / "quickstart-scifact.json").read_text(encoding="utf-8"))["config"]
    assert config["datasets"] == [flags["--dataset"]] and config["split"] == "test"
    assert config["max_queries"] == int(flags["--max-queries"]) and config["top_k"] == int(flags["--top-k"])
    assert config["model"] == "prorank-smollm2-135m" and config["first_stage"] == "bm25"  # the CLI's defaults
    assert all(v is None for k, v in config["reranker"].items() if k not in ("compile", "normalize", "long_documents"))


def test_front_page_stays_a_front_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 350
    for page in ("docs/training.md", "docs/evaluation.md", "docs/serving.md", "docs/performance.md",
                 "docs/model-card.md", "docs/research/2026-12-stage1-levers.md"):
        assert f"]({page})" in text, page
    assert "Docker" in section(text, "Serving") and "](docs/docker.md)" in section(text, "Serving")
    assert "Calibrated scores" in section(text, "Serving") and "](docs/calibration.md)" in section(text, "Serving")


# --------------------------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`(?!\]\()", "", text)  # code spans, but not a code span that is a link's text
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in pages():
        for target in links(page):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if path and file.relative_to(REPO).as_posix() in HANDED_IN and not file.exists():
                continue  # test_pages_handed_in_by_others_exist
            if not file.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("page", HANDED_IN)
def test_pages_handed_in_by_others_exist(page) -> None:
    if not (REPO / page).exists():
        pytest.skip(f"{page} is written in another session; README.md and docs/ link it already")
    assert (REPO / page).read_text(encoding="utf-8").startswith("#")


# ------------------------------------------------------------------------------ the research log (frozen)


def test_research_log_rows_are_the_runs_of_the_levers_json() -> None:
    """docs/research/2026-12-stage1-levers.md: each row's id names its run in the archived
    warmup-levers.json, and its numbers are that run's, as rounded on the page."""
    runs = {r["run"].rsplit("/", 1)[-1]: r for r in
            json.loads((ARCHIVE / "results" / "warmup-levers.json").read_text(encoding="utf-8"))["runs"]}
    text = (DOCS / "research" / "2026-12-stage1-levers.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\| (v\d+b?|warmup-cpu(-130)?) \|", line)]
    ids = []

    def close(cell: str, value: float | None, scale: float = 1.0) -> None:
        number = float(re.sub(r"[*%]", "", cell).strip())
        decimals = len(cell.split(".")[1].rstrip("*%")) if "." in cell else 0
        assert value is not None and abs(number - value * scale) <= 0.5 * 10 ** -decimals + 1e-9, (ids[-1], cell, value)

    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        ids.append(cells[0])
        run = runs["warmup-cpu-" + cells[0] if cells[0].startswith("v") else cells[0]]
        assert int(cells[2]) == run["steps"], cells[0]
        close(cells[3], run["last10"]["format_rate"])
        close(cells[4], run["last10"]["label_one_rate"])
        if not cells[5].startswith("("):
            close(cells[5], run["last10"]["frac_reward_zero_std"])
        probe = [c.strip() for c in cells[6].split("/")]
        for cell, value in zip(probe, (run["probe"]["start"]["auc"], run["probe"]["best_auc"], run["probe"]["end"]["auc"])):
            close(cell, value)
        close(cells[7], run["probe"]["end"]["label_one"], 100)
        if cells[8] == "—":
            assert run["heldout"] is None, cells[0]
        else:
            fmt, auc, share = (c.strip() for c in cells[8].split("/"))
            close(fmt, run["heldout"]["format_rate"])
            close(auc, run["heldout"]["score_auc"])
            close(share, run["heldout"]["label_one_share"], 100)
    assert sorted("warmup-cpu-" + i if i.startswith("v") else i for i in ids) == sorted(runs)
    assert len(ids) == len(runs) == 29
