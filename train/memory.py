"""Peak resident memory of this process, per stage: what a recipe records in its summaries.

Linux keeps the process's peak resident set (``VmHWM`` in ``/proc/self/status``, which includes
the JVM of BM25 and every thread); writing ``5`` to ``/proc/self/clear_refs`` resets it, so each
stage of one process can report its own peak. Elsewhere the peak comes from ``getrusage`` (since
the process started, no reset).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> float:
    """Start a new peak (where the OS allows); returns ``time.time()`` for the stage's clock."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        pass
    return time.time()


def peak_rss_mb() -> float:
    """Peak resident memory in MB since the last reset (since the start where none is possible)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
