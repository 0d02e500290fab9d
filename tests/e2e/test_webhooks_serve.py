"""A real ``treasurer serve`` killed (SIGKILL) between its events and their delivery.

The receiver (127.0.0.1, port 0) is down while the events happen, so nothing can have been
delivered when the server is killed; whatever the notifier had done by then (nothing,
dispatched, or failed attempts) is in the database. The receiver comes back on its port, a
new ``treasurer serve`` starts on the same data directory, and every event must arrive once,
signed. Bounded: each wait has a deadline, and every process is stopped through its own
handle (terminate, bounded wait, kill).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.orgs import cross_wallet_org
from tests.webhook_receiver import Receiver

import treasurer
from treasurer.sdk import Client

pytestmark = pytest.mark.slow

TREASURER = [sys.executable, "-m", "treasurer.bootstrap.cli"]
STARTUP_TIMEOUT_S = 20.0
DELIVERY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(root: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURER_")}
    return env | {
        "TREASURER_DATA_DIR": str(root / "data"),
        "TREASURER_HOST": "127.0.0.1",
        "TREASURER_PORT": str(port),
        "TREASURER_CHAINS": "none",
    }


@contextmanager
def serving(root: Path, env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``treasurer serve`` until the block ends (or the test kills it first)."""
    log_path = root / log_name
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*TREASURER, "serve"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{env['TREASURER_PORT']}"
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def until_delivered(admin: Client, webhook: str) -> None:
    """Until the server made at least three deliveries and every one is delivered."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while True:
        found = admin.webhook_deliveries(webhook)
        if len(found) >= 3 and {d.state for d in found} == {"delivered"}:
            return
        assert time.monotonic() < deadline, [(d.event, d.state, d.last_error) for d in found]
        time.sleep(0.2)


def test_events_survive_a_killed_server_and_are_delivered_once(tmp_path: Path) -> None:
    """Breach, freeze and decommission while the receiver is down; SIGKILL the server;
    receiver back, server restarted: every delivery the server made arrives once, signed."""
    port = free_port()
    env = environment(tmp_path, port)
    init = subprocess.run(
        [*TREASURER, "init"], env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    assert init.returncode == 0, init.stderr.decode()
    token = (tmp_path / "data" / "admin.key").read_text(encoding="utf-8").strip()
    url = f"http://127.0.0.1:{port}"
    receiver = Receiver().start()
    receiver.stop()  # keep its port; connections are refused until it starts again
    try:
        with serving(tmp_path, env, "first.log") as first:
            with treasurer.connect(url, token) as admin:
                assert admin.apply(cross_wallet_org()).applied
                made = admin.create_webhook(receiver.url("/hook"))
                receiver.secrets["/hook"] = made.secret
                session = admin.create_session("agent_a")
                with treasurer.connect(url, session.token) as agent:
                    denied = agent.authorize(wallet="w1", amount="5000.00", asset="USDC")
                    assert not denied.allowed
                admin.freeze("agent:agent_a", reason="kill test")
                admin.decommission("agent_b")
            first.kill()  # SIGKILL: no shutdown, no flush, whatever state it was in
            first.wait(timeout=10)
        assert receiver.received == []

        receiver.start()
        with serving(tmp_path, env, "second.log"), treasurer.connect(url, token) as admin:
            until_delivered(admin, made.id)
            time.sleep(1.5)  # a few more notifier rounds: nothing more may arrive
            deliveries = admin.webhook_deliveries(made.id)
        received = list(receiver.received)
        # Decommissioning also freezes the agent's wallets (scope.frozen); whatever the events,
        # each delivery the server made arrived exactly once, signed.
        assert sorted(r.delivery for r in received) == sorted(d.id for d in deliveries)
        assert all(r.signed for r in received)
        assert {d.state for d in deliveries} == {"delivered"}
        types = Counter(r.event for r in received)
        assert types["budget.breach"] == types["agent.frozen"] == 1
        assert types["agent.decommissioned"] == 1
        assert set(types) <= {
            "budget.breach",
            "agent.frozen",
            "agent.decommissioned",
            "scope.frozen",
        }
        assert {r.json["data"].get("authorization") for r in received} >= {denied.id}
    finally:
        receiver.stop()
