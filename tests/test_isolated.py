"""prorank.train.isolated: a step run in a spawned child returns its result and the child's peak
memory; the child's failures come back as exceptions, never as a silent None."""

from __future__ import annotations

import os
import signal

import pytest

from prorank.train.isolated import run_isolated


def _allocate(mb: int) -> int:
    block = bytearray(mb * 2**20)  # touched: zero-filled pages count once written
    for i in range(0, len(block), 4096):
        block[i] = 1
    return os.getpid()


def _fail(field: str) -> None:
    raise ValueError(f"datasets[0].{field}: no such split")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_result_and_the_childs_peak_memory_come_back():
    pid, peak = run_isolated(_allocate, 300)
    assert pid != os.getpid()  # it ran elsewhere ...
    assert peak >= 300  # ... and its peak counts what it held
    assert run_isolated(_allocate, mb=1)[1] < peak  # keyword arguments; a fresh process each time


def test_an_exception_in_the_child_is_raised_with_its_traceback():
    with pytest.raises(ValueError, match=r"datasets\[0\]\.split: no such split") as info:
        run_isolated(_fail, "split")
    assert any("in the child process that ran _fail" in note and "_fail" in note for note in info.value.__notes__)


def test_a_child_killed_without_an_answer_is_an_error_naming_its_exit():
    with pytest.raises(ChildProcessError, match=r"_die ended without a result.*exit code -9"):
        run_isolated(_die)


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """spawn re-imports the caller's script in the child; a script without an ``if __name__ ==
    "__main__"`` guard (accelerate launch scripts, a user's ``main(cfg)`` call) must not run twice."""
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text("print('body ran', flush=True)\nfrom prorank.train.isolated import run_isolated\n"
                      "print('result', run_isolated(pow, 2, 5)[0])\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["body ran", "result 32"]
