"""HotSpot's signal handlers in a process that also runs a Ray driver, and Ctrl-C beside the JVM.

Each case runs in a fresh interpreter, as users run ``prorank``: pytest's own faulthandler would
sit in between otherwise. Without ``prorank.retrieval.jvm_signals``, indexing and searching
scifact after ``ray.shutdown()`` ended in a segmentation fault (Ray 2.60 resets SIGSEGV)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

RAY_THEN_BM25 = textwrap.dedent("""
    import json, signal, sys, tempfile
    import ray  # before the JVM: RAY_DISABLE_FAILURE_SIGNAL_HANDLER is not seen, Ray installs its own
    from prorank.data import load_dataset
    from prorank.evaluation import evaluate, mean_metrics
    from prorank.retrieval import BM25Searcher, build_index, jvm_signals
    from prorank.retrieval.java import init_ray_beside_jvm, shutdown_ray_beside_jvm

    def handlers():  # the handler address of each signal the JVM traps
        return {s: jvm_signals.handler(getattr(signal, s)) for s in jvm_signals.jvm_signals()}

    scifact = load_dataset("scifact", data_dir=sys.argv[1])
    qids = scifact.judged_query_ids()

    def bm25():  # index and search (the JVM starts on the first call)
        index = build_index(scifact, tempfile.mkdtemp(dir=".") + "/scifact", threads=2)  # cwd: the test's tmp_path
        with BM25Searcher(index) as searcher:
            hits = searcher.batch_search({q: scifact.queries[q] for q in qids}, k=100, threads=2)
        run = {q: {h.docid: h.score for h in hits[q]} for q in qids}
        return round(mean_metrics(evaluate(scifact.qrels, run, qids))["nDCG@10"], 4)

    init_ray_beside_jvm(ray.init, num_cpus=1, include_dashboard=False, log_to_driver=False)
    first = bm25()  # the JVM starts while Ray runs
    jvm = handlers()
    shutdown_ray_beside_jvm(ray.shutdown)
    after_shutdown = handlers()
    second = bm25()
    init_ray_beside_jvm(ray.init, num_cpus=1, include_dashboard=False, log_to_driver=False)
    after_init = handlers()
    ray.shutdown()  # not through prorank: the next BM25 call puts the handlers back
    third = bm25()
    kept = [after_shutdown == jvm, after_init == jvm, handlers() == jvm]
    print(json.dumps({"ndcg": [first, second, third], "signals": sorted(jvm), "kept": kept}))
""")


def test_bm25_survives_ray_starting_and_stopping_in_the_same_process(tmp_path, data_dir):
    script = tmp_path / "ray_then_bm25.py"
    script.write_text(RAY_THEN_BM25)
    run = subprocess.run([sys.executable, str(script), str(data_dir)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PRORANK_HOME": str(tmp_path / "home")}, timeout=600)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ndcg"] == [pytest.approx(0.679, abs=0.003)] * 3  # pyserini's published BEIR figure
    assert {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL"} <= set(result["signals"])
    assert "SIGINT" not in result["signals"] and "SIGTERM" not in result["signals"]  # -Xrs: Python's
    assert result["kept"] == [True, True, True]
    assert not list(tmp_path.glob("hs_err_pid*.log"))


CTRL_C = textwrap.dedent("""
    import time
    from prorank.retrieval import ensure_jvm
    ensure_jvm()
    try:  # "ready" inside the try: the interrupt may land before print returns (the test reads the line first)
        print("ready", flush=True)
        time.sleep(60)
        print("not interrupted")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
""")


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_ctrl_c_beside_the_jvm_raises_keyboard_interrupt(tmp_path):
    """HotSpot would take SIGINT and end the process (exit 130) before Python saw it; with -Xrs the
    interrupt reaches Python, so `prorank eval` stops through its own handlers (cache kept, resumable)."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (out.strip(), proc.returncode) == ("KeyboardInterrupt", 0), err[-2000:]
