"""HotSpot's signal handlers, kept while Ray's driver comes and goes in the same process.

HotSpot takes SIGSEGV, SIGBUS, SIGFPE and SIGILL as part of its normal work (safepoint polls,
implicit null checks, stack banging) and recovers in its own handlers. Ray's driver replaces them:
``ray.init`` installs its failure handler (its C++ one, or Python's ``faulthandler`` when
``RAY_DISABLE_FAILURE_SIGNAL_HANDLER`` was set before ``import ray``) and ``ray.shutdown`` resets
SIGSEGV, SIGILL, SIGFPE and SIGTERM to the default action. The JVM's next trap then kills the
process: with Ray 2.60, indexing and searching scifact after ``ray.init``/``ray.shutdown`` ended in
"Segmentation fault" (a test runs that sequence in a fresh interpreter).

``record(before)`` runs once, when ``prorank.retrieval.java`` has started the JVM, and keeps the
handlers it installed (the signals whose disposition changed); ``restore()`` puts them back after
anything that replaced them. Both are no-ops where there is no POSIX ``sigaction``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys

# room for struct sigaction on every libc (152 bytes on glibc x86_64 and aarch64); the bytes are
# copied whole, so nothing depends on its layout but this: the handler is its first field (Linux,
# macOS). Only that field tells handlers apart: glibc leaves stack bytes in the unused mask words.
_SIZE = 512
_HANDLER = ctypes.sizeof(ctypes.c_void_p)
_SIGNALS = tuple(s for s in range(1, 32) if s not in (signal.SIGKILL, signal.SIGSTOP)) if os.name == "posix" else ()
# what HotSpot traps in normal work: kept when the JVM was started before this module could look
_JVM_TRAPS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGPIPE", "SIGXFSZ", "SIGUSR2")
_HANDLERS: dict[int, bytes] = {}


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _sigaction(sig: int, new: bytes | None) -> bytes:
    """Install ``new`` (raw struct sigaction) for ``sig`` if given; returns the one it replaced."""
    libc = _libc()
    old = ctypes.create_string_buffer(_SIZE)
    if libc.sigaction(sig, None if new is None else ctypes.create_string_buffer(new, _SIZE), old) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"sigaction({signal.Signals(sig).name}): {os.strerror(errno)}")
    return old.raw


def _address(raw: bytes) -> int:
    """The handler field of a raw struct sigaction (0: default action, 1: ignored)."""
    return int.from_bytes(raw[:_HANDLER], sys.byteorder)


def handler(sig: int) -> int:
    """Address of this process's handler for ``sig`` (0: default action, 1: ignored)."""
    return _address(_sigaction(sig, None))


def snapshot() -> dict[int, bytes]:
    """This process's handler (raw struct sigaction) for every catchable signal below 32."""
    return {sig: _sigaction(sig, None) for sig in _SIGNALS}


def record(before: dict[int, bytes] | None) -> None:
    """Keep the JVM's handlers: those that differ from ``before`` (taken just before it started);
    with ``before`` None (a JVM started elsewhere), the current handlers of the signals HotSpot traps."""
    now = snapshot()
    if before is None:
        traps = {getattr(signal, name) for name in _JVM_TRAPS if hasattr(signal, name)}
        _HANDLERS.update({sig: raw for sig, raw in now.items() if sig in traps})
    else:
        _HANDLERS.update({sig: raw for sig, raw in now.items() if _address(before[sig]) != _address(raw)})


def jvm_signals() -> list[str]:
    """Names of the signals whose JVM handlers are kept (empty before the JVM started)."""
    return sorted(signal.Signals(sig).name for sig in _HANDLERS)


def restore() -> None:
    """Put the JVM's handlers back where something replaced them (no-op without a JVM)."""
    for sig, raw in _HANDLERS.items():
        if handler(sig) != _address(raw):
            _sigaction(sig, raw)
