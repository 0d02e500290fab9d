"""``SqlCredentialStore``: admin keys, agent sessions and approvers in SQL.

It shares the :class:`~treasurer.adapters.sql.db.Database` of the main store (one pool, one
SQLite writer) and writes audit events into the same ``audit_events`` table, in the same
transaction as the change they describe. Reads are never cached: a revoked session must fail on
the very next request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from treasurer.adapters.sql.codec import dumps, from_us, from_us_required, loads, to_us
from treasurer.adapters.sql.config_store import write_audit
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable
from treasurer.domain.credentials import AdminKey, AgentSession, Approver, ApproverKind, Role
from treasurer.domain.errors import Conflict, StoreUnavailable
from treasurer.service.ports import AuditRecord

T = TypeVar("T")

_KEY_COLUMNS = "id, name, role, department_id, secret_hash, created_us, revoked_us"
_SESSION_COLUMNS = (
    "id, agent_id, name, secret_hash, created_us, expires_us, revoked_us, replaced_by"
)
_APPROVER_COLUMNS = "id, name, kind, public_key, group_names, created_us, revoked_us"
_INSERT_SESSION = (
    f"INSERT INTO agent_sessions ({_SESSION_COLUMNS}) VALUES "
    "(:id, :agent_id, :name, :secret_hash, :created_us, :expires_us, NULL, NULL)"
)


def _key(row: tuple[Any, ...]) -> AdminKey:
    return AdminKey(
        id=row[0],
        name=row[1],
        role=Role(row[2]),
        department_id=row[3],
        secret_hash=row[4],
        created_at=from_us_required(row[5]),
        revoked_at=from_us(row[6]),
    )


def _session(row: tuple[Any, ...]) -> AgentSession:
    return AgentSession(
        id=row[0],
        agent_id=row[1],
        name=row[2],
        secret_hash=row[3],
        created_at=from_us_required(row[4]),
        expires_at=from_us_required(row[5]),
        revoked_at=from_us(row[6]),
        replaced_by=row[7],
    )


def _approver(row: tuple[Any, ...]) -> Approver:
    return Approver(
        id=row[0],
        name=row[1],
        kind=ApproverKind(row[2]),
        public_key=row[3],
        groups=tuple(loads(row[4])),
        created_at=from_us_required(row[5]),
        revoked_at=from_us(row[6]),
    )


def _session_params(session: AgentSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "agent_id": session.agent_id,
        "name": session.name,
        "secret_hash": session.secret_hash,
        "created_us": to_us(session.created_at),
        "expires_us": to_us(session.expires_at),
    }


class SqlCredentialStore:
    """The :class:`~treasurer.service.credentials.CredentialStore` over SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def _run(self, work: Callable[[Tx], T], *, write: bool = True) -> T:
        # Reads here are single statements, atomic on their own: no BEGIN/COMMIT round trips
        # on the authentication path of every request.
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write, atomic=write)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    def _write(self, sql: str, params: dict[str, Any], audit: AuditRecord, now: datetime) -> int:
        """One guarded statement plus its audit event (only when something changed)."""

        def work(tx: Tx) -> int:
            changed = tx.execute(sql, params)
            if changed:
                write_audit(tx, audit, now)
            return changed

        return self._run(work)

    def _insert(self, sql: str, params: dict[str, Any], audit: AuditRecord, now: datetime) -> None:
        try:
            self._write(sql, params, audit, now)
        except Exception as exc:
            if self.db.is_unique_violation(exc):
                raise Conflict(f"{params['id']!r} already exists", field="id") from None
            raise

    def record_audit(self, records: Sequence[AuditRecord], now: datetime) -> None:
        def work(tx: Tx) -> None:
            for record in records:
                write_audit(tx, record, now)

        self._run(work)

    # -- admin keys -----------------------------------------------------------------------
    def add_admin_key(self, key: AdminKey, audit: AuditRecord, now: datetime) -> None:
        params = {
            "id": key.id,
            "name": key.name,
            "role": key.role.value,
            "department_id": key.department_id,
            "secret_hash": key.secret_hash,
            "created_us": to_us(key.created_at),
        }
        sql = (
            f"INSERT INTO admin_keys ({_KEY_COLUMNS}) VALUES (:id, :name, :role, "
            ":department_id, :secret_hash, :created_us, NULL)"
        )
        self._insert(sql, params, audit, now)

    def get_admin_key(self, key_id: str) -> AdminKey | None:
        sql = f"SELECT {_KEY_COLUMNS} FROM admin_keys WHERE id = :id"
        row = self._run(lambda tx: tx.one(sql, {"id": key_id}), write=False)
        return _key(row) if row else None

    def list_admin_keys(self, after: str | None, limit: int) -> list[AdminKey]:
        sql = f"SELECT {_KEY_COLUMNS} FROM admin_keys WHERE id > :after ORDER BY id LIMIT :limit"
        rows = self._run(
            lambda tx: tx.all(sql, {"after": after or "", "limit": limit}), write=False
        )
        return [_key(r) for r in rows]

    def count_active_admins(self) -> int:
        sql = (
            "SELECT COUNT(*) FROM admin_keys WHERE role = 'admin' AND department_id IS NULL "
            "AND revoked_us IS NULL"
        )
        row = self._run(lambda tx: tx.one(sql), write=False)
        return int(row[0]) if row else 0

    def revoke_admin_key(self, key_id: str, audit: AuditRecord, now: datetime) -> bool:
        sql = "UPDATE admin_keys SET revoked_us = :now WHERE id = :id AND revoked_us IS NULL"
        return self._write(sql, {"now": to_us(now), "id": key_id}, audit, now) > 0

    # -- agent sessions -------------------------------------------------------------------
    def add_session(self, session: AgentSession, audit: AuditRecord, now: datetime) -> None:
        self._insert(_INSERT_SESSION, _session_params(session), audit, now)

    def get_session(self, session_id: str) -> AgentSession | None:
        sql = f"SELECT {_SESSION_COLUMNS} FROM agent_sessions WHERE id = :id"
        row = self._run(lambda tx: tx.one(sql, {"id": session_id}), write=False)
        return _session(row) if row else None

    def list_sessions(self, agent_id: str, after: str | None, limit: int) -> list[AgentSession]:
        sql = (
            f"SELECT {_SESSION_COLUMNS} FROM agent_sessions WHERE agent_id = :agent "
            "AND id > :after ORDER BY id LIMIT :limit"
        )
        params = {"agent": agent_id, "after": after or "", "limit": limit}
        return [_session(r) for r in self._run(lambda tx: tx.all(sql, params), write=False)]

    def revoke_session(self, session_id: str, audit: AuditRecord, now: datetime) -> bool:
        sql = "UPDATE agent_sessions SET revoked_us = :now WHERE id = :id AND revoked_us IS NULL"
        return self._write(sql, {"now": to_us(now), "id": session_id}, audit, now) > 0

    def rotate_session(
        self, old_id: str, new: AgentSession, audit: AuditRecord, now: datetime
    ) -> bool:
        """Revoke ``old_id`` (only if still active) and insert ``new``, all or nothing."""

        def work(tx: Tx) -> bool:
            changed = tx.execute(
                "UPDATE agent_sessions SET revoked_us = :now, replaced_by = :new "
                "WHERE id = :id AND revoked_us IS NULL AND expires_us > :now",
                {"now": to_us(now), "new": new.id, "id": old_id},
            )
            if changed != 1:
                return False
            tx.execute(_INSERT_SESSION, _session_params(new))
            write_audit(tx, audit, now)
            return True

        return self._run(work)

    def revoke_agent_sessions(self, agent_id: str, audit: AuditRecord, now: datetime) -> int:
        sql = (
            "UPDATE agent_sessions SET revoked_us = :now "
            "WHERE agent_id = :agent AND revoked_us IS NULL"
        )
        return self._write(sql, {"now": to_us(now), "agent": agent_id}, audit, now)

    # -- approvers ------------------------------------------------------------------------
    def add_approver(self, approver: Approver, audit: AuditRecord, now: datetime) -> None:
        params = {
            "id": approver.id,
            "name": approver.name,
            "kind": approver.kind.value,
            "public_key": approver.public_key,
            "groups": dumps(list(approver.groups)),
            "created_us": to_us(approver.created_at),
        }
        sql = (
            f"INSERT INTO approvers ({_APPROVER_COLUMNS}) VALUES (:id, :name, :kind, "
            ":public_key, :groups, :created_us, NULL)"
        )
        self._insert(sql, params, audit, now)

    def get_approver(self, approver_id: str) -> Approver | None:
        sql = f"SELECT {_APPROVER_COLUMNS} FROM approvers WHERE id = :id"
        row = self._run(lambda tx: tx.one(sql, {"id": approver_id}), write=False)
        return _approver(row) if row else None

    def list_approvers(self, after: str | None, limit: int) -> list[Approver]:
        sql = (
            f"SELECT {_APPROVER_COLUMNS} FROM approvers WHERE id > :after AND revoked_us IS NULL "
            "ORDER BY id LIMIT :limit"
        )
        rows = self._run(
            lambda tx: tx.all(sql, {"after": after or "", "limit": limit}), write=False
        )
        return [_approver(r) for r in rows]

    def update_approver(self, approver: Approver, audit: AuditRecord, now: datetime) -> bool:
        sql = (
            "UPDATE approvers SET name = :name, group_names = :groups "
            "WHERE id = :id AND revoked_us IS NULL"
        )
        params = {"name": approver.name, "groups": dumps(list(approver.groups)), "id": approver.id}
        return self._write(sql, params, audit, now) > 0

    def revoke_approver(self, approver_id: str, audit: AuditRecord, now: datetime) -> bool:
        sql = "UPDATE approvers SET revoked_us = :now WHERE id = :id AND revoked_us IS NULL"
        return self._write(sql, {"now": to_us(now), "id": approver_id}, audit, now) > 0
