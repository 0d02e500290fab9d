"""``treasurer approve`` against a server: signed votes made on the approver's machine.

The app is ``build_app`` (approvals wired as in production) behind the CLI's injected
``connect``; the approvers' private keys live in files, as an approver would keep them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from eth_account import Account
from fastapi.testclient import TestClient
from tests.e2e.test_cli_remote import URL, Cli, wiring_for
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

import treasurer
from treasurer.bootstrap import build_app
from treasurer.interfaces.cli.app import build_cli
from treasurer.service.credentials import create_admin_key


@pytest.fixture
def cli(sqlite_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Cli]:
    """agent_a needs 2 of alice (Ed25519, PEM file) and dave (EVM key file) above $1,000."""
    app = build_app(sqlite_url, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    key_file = tmp_path / "admin.key"
    key_file.write_text(token + "\n", encoding="utf-8")
    with TestClient(app) as http:
        admin = treasurer.connect(URL, token, http=http)
        org = cross_wallet_org(agent_daily="10000.00")
        org["agents"][0]["approval"] = {
            "threshold_usd": "1000.00",
            "approvers": ["alice", "dave"],
            "required": 2,
        }
        admin.apply(org)
        alice = Ed25519PrivateKey.generate()
        pem = alice.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        (tmp_path / "alice.pem").write_bytes(pem)
        public = alice.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        admin.add_approver("alice", name="Alice", kind="ed25519", public_key=public)
        dave = Account.create()
        (tmp_path / "dave.key").write_text("0x" + bytes(dave.key).hex() + "\n", encoding="utf-8")
        admin.add_approver("dave", name="Dave", kind="evm", public_key=dave.address)
        commands = build_cli(wiring_for(http, tmp_path, key_file))
        yield Cli(commands, http, admin, token, key_file, tmp_path)


def test_approvers_sign_locally_and_the_spend_is_approved(cli: Cli) -> None:
    agent = cli.agent()
    auth = agent.authorize(wallet="w1", amount="1500.00", asset="USDC", recipient=SHOP)
    assert auth.state == "pending_approval"
    first = cli.remote(
        "approve", auth.id, "--approver", "alice", "--sign-key", str(cli.tmp / "alice.pem")
    )
    assert first.exit_code == 0, first.output
    assert "approver:alice votes approve" in first.stdout and "PENDING" in first.stdout
    second = cli.remote(
        "approve", auth.id, "--approver", "dave", "--sign-key", str(cli.tmp / "dave.key"), "--json"
    )
    assert second.exit_code == 0, second.output
    status = json.loads(second.stdout)
    assert (status["verdict"], status["state"]) == ("approved", "pending")
    assert [b["voter"] for b in status["ballots"]] == ["approver:alice", "approver:dave"]
    assert agent.get_authorization(auth.id).state == "pending"
    closed = cli.remote("approve", auth.id)
    assert closed.exit_code == 4 and "approval_closed" in closed.stderr
    shown = cli.remote("approve", auth.id, "--show")
    assert shown.exit_code == 0 and "APPROVED" in shown.stdout


def test_a_wrong_key_and_the_initiator_are_refused(cli: Cli) -> None:
    agent = cli.agent()
    auth = agent.authorize(wallet="w1", amount="1500.00", asset="USDC", recipient=SHOP)
    wrong = cli.tmp / "wrong.key"
    wrong.write_text(Ed25519PrivateKey.generate().private_bytes_raw().hex(), encoding="utf-8")
    forged = cli.remote("approve", auth.id, "--approver", "alice", "--sign-key", str(wrong))
    assert forged.exit_code == 2 and "signature_invalid" in forged.stderr
    missing = cli.remote("approve", auth.id, "--approver", "alice")
    assert missing.exit_code == 2
    session = cli.admin.create_session("agent_a").token
    own = cli("approve", auth.id, "--url", URL, "--key", session)
    assert own.exit_code == 5 and "self_approval" in own.stderr
