"""The CLI against a server: the in-process app behind the injected ``connect`` factory.

The wiring is the production one except for ``connect``, which hands the SDK a Starlette
``TestClient`` instead of a socket, so every command runs the real routes, credentials and
problem+json mapping, and prints what a person or a script would see.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import yaml
from fastapi.testclient import TestClient
from tests.custodial import EVM, SOLANA, World, build_world, fresh_recipient
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org
from typer.testing import CliRunner, Result

import treasurer
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.yaml_files import dump_org_file, load_org_file
from treasurer.bootstrap import build_app, open_governance
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.sdk import Client
from treasurer.service.credentials import create_admin_key

URL = "http://testserver"
ED25519_HEX = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"


@dataclass
class Cli:
    """The command tree wired to the app, an admin SDK client and the admin key file."""

    app: typer.Typer
    http: TestClient
    admin: Client
    token: str
    key_file: Path
    tmp: Path

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(self.app, list(args), env=env)

    def remote(self, *args: str) -> Result:
        """Run a command with the server and key given as options."""
        return self(*args, "--url", URL, "--key", self.token)

    def org_file(self) -> Path:
        path = self.tmp / "org.yaml"
        path.write_text(yaml.safe_dump(cross_wallet_org(), sort_keys=False), encoding="utf-8")
        return path

    def agent(self) -> Client:
        token = self.admin.create_session("agent_a").token
        return treasurer.connect(URL, token, http=self.http)


def wiring_for(http: TestClient | None, tmp: Path, key_file: Path) -> Wiring:
    """The production wiring with the network swapped for ``http`` (None: a real socket)."""

    def connect(url: str, key: str) -> Client:
        return treasurer.connect(url, key, http=http, retries=0)

    return Wiring(
        open_backend=lambda: open_governance(f"sqlite:///{tmp / 'local.db'}"),
        load_org_file=load_org_file,
        dump_org_file=dump_org_file,
        init=lambda _demo: [],
        serve=lambda: None,
        connect=connect,
        default_url=URL,
        default_key_file=key_file,
    )


@pytest.fixture
def cli(sqlite_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Cli]:
    """The CLI wired to a fresh app; the admin key is also in the default key file."""
    app = build_app(sqlite_url, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    key_file = tmp_path / "admin.key"
    key_file.write_text(token + "\n", encoding="utf-8")
    with TestClient(app) as http:
        commands = build_cli(wiring_for(http, tmp_path, key_file))
        admin = treasurer.connect(URL, token, http=http)
        yield Cli(commands, http, admin, token, key_file, tmp_path)


def json_of(result: Result) -> object:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def said(result: Result) -> str:
    """What went to stderr, with rich's line wrapping undone."""
    return " ".join(result.stderr.split())


def lines_of(result: Result) -> Sequence[str]:
    return [line.strip() for line in result.stdout.splitlines()]


def test_apply_shows_the_plan_then_applies_on_the_server(cli: Cli) -> None:
    """A dry run prints the plan and writes nothing; --yes applies; a second apply is a no-op."""
    path = str(cli.org_file())
    planned = cli.remote("apply", "-f", path, "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "+ agent agent_a" in lines_of(planned) and "+ wallet w2" in lines_of(planned)
    assert any(line.startswith("Plan: ") for line in lines_of(planned))
    assert cli.remote("agents", "list", "--json").exit_code == 3  # nothing applied yet

    applied = cli.remote("apply", "-f", path, "--yes")
    assert applied.exit_code == 0 and "Applied. Config version" in applied.stdout
    again = cli.remote("apply", "-f", path, "--json")
    assert json_of(again) == {
        "changes": [],
        "counts": {"create": 0, "update": 0, "delete": 0},
        "applied": False,
        "config_version": None,
    }


def test_export_round_trips_through_the_server(cli: Cli) -> None:
    """export (server and key from the environment) writes a file that applies as a no-op."""
    cli.admin.apply(cross_wallet_org())
    out = cli.tmp / "exported.yaml"
    env = {"TREASURER_URL": URL, "TREASURER_KEY": cli.token}
    exported = cli("export", "-o", str(out), env=env)
    assert exported.exit_code == 0, exported.output
    assert load_org_file(out) == cli.admin.export()
    replan = cli("apply", "-f", str(out), "--dry-run", env=env)
    assert "No changes. The org is up to date." in replan.stdout


def test_check_exits_1_on_a_denial_and_0_when_allowed(cli: Cli) -> None:
    """After $999 on w1, a $499 check on w2 is denied (exit 1) with the agent budget reason."""
    cli.admin.apply(cross_wallet_org())
    agent = cli.agent()
    agent.capture(agent.authorize(wallet="w1", amount="999.00", asset="USDC").id)
    spend = ("--agent", "agent_a", "--wallet", "w2", "--asset", "USDC")
    denied = cli.remote("check", *spend, "--amount", "499.00", "--json")
    assert denied.exit_code == 1
    decision = json_of(denied)
    assert isinstance(decision, dict) and decision["allowed"] is False
    (reason,) = [r for r in decision["reasons"] if r["code"] == "agent_daily_budget_exceeded"]
    assert "$1,498.00" in reason["message"] and "$999.00" in reason["message"]
    shown = cli.remote("check", *spend, "--amount", "499.00")
    assert shown.exit_code == 1 and "DENIED" in shown.stdout
    assert "agent_daily_budget_exceeded" in shown.stdout
    assert cli.remote("check", *spend, "--amount", "1.00").exit_code == 0
    report = json_of(cli.remote("report", "--by", "wallet", "--json"))
    assert report == [
        {
            "group": "w1",
            "captured_usd": "999.00",
            "pending_usd": "0.00",
            "captured_count": 1,
            "pending_count": 0,
            "amounts": {"base:USDC": "999.000000"},
        }
    ]


def test_a_wrong_key_exits_5_and_says_where_the_admin_key_is(cli: Cli) -> None:
    """401: exit code 5, the server's message, and the next step naming admin.key."""
    refused = cli("agents", "list", "--url", URL, "--key", "tsk_not_a_real_key")
    assert refused.exit_code == 5
    assert "authentication failed" in said(refused)
    assert "check --key / TREASURER_KEY" in said(refused)
    assert f"the admin key is in {cli.key_file}" in said(refused)
    missing = cli("report", "--url", URL, "--key-file", str(cli.tmp / "nope.key"))
    assert missing.exit_code == 2 and "cannot read" in said(missing)


def test_api_only_commands_use_the_local_server_and_admin_key_by_default(cli: Cli) -> None:
    """Without --url and --key, agents/wallets/policies/approvers/freeze/sessions reach the
    default server with the data directory's admin key."""
    cli.admin.apply(cross_wallet_org())
    agents = json_of(cli("agents", "list", "--json"))
    assert isinstance(agents, list) and [a["id"] for a in agents] == ["agent_a", "agent_b"]
    shown = json_of(cli("agents", "show", "agent_a", "--json"))
    assert isinstance(shown, dict) and [w["id"] for w in shown["wallets"]] == ["w1", "w2"]
    wallets = json_of(cli("wallets", "list", "--agent", "agent_b", "--json"))
    assert isinstance(wallets, list) and [w["id"] for w in wallets] == ["w3"]
    policies = json_of(cli("policies", "list", "--scope", "agent:agent_a", "--json"))
    assert isinstance(policies, list) and policies
    first = policies[0]["id"]
    assert json_of(cli("policies", "show", first, "--json")) == policies[0]
    history = json_of(cli("policies", "history", first, "--json"))
    assert isinstance(history, list) and history[0]["version"] == 1

    assert "wallet:w1 is frozen." in cli("freeze", "wallet:w1", "--reason", "audit").stdout
    assert cli.admin.list_freezes() == ["wallet:w1"]
    assert "wallet:w1 is no longer frozen." in cli("unfreeze", "wallet:w1").stdout

    added = cli("approvers", "add", "alice", "--name", "Alice", "--kind", "ed25519")
    assert added.exit_code == 2  # --public-key is required
    added = cli(
        "approvers", "add", "alice", "--name", "Alice", "--kind", "ed25519",
        "--public-key", ED25519_HEX, "--group", "finance",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    approvers = json_of(cli("approvers", "list", "--json"))
    assert isinstance(approvers, list) and [a["groups"] for a in approvers] == [["finance"]]


def test_sessions_are_created_rotated_and_revoked_from_the_cli(cli: Cli) -> None:
    """The token is printed once; rotation retires the old token; decommission ends it all."""
    cli.admin.apply(cross_wallet_org())
    created = json_of(cli("sessions", "create", "agent_a", "--name", "ci", "--json"))
    assert isinstance(created, dict) and created["token"].startswith("tss_")
    human = cli("sessions", "create", "agent_a")
    assert "shown once" in human.stdout and lines_of(human)[-1].startswith("tss_")
    rotated = json_of(cli("sessions", "rotate", "agent_a", created["id"], "--json"))
    assert isinstance(rotated, dict) and rotated["token"] != created["token"]
    old = treasurer.connect(URL, created["token"], http=cli.http)
    with pytest.raises(treasurer.Unauthenticated):
        old.list_wallets()
    revoked = cli("sessions", "revoke", "agent_a", rotated["id"])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    listed = json_of(cli("sessions", "list", "agent_a", "--json"))
    assert isinstance(listed, list) and sum(s["active"] for s in listed) == 1

    gone = cli("agents", "decommission", "agent_a", "--yes")
    assert gone.exit_code == 0 and "decommissioned; 1 session(s) revoked" in gone.stdout
    again = cli("sessions", "create", "agent_a")
    assert again.exit_code == 4 and "register a new agent" in said(again)


def test_an_unreachable_server_exits_6_with_a_hint(tmp_path: Path) -> None:
    """Nothing listens: exit 6 and a pointer to treasurer serve / --url."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    commands = build_cli(wiring_for(None, tmp_path, tmp_path / "admin.key"))
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(commands, ["agents", "list", "--url", url, "--key", "tsk_x"])
    assert result.exit_code == 6
    assert f"cannot reach Treasurer at {url}" in said(result)
    assert "start it with: treasurer serve" in said(result)


# -- custodial payments -----------------------------------------------------------------------
@dataclass
class PayCli:
    """The command tree over the custodial world (tests/custodial.py)."""

    app: typer.Typer
    world: World
    agent_token: str
    admin_key_file: Path

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(self.app, list(args))

    def agent(self, *args: str) -> Result:
        return self(*args, "--url", URL, "--token", self.agent_token)


@pytest.fixture(scope="module")
def evm() -> LocalEvm:
    return LocalEvm()


@pytest.fixture
def pay_cli(sqlite_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm) -> Iterator[PayCli]:
    world = build_world(sqlite_url, clock, tmp_path, evm)
    key_file = tmp_path / "admin.key"
    key_file.write_text(world.admin_token + "\n", encoding="utf-8")
    try:
        with TestClient(world.app) as http:
            commands = build_cli(wiring_for(http, tmp_path, key_file))
            yield PayCli(commands, world, world.session(http, "agent_a"), key_file)
    finally:
        world.close()


def test_pay_waits_for_confirmation_and_exits_0(pay_cli: PayCli) -> None:
    """An agent pays from the CLI; --wait polls until the chain confirms; the key is shown."""
    to = fresh_recipient(EVM.network)
    spend = ("--wallet", EVM.wallet, "--to", to, "--amount", "10.00", "--asset", "DUSD")
    done = pay_cli.agent("pay", *spend, "--wait", "--idempotency-key", "cli-order-1")
    assert done.exit_code == 0, done.output
    assert "CONFIRMED" in done.stdout and "tier instant" in done.stdout
    assert "idempotency key: cli-order-1" in done.stdout
    assert pay_cli.world.token_balance(EVM.network, to) == EVM.units("10")
    again = json_of(pay_cli.agent("pay", *spend, "--idempotency-key", "cli-order-1", "--json"))
    assert isinstance(again, dict) and again["replayed"] is True
    assert pay_cli.world.token_balance(EVM.network, to) == EVM.units("10")  # paid once
    shown = pay_cli.agent("payments", "show", again["id"])
    assert shown.exit_code == 0 and "CONFIRMED" in shown.stdout
    listed = json_of(pay_cli("payments", "list", "--json"))  # the admin key from the key file
    assert isinstance(listed, list) and [p["id"] for p in listed] == [again["id"]]


def test_pay_on_solana_and_a_denial_exits_1(pay_cli: PayCli) -> None:
    to = fresh_recipient(SOLANA.network)
    spend = ("--wallet", SOLANA.wallet, "--to", to, "--asset", "DUSD")
    sent = json_of(pay_cli.agent("pay", *spend, "--amount", "250", "--json"))
    assert isinstance(sent, dict) and sent["tier"] == "notify" and sent["state"] == "broadcast"
    denied = pay_cli.agent("pay", *spend, "--amount", "900")
    assert denied.exit_code == 1 and "DENIED" in denied.stdout
    assert "agent_daily_budget_exceeded" in denied.stdout


def test_a_dry_run_explains_and_reserves_nothing(pay_cli: PayCli) -> None:
    to = fresh_recipient(EVM.network)
    spend = ("--wallet", EVM.wallet, "--to", to, "--amount", "40", "--asset", "DUSD")
    shown = pay_cli.agent("pay", *spend, "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert (
        "Dry run" in shown.stdout and "ALLOWED" in shown.stdout and "Simulation: ok" in shown.stdout
    )
    preview = json_of(pay_cli.agent("pay", *spend, "--dry-run", "--json"))
    assert isinstance(preview, dict) and preview["dry_run"] is True
    broke = pay_cli.agent("pay", *spend[:4], "--amount", "20000", "--asset", "DUSD", "--dry-run")
    assert broke.exit_code == 1  # $20,000 is over the budget as well as the wallet's funds
    assert json_of(pay_cli("payments", "list", "--json")) == []


def test_pay_with_an_admin_key_says_to_use_the_agent_session(pay_cli: PayCli) -> None:
    to = fresh_recipient(EVM.network)
    refused = pay_cli(
        "pay", "--wallet", EVM.wallet, "--to", to, "--amount", "1", "--asset", "DUSD",
        "--url", URL,
    )  # fmt: skip
    assert refused.exit_code == 5
    assert "[forbidden]" in said(refused) and "treasurer sessions create" in said(refused)
    external = pay_cli.agent(
        "pay", "--wallet", "a-base", "--to", to, "--amount", "1", "--asset", "USDC"
    )
    assert external.exit_code == 2 and "wallet_not_custodial" in said(external)


def test_wallets_create_custodial_and_balance(pay_cli: PayCli) -> None:
    """--custodial: the vault creates the key and only the address is printed; balance reads
    the chain; neither --custodial nor --address is a usage error naming the field."""
    created = pay_cli("wallets", "create", "--agent", "agent_a", "--chain", "solana-local",
                      "--custodial", "--url", URL)  # fmt: skip
    assert created.exit_code == 0, created.output
    address = next(a for _f, a in pay_cli.world.vault.addresses() if a in created.stdout)
    assert "agent_a-solana-local" in created.stdout and "key held by Treasurer" in created.stdout
    balance = json_of(pay_cli("wallets", "balance", "agent_a-solana-local", "--json", "--url", URL))
    assert isinstance(balance, dict) and balance["address"] == address
    assert [b["base_units"] for b in balance["balances"]] == ["0", "0"]
    table = pay_cli("wallets", "balance", EVM.wallet, "--url", URL, "--key", pay_cli.agent_token)
    assert table.exit_code == 0 and "10000" in table.stdout
    neither = pay_cli("wallets", "create", "--agent", "agent_a", "--chain", "base", "--url", URL)
    assert neither.exit_code == 2 and "--address" in said(neither)
    listed = json_of(pay_cli("wallets", "list", "--agent", "agent_a", "--json", "--url", URL))
    assert isinstance(listed, list) and "agent_a-solana-local" in [w["id"] for w in listed]
