"""``treasurer audit export`` and ``treasurer audit verify`` through the real command tree.

``export`` runs on the local database; ``verify`` needs nothing but the file (and the public
key to pin): here its wiring cannot even open a database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org
from typer.testing import CliRunner, Result

from treasurer.adapters.sql.store import SqlStore
from treasurer.adapters.yaml_files import dump_org_file, load_org_file
from treasurer.bootstrap import EmbeddedGovernance, open_governance
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.interfaces.cli.output import EXIT_DENIED, EXIT_INVALID, EXIT_OK
from treasurer.service.admin import Governance
from treasurer.service.audit_signing import Ed25519Signer

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())


def wiring(open_backend: object) -> Wiring:
    return Wiring(
        open_backend=open_backend,  # type: ignore[arg-type]
        load_org_file=load_org_file,
        dump_org_file=dump_org_file,
        init=lambda _demo: [],
        serve=lambda: None,
    )


@pytest.fixture
def local(sqlite_url: str, clock: FakeClock) -> Wiring:
    """A local database with traffic, and the CLI wiring that opens it."""
    with open_governance(sqlite_url, clock=clock) as gov:
        gov.apply(cross_wallet_org())
        allowed = gov.authorize(agent="agent_a", wallet="w1", amount="10", asset="USDC")
        gov.capture(allowed.id)
        gov.authorize(agent="agent_a", wallet="w1", amount="5000", asset="USDC", recipient=SHOP)
    return wiring(lambda: open_governance(sqlite_url, clock=clock, audit_signer=SIGNER))


def offline() -> Wiring:
    def no_database() -> EmbeddedGovernance:
        raise AssertionError("verify must not open a database")

    return wiring(no_database)


def cli(commands: Wiring, *args: str) -> Result:
    return CliRunner().invoke(build_cli(commands), list(args))


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    path = tmp_path / "audit-signing.pub"
    path.write_bytes(SIGNER.public_key_pem())
    return path


def test_export_then_verify_offline(local: Wiring, tmp_path: Path, public_key: Path) -> None:
    """The export ends with a signed checkpoint and verifies with the pinned key alone."""
    out = tmp_path / "audit.jsonl"
    exported = cli(local, "audit", "export", "--out", str(out))
    assert exported.exit_code == EXIT_OK, exported.output
    assert "Exported" in exported.output
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header"
    assert json.loads(lines[-2])["type"] == "checkpoint"
    verified = cli(offline(), "audit", "verify", str(out), "--public-key", str(public_key))
    assert verified.exit_code == EXIT_OK, verified.output
    assert "intact" in verified.output
    assert "Signatures vouch for the chain up to seq" in verified.output


def test_export_to_standard_output(local: Wiring) -> None:
    result = cli(local, "audit", "export")
    assert result.exit_code == EXIT_OK, result.output
    events = [json.loads(x) for x in result.stdout.splitlines() if '"type":"event"' in x]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_verify_names_the_first_broken_event_and_exits_1(
    local: Wiring, tmp_path: Path, public_key: Path
) -> None:
    out = tmp_path / "audit.jsonl"
    assert cli(local, "audit", "export", "--out", str(out)).exit_code == EXIT_OK
    lines = out.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"seq":6,' in line and '"event"' in line)
    data = json.loads(lines[index])
    data["actor"] = "admin:mallory"
    lines[index] = json.dumps(data) + "\n"
    out.write_text("".join(lines))
    result = cli(offline(), "audit", "verify", str(out), "--public-key", str(public_key))
    assert result.exit_code == EXIT_DENIED
    assert "NOT INTACT" in result.output
    assert "First broken event" in result.output and "seq 6" in result.output
    as_json = cli(offline(), "audit", "verify", str(out), "--json")
    assert as_json.exit_code == EXIT_DENIED
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert (report["first_broken"]["problem"], report["first_broken"]["seq"]) == ("altered", 6)


def test_verify_against_another_key_fails(local: Wiring, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    assert cli(local, "audit", "export", "--out", str(out)).exit_code == EXIT_OK
    other = Ed25519Signer(Ed25519PrivateKey.generate()).public_key
    result = cli(offline(), "audit", "verify", str(out), "--public-key", other)
    assert result.exit_code == EXIT_DENIED  # the key given as hex digits
    assert "untrusted_key" in result.output
    bad = cli(offline(), "audit", "verify", str(out), "--public-key", "not-a-key")
    assert bad.exit_code == EXIT_INVALID
    key_file = tmp_path / "other.pub"
    key_file.write_text(other)
    result = cli(offline(), "audit", "verify", str(out), "--public-key", str(key_file))
    assert result.exit_code == EXIT_DENIED
    assert "untrusted_key" in result.output


def test_a_bad_time_is_invalid_input(local: Wiring) -> None:
    result = cli(local, "audit", "export", "--since", "yesterday")
    assert result.exit_code == EXIT_INVALID
    assert "ISO 8601" in result.output


def test_verify_of_a_missing_file_is_invalid(tmp_path: Path) -> None:
    result = cli(offline(), "audit", "verify", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == EXIT_INVALID
    assert "cannot read" in result.output


def test_export_without_an_audit_trail_says_so(sqlite_url: str, clock: FakeClock) -> None:
    def plain() -> Governance:
        store = SqlStore(sqlite_url)
        store.migrate()
        return _Closing(store, clock)

    result = cli(wiring(plain), "audit", "export")
    assert result.exit_code != EXIT_OK
    assert "audit_not_configured" in result.output


class _Closing(Governance):
    def close(self) -> None:
        self.store.close()
