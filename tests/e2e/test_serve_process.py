"""A real ``treasurer serve`` process on a loopback port, driven by the SDK and the CLI.

Two servers are started, each once for the module: ``treasurer init`` (and ``init --demo``
for the custodial one) in a temporary data directory, then ``treasurer serve`` on a free port,
waited for on ``/health`` (bounded). Each is stopped in a ``finally`` through its own process
handle only (terminate, bounded wait, then kill). The vault's scrypt cost is lowered with
``TREASURER_VAULT_SCRYPT_N`` so start-up does not spend seconds deriving keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.orgs import cross_wallet_org

import treasurer

pytestmark = pytest.mark.slow

TREASURER = [sys.executable, "-m", "treasurer.bootstrap.cli"]
STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
CONFIRM_TIMEOUT_S = 10.0
EVM_SHOP = "0x9999999999999999999999999999999999999999"
SOLANA_SHOP = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


@dataclass(frozen=True)
class Server:
    url: str
    admin_token: str
    env: dict[str, str]
    cwd: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``treasurer <args>`` as a separate process against this server's data dir."""
        return subprocess.run(
            [*TREASURER, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it for a socket bound to port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/health`` until it answers, the process dies, or the startup budget is spent."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"treasurer serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"treasurer serve did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server we started; kill it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def server_env(root: Path, port: int) -> dict[str, str]:
    """This environment without any ``TREASURER_*`` of the caller, plus the test server's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURER_")}
    return env | {
        "TREASURER_DATA_DIR": str(root / "data"),
        "TREASURER_HOST": "127.0.0.1",
        "TREASURER_PORT": str(port),
        "TREASURER_VAULT_SCRYPT_N": "16",
    }


@contextmanager
def running_server(root: Path, *init_args: str) -> Iterator[Server]:
    """``treasurer init [init_args]`` + ``treasurer serve`` in ``root`` on a free port."""
    port = free_port()
    env = server_env(root, port)
    init = subprocess.run(
        [*TREASURER, "init", *init_args],
        env=env,
        cwd=root,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr.decode()
    token = (root / "data" / "admin.key").read_text(encoding="utf-8").strip()
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*TREASURER, "serve"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_health(url, process, log_path)
            yield Server(url, token, env, root)
        finally:
            stop(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A governance server with the cross-wallet org."""
    with running_server(tmp_path_factory.mktemp("serve")) as running:
        with treasurer.connect(running.url, running.admin_token) as admin:
            assert admin.apply(cross_wallet_org()).applied
        yield running


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """What ``make run`` starts: ``init --demo``, then serve with the embedded chains."""
    with running_server(tmp_path_factory.mktemp("demo"), "--demo") as running:
        yield running


def test_the_cross_wallet_denial_end_to_end(server: Server) -> None:
    """An agent session over the network: $999 on w1 is authorized and captured, then $499 on
    w2 is denied by the $1,000 daily budget of the agent across both wallets."""
    with treasurer.connect(server.url, server.admin_token) as admin:
        session = admin.create_session("agent_a", name="e2e", ttl_s=3600)
    with treasurer.connect(server.url, session.token) as agent:
        first = agent.authorize(wallet="w1", amount="999.00", asset="USDC")
        assert first.allowed and first.state == "pending" and first.value_usd == "999.00"
        assert agent.capture(first.id).state == "captured"
        second = agent.authorize(wallet="w2", amount="499.00", asset="USDC")
        assert not second.allowed and second.state == "denied"
        assert "agent_daily_budget_exceeded" in second.codes
        (reason,) = [r for r in second.reasons if r.code == "agent_daily_budget_exceeded"]
        assert "$1,498.00" in reason.message and "$999.00" in reason.message
        assert agent.get_authorization(second.id).state == "denied"
        with pytest.raises(treasurer.InvalidState):
            agent.void(first.id)

    async def async_check() -> list[str]:
        async with treasurer.connect_async(server.url, session.token) as remote:
            decision = await remote.check(wallet="w2", amount="2.00", asset="USDC")
            return decision.codes

    assert "agent_daily_budget_exceeded" in asyncio.run(async_check())


def test_the_cli_against_the_running_server(server: Server) -> None:
    """The CLI as a separate process: the local server and admin key are the defaults; a
    denied check exits 1; a wrong key exits 5 and says where the admin key is."""
    listed = server.cli("agents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [a["id"] for a in json.loads(listed.stdout)] == ["agent_a", "agent_b"]
    spend = ("--agent", "agent_a", "--wallet", "w2", "--asset", "USDC", "--url", server.url)
    denied = server.cli("check", *spend, "--amount", "1000.01", "--json")
    assert denied.returncode == 1, denied.stderr
    assert "agent_daily_budget_exceeded" in [
        r["code"] for r in json.loads(denied.stdout)["reasons"]
    ]
    refused = server.cli("wallets", "list", "--key", "tsk_wrong")
    assert refused.returncode == 5
    assert "admin.key" in " ".join(refused.stderr.split())


def test_make_run_pays_from_the_custodial_demo_wallets(demo_server: Server) -> None:
    """The demo agent pays from its custodial wallets on both embedded chains over HTTP; the
    server's own confirmation thread captures what landed, and budgets count it."""
    sessions = json.loads((demo_server.cwd / "data" / "demo-sessions.json").read_text())
    log = (demo_server.cwd / "serve.log").read_text()
    assert "Custodial payments: on (evm-local, solana-local)" in log
    assert "Dev faucet funded the custodial wallets (1 on evm-local, 1 on solana-local)" in log
    with treasurer.connect(demo_server.url, sessions["procurement_bot"]) as agent:
        evm = agent.pay(wallet="pb-evm-local", amount="25.00", asset="DUSD", recipient=EVM_SHOP)
        solana = agent.pay(
            wallet="pb-solana-local", amount="150.00", asset="DUSD", recipient=SOLANA_SHOP
        )
        denied = agent.pay(
            wallet="pb-solana-local", amount="250.00", asset="DUSD", recipient=SOLANA_SHOP
        )
        assert (evm.state, evm.tier) == ("broadcast", "instant")
        assert (solana.state, solana.tier) == ("broadcast", "notify")
        assert denied.state == "denied"
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while time.monotonic() < deadline:
            states = {agent.payment(p.id).state for p in (evm, solana)}
            if states == {"confirmed"}:
                break
            time.sleep(0.1)
        assert states == {"confirmed"}
    with treasurer.connect(demo_server.url, demo_server.admin_token) as admin:
        (row,) = admin.spend(by="agent")
        assert (row.group, row.captured_usd) == ("procurement_bot", "175.00")


def test_serve_refuses_several_workers_with_embedded_chains(tmp_path: Path) -> None:
    """Embedded chains live in one process: several workers would each see another chain, so
    serve stops at once with a message naming both settings (exit code 2, no traceback)."""
    env = server_env(tmp_path, free_port()) | {"TREASURER_WORKERS": "2"}
    refused = subprocess.run(
        [*TREASURER, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2
    err = " ".join(refused.stderr.split())
    assert "[settings_invalid] TREASURER_WORKERS=2 cannot run with the embedded chains" in err
    assert "TREASURER_CHAINS" in err and "Traceback" not in err
