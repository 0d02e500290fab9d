"""Credentials: the store port, authentication, admin keys, agent sessions and approvers.

Authentication reads the credential from the store on every request: revoking or rotating a
session takes effect on the very next request, on every node, because nothing about a
credential's validity is cached. Every failed authentication is counted per source
(:mod:`~treasurer.service.auth_limiter`) and written to the audit trail as ``auth.failed`` with
the source and a reason, never the token. Plaintext tokens exist only in the return value of the
call that creates them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NoReturn, Protocol

from treasurer.domain.credentials import (
    ADMIN_KEY_PREFIX,
    SESSION_PREFIX,
    AdminKey,
    AgentSession,
    Approver,
    ParsedToken,
    Principal,
    PrincipalKind,
    Role,
    format_token,
    hash_secret,
    parse_token,
    secret_matches,
)
from treasurer.domain.errors import Unauthenticated
from treasurer.service.auth_limiter import FailureLimiter
from treasurer.service.ports import AuditRecord, Clock

#: Agent sessions live a day unless asked otherwise, never less than a minute or beyond 90 days.
DEFAULT_SESSION_TTL_S = 86_400
MIN_SESSION_TTL_S = 60
MAX_SESSION_TTL_S = 90 * 86_400
_DUMMY_HASH = hash_secret("no credential has this secret")


class CredentialStore(Protocol):
    """Persistence of admin keys, agent sessions and approvers; each method one transaction."""

    def add_admin_key(self, key: AdminKey, audit: AuditRecord, now: datetime) -> None: ...

    def get_admin_key(self, key_id: str) -> AdminKey | None: ...

    def list_admin_keys(self, after: str | None, limit: int) -> list[AdminKey]: ...

    def count_active_admins(self) -> int: ...

    def revoke_admin_key(self, key_id: str, audit: AuditRecord, now: datetime) -> bool: ...

    def add_session(self, session: AgentSession, audit: AuditRecord, now: datetime) -> None: ...

    def get_session(self, session_id: str) -> AgentSession | None: ...

    def list_sessions(self, agent_id: str, after: str | None, limit: int) -> list[AgentSession]: ...

    def revoke_session(self, session_id: str, audit: AuditRecord, now: datetime) -> bool: ...

    def rotate_session(
        self, old_id: str, new: AgentSession, audit: AuditRecord, now: datetime
    ) -> bool: ...

    def revoke_agent_sessions(self, agent_id: str, audit: AuditRecord, now: datetime) -> int: ...

    def add_approver(self, approver: Approver, audit: AuditRecord, now: datetime) -> None: ...

    def get_approver(self, approver_id: str) -> Approver | None: ...

    def list_approvers(self, after: str | None, limit: int) -> list[Approver]: ...

    def update_approver(self, approver: Approver, audit: AuditRecord, now: datetime) -> bool: ...

    def revoke_approver(self, approver_id: str, audit: AuditRecord, now: datetime) -> bool: ...

    def record_audit(self, records: Sequence[AuditRecord], now: datetime) -> None: ...


def new_credential_id() -> str:
    """16 hex digits: unique enough for a primary key, and free of the token separator."""
    return secrets.token_hex(8)


def new_secret() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def create_admin_key(
    store: CredentialStore,
    name: str,
    role: Role | str,
    department: str | None = None,
    *,
    now: datetime,
    actor: str = "system",
) -> tuple[AdminKey, str]:
    """Store a new admin key and return it with its plaintext token (shown once, never stored).

    ``treasurer init`` uses this for the first key. The caller checks that ``department``
    exists; the store only records it.
    """
    ident, secret = new_credential_id(), new_secret()
    key = AdminKey(
        id=ident,
        name=name,
        role=Role(role),
        department_id=department,
        secret_hash=hash_secret(secret),
        created_at=now,
    )
    audit = AuditRecord(
        "admin_key.created",
        actor,
        f"admin_key:{ident}",
        {"name": name, "role": key.role.value, "department": department},
    )
    store.add_admin_key(key, audit, now)
    return key, format_token(ADMIN_KEY_PREFIX, ident, secret)


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or refuses it."""

    def __init__(self, store: CredentialStore, clock: Clock, limiter: FailureLimiter) -> None:
        self.store = store
        self.clock = clock
        self.limiter = limiter

    def authenticate(self, header: str | None, source: str) -> Principal:
        """Check the credential; raise ``rate_limited`` or ``unauthenticated`` when it fails."""
        self.limiter.check(source)
        if not header:
            self._fail(source, "missing_credential", None, "send Authorization: Bearer <token>")
        scheme, _, value = (header or "").partition(" ")
        parsed = parse_token(value.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            self._fail(source, "malformed_credential", None, "the credential is not a token")
        if parsed.prefix == ADMIN_KEY_PREFIX:
            return self._admin_key(parsed, source)
        return self._session(parsed, source)

    def _admin_key(self, parsed: ParsedToken, source: str) -> Principal:
        key = self.store.get_admin_key(parsed.id)
        if not secret_matches(parsed.secret, key.secret_hash if key else _DUMMY_HASH):
            self._fail(source, "wrong_credential", parsed.id, "the credential is not valid")
        assert key is not None
        if not key.active:
            self._fail(source, "revoked_credential", key.id, "this admin key was revoked")
        return Principal(PrincipalKind.KEY, key.id, role=key.role, department_id=key.department_id)

    def _session(self, parsed: ParsedToken, source: str) -> Principal:
        session = self.store.get_session(parsed.id)
        stored = session.secret_hash if session else _DUMMY_HASH
        if not secret_matches(parsed.secret, stored):
            self._fail(source, "wrong_credential", parsed.id, "the credential is not valid")
        assert session is not None
        if session.revoked_at is not None:
            self._fail(source, "revoked_session", session.id, "this session was revoked")
        if not session.valid_at(self.clock.now()):
            self._fail(source, "expired_session", session.id, "this session has expired")
        return Principal(PrincipalKind.AGENT, session.id, agent_id=session.agent_id)

    def _fail(self, source: str, reason: str, credential_id: str | None, detail: str) -> NoReturn:
        blocked_now = self.limiter.record_failure(source)
        payload: dict[str, object] = {"source": source, "reason": reason}
        if credential_id is not None:
            payload["credential_id"] = credential_id
        records = [AuditRecord("auth.failed", "anonymous", f"source:{source}", payload)]
        if blocked_now:
            limits = {"max_failures": self.limiter.max_failures, "window_s": self.limiter.window_s}
            records.append(
                AuditRecord("auth.rate_limited", "system", f"source:{source}", {**limits})
            )
        self.store.record_audit(records, self.clock.now())
        raise Unauthenticated(f"authentication failed: {detail}")


def session_ttl(ttl_s: int | None) -> int:
    """A session lifetime within bounds (a day by default)."""
    value = DEFAULT_SESSION_TTL_S if ttl_s is None else ttl_s
    return max(MIN_SESSION_TTL_S, min(MAX_SESSION_TTL_S, value))


def new_session(
    agent_id: str, name: str, ttl_s: int | None, now: datetime
) -> tuple[AgentSession, str]:
    """A fresh session value and its plaintext token (not stored yet)."""
    ident, secret = new_credential_id(), new_secret()
    session = AgentSession(
        id=ident,
        agent_id=agent_id,
        name=name,
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + timedelta(seconds=session_ttl(ttl_s)),
    )
    return session, format_token(SESSION_PREFIX, ident, secret)


def rotated(old: AgentSession, ttl_s: int | None, now: datetime) -> tuple[AgentSession, str]:
    """The successor of ``old``: same agent and name, a new secret and a fresh expiry."""
    keep_ttl = int((old.expires_at - old.created_at).total_seconds())
    return new_session(old.agent_id, old.name, ttl_s or keep_ttl, now)
