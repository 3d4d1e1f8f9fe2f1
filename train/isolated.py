"""Run one step of a training job in a child process, so that what it loads leaves with it.

Building stage 2's training data starts Lucene's JVM (BM25 negatives), loads the teacher encoder
and every collection's corpus; none of it is needed to train, and none of it can be unloaded from
a process (a JVM's heap is not handed back to the OS). :func:`run_isolated` runs such a step in a
fresh interpreter (``spawn``) and returns its result and the child's peak resident memory; the
training process never holds them. An exception in the child is raised again in the caller with
the child's traceback attached; a child that dies without one (killed, out of memory) raises
``ChildProcessError`` naming its exit code.

    >>> run_isolated(pow, 2, 10)[0]
    1024
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import traceback
from typing import Any, Callable, Iterator

__all__ = ["run_isolated"]


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
    from prorank.train.memory import peak_rss_mb

    try:
        result = fn(*args, **kwargs)
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the caller
        try:
            conn.send(("error", err, traceback.format_exc(), peak_rss_mb()))
        except Exception:  # the exception does not pickle: send its text
            conn.send(("error", RuntimeError(f"{type(err).__name__}: {err}"), traceback.format_exc(), peak_rss_mb()))
    else:
        conn.send(("ok", result, "", peak_rss_mb()))
    finally:
        conn.close()


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Keep ``spawn`` from running the caller's script again in the child: it re-imports
    ``__main__`` from its file, which re-runs a script without an ``if __name__ == "__main__"``
    guard (an ``accelerate launch`` script, a user's ``main(cfg)`` call). ``fn`` never lives there."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__spec__", "__file__") if main is not None and hasattr(main, k)}
    try:
        if main is not None:
            main.__spec__ = None  # spawn reads it unconditionally
            if "__file__" in saved:
                del main.__file__
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def run_isolated(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` in a spawned child process: ``(its result, the child's peak RSS in MB)``.

    ``fn``, its arguments and its result must pickle (a function of an importable module, not of
    the script being run; dataclass configs; plain data). Ctrl-C reaches the child too (same process group); the caller waits for it to end.
    """
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, fn, args, kwargs), name=f"prorank:{getattr(fn, '__name__', 'step')}")
    with _main_script_hidden():
        child.start()
    send.close()
    try:
        try:
            status, value, trace, peak = receive.recv()
        except EOFError:
            child.join()
            raise ChildProcessError(f"{getattr(fn, '__qualname__', fn)} ended without a result in its child process "
                                    f"(exit code {child.exitcode}; negative: killed by that signal)") from None
        child.join()
    finally:
        receive.close()
        if child.is_alive():  # interrupted while waiting: let the child handle its own Ctrl-C, then stop it
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
                child.join()
    if status == "error":
        if trace and hasattr(value, "add_note"):
            value.add_note(f"in the child process that ran {getattr(fn, '__qualname__', fn)}:\n{trace.rstrip()}")
        raise value
    return value, peak
