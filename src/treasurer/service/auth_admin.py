"""Managing credentials: admin keys, agent sessions (create, rotate, revoke) and approvers.

Every change is written with its audit event in one transaction. Rotation creates the new
session and revokes the old one atomically, so there is never a moment with neither or both
valid beyond the transaction. Approvers are identities only here (id, name, key, groups); their
signed votes belong to the approvals use case.
"""

from __future__ import annotations

from dataclasses import replace

from treasurer.domain.credentials import (
    AdminKey,
    AgentSession,
    Approver,
    ApproverKind,
    Role,
    normalize_public_key,
)
from treasurer.domain.errors import Conflict, InvalidState, NotFound
from treasurer.service.credentials import (
    CredentialStore,
    create_admin_key,
    new_session,
    rotated,
)
from treasurer.service.ports import AuditRecord, Clock


class CredentialAdmin:
    """Use cases over a :class:`CredentialStore`; callers check who may call them."""

    def __init__(self, store: CredentialStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # -- admin keys -----------------------------------------------------------------------
    def create_key(
        self, name: str, role: Role, department: str | None, actor: str
    ) -> tuple[AdminKey, str]:
        return create_admin_key(
            self.store, name, role, department, now=self.clock.now(), actor=actor
        )

    def get_key(self, key_id: str) -> AdminKey:
        key = self.store.get_admin_key(key_id)
        if key is None:
            raise NotFound(f"admin key {key_id!r} does not exist")
        return key

    def revoke_key(self, key_id: str, actor: str) -> AdminKey:
        """Revoke a key; refuses to revoke the last active org-wide admin key (lock-out)."""
        key = self.get_key(key_id)
        if not key.active:
            return key
        org_admin = key.role is Role.ADMIN and key.department_id is None
        if org_admin and self.store.count_active_admins() <= 1:
            raise Conflict(
                "this is the last active org-wide admin key; create another admin key first",
                code="last_admin_key",
            )
        audit = AuditRecord("admin_key.revoked", actor, f"admin_key:{key_id}", {"name": key.name})
        self.store.revoke_admin_key(key_id, audit, self.clock.now())
        return self.get_key(key_id)

    # -- agent sessions -------------------------------------------------------------------
    def create_session(
        self, agent_id: str, name: str, ttl_s: int | None, actor: str
    ) -> tuple[AgentSession, str]:
        now = self.clock.now()
        session, token = new_session(agent_id, name, ttl_s, now)
        audit = AuditRecord(
            "session.created",
            actor,
            f"agent:{agent_id}",
            {"session": session.id, "name": name, "expires_at": session.expires_at.isoformat()},
        )
        self.store.add_session(session, audit, now)
        return session, token

    def get_session(self, agent_id: str, session_id: str) -> AgentSession:
        session = self.store.get_session(session_id)
        if session is None or session.agent_id != agent_id:
            raise NotFound(f"agent {agent_id!r} has no session {session_id!r}")
        return session

    def revoke_session(self, agent_id: str, session_id: str, actor: str) -> AgentSession:
        """Revoke one session; revoking a revoked session returns it unchanged."""
        self.get_session(agent_id, session_id)
        audit = AuditRecord("session.revoked", actor, f"agent:{agent_id}", {"session": session_id})
        self.store.revoke_session(session_id, audit, self.clock.now())
        return self.get_session(agent_id, session_id)

    def rotate_session(
        self, agent_id: str, session_id: str, ttl_s: int | None, actor: str
    ) -> tuple[AgentSession, str]:
        """Create the successor and revoke ``session_id`` in one transaction."""
        old = self.get_session(agent_id, session_id)
        now = self.clock.now()
        if not old.valid_at(now):
            raise InvalidState(
                f"session {session_id} is revoked or expired; create a new session instead",
                code="session_not_active",
            )
        new, token = rotated(old, ttl_s, now)
        audit = AuditRecord(
            "session.rotated",
            actor,
            f"agent:{agent_id}",
            {"session": session_id, "replaced_by": new.id},
        )
        if not self.store.rotate_session(session_id, new, audit, now):
            raise InvalidState(
                f"session {session_id} was revoked meanwhile", code="session_not_active"
            )
        return new, token

    def revoke_all_sessions(self, agent_id: str, actor: str) -> int:
        audit = AuditRecord("session.revoked_all", actor, f"agent:{agent_id}", {})
        return self.store.revoke_agent_sessions(agent_id, audit, self.clock.now())

    # -- approvers ------------------------------------------------------------------------
    def add_approver(
        self,
        approver_id: str,
        name: str,
        kind: ApproverKind,
        public_key: str,
        groups: tuple[str, ...],
        actor: str,
    ) -> Approver:
        if self.store.get_approver(approver_id) is not None:
            raise Conflict(f"approver {approver_id!r} already exists", field="id")
        approver = Approver(
            id=approver_id,
            name=name,
            kind=kind,
            public_key=normalize_public_key(kind, public_key),
            groups=tuple(sorted(set(groups))),
            created_at=self.clock.now(),
        )
        payload: dict[str, object] = {
            "name": name,
            "kind": kind.value,
            "public_key": approver.public_key,
            "groups": list(approver.groups),
        }
        audit = AuditRecord("approver.created", actor, f"approver:{approver_id}", payload)
        self.store.add_approver(approver, audit, self.clock.now())
        return approver

    def get_approver(self, approver_id: str) -> Approver:
        approver = self.store.get_approver(approver_id)
        if approver is None:
            raise NotFound(f"approver {approver_id!r} does not exist")
        return approver

    def update_approver(
        self, approver_id: str, name: str | None, groups: tuple[str, ...] | None, actor: str
    ) -> Approver:
        """Rename or regroup an approver; a new key means a new approver (keeps votes honest)."""
        current = self.get_approver(approver_id)
        if current.revoked_at is not None:
            raise InvalidState(f"approver {approver_id!r} was removed", code="approver_removed")
        updated = replace(
            current,
            name=current.name if name is None else name,
            groups=current.groups if groups is None else tuple(sorted(set(groups))),
        )
        payload: dict[str, object] = {"name": updated.name, "groups": list(updated.groups)}
        audit = AuditRecord("approver.updated", actor, f"approver:{approver_id}", payload)
        self.store.update_approver(updated, audit, self.clock.now())
        return updated

    def revoke_approver(self, approver_id: str, actor: str) -> Approver:
        """Remove an approver (kept, marked revoked, so past votes stay explainable)."""
        self.get_approver(approver_id)
        audit = AuditRecord("approver.removed", actor, f"approver:{approver_id}", {})
        self.store.revoke_approver(approver_id, audit, self.clock.now())
        return self.get_approver(approver_id)
