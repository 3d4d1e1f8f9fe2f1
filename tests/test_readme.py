"""Every Python block of the README runs as written (with the real shipped reranker)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2 and any("Reranker.from_pretrained" in b for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = python_blocks()[index]
    if "langchain_cohere" in code or "import cohere" in code:
        pytest.skip("needs a running service and langchain-cohere (covered by tests/service with cohere)")
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
