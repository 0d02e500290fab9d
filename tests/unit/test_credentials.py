"""Credentials: token shapes, hashing, approver keys, the failure limiter and role rules."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from tests.fakes import FakeClock

from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.sql.db import open_database
from treasurer.adapters.sql.migrate import migrate
from treasurer.domain.credentials import (
    ApproverKind,
    Principal,
    PrincipalKind,
    Role,
    format_token,
    hash_secret,
    normalize_public_key,
    parse_token,
    secret_matches,
)
from treasurer.domain.errors import Forbidden, InvalidRequest, InvalidState, Unauthenticated
from treasurer.service.auth_access import Permission, require, require_method
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.auth_limiter import FailureLimiter, SourceBlocked
from treasurer.service.credentials import (
    MAX_SESSION_TTL_S,
    MIN_SESSION_TTL_S,
    Authenticator,
    create_admin_key,
    new_session,
    session_ttl,
)
from treasurer.service.ports import AuditRecord

ID = "0123456789abcdef"


def test_token_round_trip_and_secret_with_underscores() -> None:
    """A token splits into prefix, id and secret, even when the secret contains '_'."""
    token = format_token("tss", ID, "a_b-c_" + "x" * 20)
    parsed = parse_token(token)
    assert parsed is not None
    assert (parsed.prefix, parsed.id, parsed.secret) == ("tss", ID, "a_b-c_" + "x" * 20)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tsk",
        "tsk_",
        f"tsk_{ID}_short",
        f"xyz_{ID}_" + "s" * 43,
        "tsk_NOTHEX0123456789_" + "s" * 43,
        f"tsk_{ID}_" + "s" * 300,
    ],
)
def test_malformed_tokens_are_not_parsed(text: str) -> None:
    """Anything not shaped like a Treasurer token is refused before any lookup."""
    assert parse_token(text) is None


def test_secrets_compare_by_hash() -> None:
    """Only the SHA-256 of a secret is kept; the right secret matches, another does not."""
    stored = hash_secret("correct horse")
    assert len(stored) == 64 and "correct" not in stored
    assert secret_matches("correct horse", stored)
    assert not secret_matches("correct horsf", stored)


def test_approver_keys_are_normalized() -> None:
    """Ed25519 keys in hex or base64 become lower-case hex; EVM addresses lower-case."""
    raw = bytes(range(32))
    assert normalize_public_key(ApproverKind.ED25519, raw.hex().upper()) == raw.hex()
    assert normalize_public_key(ApproverKind.ED25519, base64.b64encode(raw).decode()) == raw.hex()
    evm = "0x" + "Aa" * 20
    assert normalize_public_key(ApproverKind.EVM, evm) == evm.lower()
    for kind, bad in [(ApproverKind.ED25519, "abcd"), (ApproverKind.EVM, "0x1234")]:
        with pytest.raises(InvalidRequest):
            normalize_public_key(kind, bad)


def test_session_lifetimes_are_bounded() -> None:
    """A day by default, never under a minute or over ninety days."""
    assert session_ttl(None) == 86_400
    assert session_ttl(1) == MIN_SESSION_TTL_S
    assert session_ttl(10**9) == MAX_SESSION_TTL_S


def test_the_limiter_blocks_after_n_failures_and_slides(clock: FakeClock) -> None:
    """Three failures in ten seconds block; the block ends when the oldest leaves the window."""
    limiter = FailureLimiter(clock, max_failures=3, window_s=10)
    assert not limiter.record_failure("1.2.3.4")
    clock.advance(seconds=4)
    assert not limiter.record_failure("1.2.3.4")
    assert limiter.record_failure("1.2.3.4")
    with pytest.raises(SourceBlocked) as blocked:
        limiter.check("1.2.3.4")
    assert blocked.value.retry_after_s == 6 and blocked.value.code == "rate_limited"
    limiter.check("5.6.7.8")
    clock.advance(seconds=6)
    limiter.check("1.2.3.4")


def test_the_limiter_forgets_the_oldest_sources_first(clock: FakeClock) -> None:
    """Memory is bounded: beyond max_sources the least recently failing source is dropped."""
    limiter = FailureLimiter(clock, max_failures=1, window_s=60, max_sources=2)
    for source in ("a", "b", "c"):
        limiter.record_failure(source)
    assert limiter.retry_after_s("a") is None
    assert limiter.retry_after_s("c") is not None


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.ADMIN, set(Permission) - {Permission.SPEND}),
        (Role.FINANCE, {Permission.READ, Permission.REPORT, Permission.FREEZE, Permission.APPROVE}),
        (Role.AUDITOR, {Permission.READ, Permission.REPORT}),
    ],
)
def test_role_permissions(role: Role, allowed: set[Permission]) -> None:
    """Each role holds exactly its permissions; an auditor may not use any write method."""
    principal = Principal(PrincipalKind.KEY, ID, role=role)
    for permission in Permission:
        if permission in allowed:
            require(principal, permission)
        else:
            with pytest.raises(Forbidden):
                require(principal, permission)
    if role is Role.AUDITOR:
        with pytest.raises(Forbidden):
            require_method(principal, "POST")
    require_method(principal, "GET")


@pytest.fixture
def store(tmp_path: Path) -> SqlCredentialStore:
    """A migrated SQLite credential store."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    migrate(url)
    return SqlCredentialStore(open_database(url))


def test_authentication_reads_the_store_every_time(
    store: SqlCredentialStore, clock: FakeClock
) -> None:
    """A key works until revoked; a rotated session's old token fails at once."""
    auth = Authenticator(store, clock, FailureLimiter(clock, max_failures=100))
    admin = CredentialAdmin(store, clock)
    key, token = create_admin_key(store, "root", "admin", now=clock.now())
    assert auth.authenticate(f"Bearer {token}", "src").role is Role.ADMIN
    session, old = admin.create_session("agent_a", "s", None, "test")
    assert auth.authenticate(f"Bearer {old}", "src").agent_id == "agent_a"
    _new, new = admin.rotate_session("agent_a", session.id, None, "test")
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {old}", "src")
    assert auth.authenticate(f"bearer {new}", "src").agent_id == "agent_a"
    clock.advance(seconds=86_400)
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {new}", "src")
    assert store.get_admin_key(key.id) == key


def test_rotating_a_revoked_session_changes_nothing(
    store: SqlCredentialStore, clock: FakeClock
) -> None:
    """Rotation is guarded on the old session being active: no successor is stored otherwise."""
    admin = CredentialAdmin(store, clock)
    session, _token = admin.create_session("agent_a", "s", 3600, "test")
    admin.revoke_session("agent_a", session.id, "test")
    successor, _ = new_session("agent_a", "s", 3600, clock.now())
    audit = AuditRecord("session.rotated", "test", "agent:agent_a", {})
    assert not store.rotate_session(session.id, successor, audit, clock.now())
    assert [s.id for s in store.list_sessions("agent_a", None, 10)] == [session.id]
    with pytest.raises(InvalidState):
        admin.rotate_session("agent_a", session.id, None, "test")
