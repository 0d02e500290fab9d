"""A webhook receiver for tests: ``http.server`` on 127.0.0.1 (port 0) in a thread.

It verifies every signature the way docs/webhooks.md tells a receiver to (HMAC-SHA256 of
``"<t>.<raw body>"`` with the endpoint's secret, compared in constant time), written out
here rather than imported, so the test holds the server to the documented scheme. It can be
stopped (connections are refused) and started again on the same port, and told which status
to answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["Treasurer-Delivery"]

    @property
    def event(self) -> str:
        return self.headers["Treasurer-Event"]


def verify(secret: str, header: str, body: bytes) -> bool:
    """The receiver's check, as documented: ``t=<unix>,v1=<hex>`` over ``f"{t}.{body}"``."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


class Receiver:
    """Records every POST; ``secrets`` maps a path to the secret its endpoint signs with."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.received: list[Received] = []
        self.status = 200
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                secret = receiver.secrets.get(self.path, "")
                signature = self.headers.get("Treasurer-Signature", "")
                signed = bool(secret and signature) and verify(secret, signature, body)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), body, signed)
                    )
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the socket: from now on connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def on(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout_s: float = 10.0) -> None:
        """Until ``count`` POSTs arrived (at ``path``), bounded in time."""
        deadline = time.monotonic() + timeout_s
        while len(self.on(path) if path else self.received) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} arrived"
            time.sleep(0.01)


def running_receiver() -> Iterator[Receiver]:
    """A started receiver, stopped afterwards (wrap it in a fixture)."""
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def until(
    condition: Callable[[], bool], action: Callable[[], object], timeout_s: float = 30.0
) -> None:
    """Run ``action`` until ``condition`` holds, bounded in time (on PostgreSQL an open
    transaction elsewhere on the server may hold the audit sealer back for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        action()
        if condition():
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
