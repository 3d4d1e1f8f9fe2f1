"""How the service tests talk to the service: constants, metric reads, and held-open requests."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable

import httpx

API_KEY_ENV = "PRORANK_TEST_SERVE_KEY"
API_KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_LENGTH = 128
MAIN_CALIBRATION = (2.0, -0.5)  # (a, b) of the main app's calibration file: P = sigmoid(a * raw + b)


def calibrated(raw: list[float]) -> list[float]:
    """The main app's relevance scores for these raw scores (its default scale: calibrated)."""
    from prorank.calibration import Calibration

    return Calibration(*MAIN_CALIBRATION).probabilities(raw)


def texts(cranfield, n: int, start: int = 0) -> list[str]:
    ids = sorted(cranfield.corpus)[start : start + n]
    return [cranfield.corpus[i]["text"] for i in ids]


def metric(client: httpx.Client, sample: str, prefix: str = "", headers: dict[str, str] | None = None) -> float:
    """The value of a Prometheus sample, e.g. ``prorank_requests_queued`` or
    ``prorank_requests_total{endpoint="/v1/rerank",status="200"}`` (0 when absent)."""
    text = client.get(f"{prefix}/metrics", headers=headers).text
    values = [float(value) for name, _, value in (line.rpartition(" ") for line in text.splitlines()) if name == sample]
    return values[0] if values else 0.0


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail (not hang) if it never does."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


class HeldRequest:
    """A POST whose body stops one byte short until :meth:`finish`: it reaches the service and
    holds whatever it holds there (an admission slot, a place in the queue) for as long as the
    test wants, with no timing involved."""

    def __init__(self, port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self._sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload[:-1])
        self._last = payload[-1:]

    def finish(self) -> None:
        """Send the last byte of the body."""
        self._sock.sendall(self._last)

    def response(self) -> tuple[int, dict[str, str], Any]:
        """Status, headers (lower-case names) and JSON body of the answer; closes the connection."""
        data = b""
        while chunk := self._sock.recv(65536):
            data += chunk
        self._sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers = {k.lower(): v for k, v in headers.items()}
        if headers.get("transfer-encoding") == "chunked":
            body = _unchunk(body)
        return int(lines[0].split()[1]), headers, json.loads(body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out
