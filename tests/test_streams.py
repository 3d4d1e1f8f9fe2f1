"""Scoring streams: concurrent batches on threads of their own, same scores, caller untouched."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from prorank import Reranker
from prorank.streams import default_streams, run_streams
from test_reranker import DOCS, QUERY  # the same query and documents as the Reranker tests


def _forwards(reranker, fn):
    """Run ``fn``; return its result and (thread name, torch threads) of every decoder pass."""
    seen = []
    hook = reranker.model.get_decoder().register_forward_hook(
        lambda *_: seen.append((threading.current_thread().name, torch.get_num_threads())))
    try:
        return fn(), seen
    finally:
        hook.remove()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_streams_run_batches_concurrently_with_equal_scores(tiny_model_dir, two_threads):
    streamed = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=1, streams=2,
                                        share_prefix=False)
    serial = Reranker(streamed.model, streamed.tokenizer, max_length=128, batch_size=1, streams=1,
                      share_prefix=False)
    pairs = [(QUERY, d) for d in DOCS] + [("what do stock prices depend on", d) for d in DOCS[:3]]

    scores, passes = _forwards(streamed, lambda: streamed.score_pairs(pairs))
    assert len(passes) == len(pairs)
    # every batch ran on a stream thread, each with half of the caller's two threads
    assert {name.rsplit("_", 1)[0] for name, _ in passes} == {"prorank-stream"}
    assert {threads for _, threads in passes} == {1}
    assert torch.get_num_threads() == 2  # the caller's setting is its own

    reference, passes = _forwards(serial, lambda: serial.score_pairs(pairs))
    assert {p for p in passes} == {(threading.current_thread().name, 2)}
    assert scores == pytest.approx(reference, abs=1e-4)
    assert len(set(round(s, 5) for s in scores)) > 4

    # with share_prefix, the batches after each query's prefix are streamed too
    shared = Reranker(streamed.model, streamed.tokenizer, max_length=128, batch_size=1, streams=2,
                      share_prefix=True)
    assert shared.score_pairs(pairs) == pytest.approx(reference, abs=1e-4)


def test_a_single_batch_runs_in_the_caller_with_all_its_threads(tiny_model_dir, two_threads):
    r = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128, batch_size=8, streams=2,
                                 share_prefix=False)
    _, passes = _forwards(r, lambda: r.score(QUERY, DOCS))
    assert passes == [(threading.current_thread().name, 2)]


def test_default_streams_follow_the_device(tiny_model_dir, two_threads):
    assert default_streams("cpu") == 2
    assert default_streams("cuda") == 1
    r = Reranker.from_pretrained(tiny_model_dir, device="cpu", max_length=128)
    assert r.streams is None and "streams=None" in repr(r)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="streams"):
            Reranker.from_pretrained(tiny_model_dir, device="cpu", streams=bad)


def test_run_streams_keeps_order_and_raises_the_first_error():
    def slow_square(x: int) -> int:
        time.sleep(0.02 * (5 - x))  # later items finish first
        return x * x

    done = []
    assert run_streams(slow_square, list(range(6)), 3, on_done=lambda: done.append(1)) == [0, 1, 4, 9, 16, 25]
    assert len(done) == 6
    assert run_streams(slow_square, [], 3) == []

    def fail_on_two(x: int) -> int:
        if x == 2:
            raise RuntimeError("item 2 is bad")
        return x

    with pytest.raises(RuntimeError, match="item 2"):
        run_streams(fail_on_two, list(range(8)), 2)
    with pytest.raises(ValueError, match="streams"):
        run_streams(slow_square, [1], 0)
