"""Decommissioning an agent: the kill switch, in one idempotent step (SPEC section 5).

:meth:`Lifecycle.decommission` does, in this order:

1. mark the agent ``decommissioned``. From this write on, every decision denies it
   (``agent_decommissioned``) and the pipeline's freeze re-check refuses to sign for it, on
   every node (the write bumps the config version): nothing new can start;
2. revoke all its sessions (the next request with any of its tokens fails);
3. freeze every wallet it owns, on every chain and vendor (custodial and external alike);
4. cancel its queued payments (delay and approval tiers), releasing their reservations;
5. void every other authorization of it that still reserves (``pending``, ``delayed``,
   ``pending_approval``): an external integration can no longer capture it.

Steps 2-5 follow the org file's ``on_decommission`` (``revoke_sessions``, ``freeze_wallets``,
``cancel_pending``; all three unless the org says otherwise); step 1 always happens.

**What it cannot undo.** A payment already broadcast is on the chain and cannot be recalled:
its authorization is left alone, so the confirmer captures it as usual and the budgets count
what really left the wallet. The same goes for a payment in ``created`` (being signed right
now by the pipeline or the queue): the pipeline re-checks the freeze just before signing, so
one not yet signed fails on its own and releases its reservation; one signed in the instant
before step 1 is on its way. Both are counted as ``payments_in_flight``.

**Idempotent and crash-safe.** Every step is itself idempotent, so calling it again finishes
whatever a crash interrupted and otherwise changes nothing (all counts 0). Each step is
audited in its own transaction (``agent.status``, ``session.revoked_all``, ``freeze.set``,
``payment.cancelled``, ``authorization.voided``), and the call ends with one
``agent.decommission`` event that carries the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from treasurer.domain.authorization import AuthState
from treasurer.domain.errors import InvalidState, NotFound
from treasurer.domain.org import AgentStatus, Scope, ScopeKind
from treasurer.domain.payment import PaymentState
from treasurer.service.admin import Governance
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.payments_cancel import cancel_payment
from treasurer.service.ports import AuditRecord, OpenAuthorization, PaymentStore

#: Most open authorizations one decommission releases (an agent has few; a bound on work).
MAX_OPEN_AUTHORIZATIONS = 10_000
_IN_FLIGHT = frozenset({PaymentState.CREATED.value, PaymentState.BROADCAST.value})
_WAITING = frozenset({PaymentState.QUEUED.value, PaymentState.CANCELLED.value})


@dataclass(frozen=True, slots=True)
class DecommissionReport:
    """What one decommission did; a repeated call reports zeros (nothing left to do)."""

    agent: str
    status: str
    status_changed: bool
    sessions_revoked: int
    wallets_frozen: int
    payments_cancelled: int
    authorizations_voided: int
    payments_in_flight: int


class Lifecycle:
    """Agent lifecycle use cases over governance, credentials and (when there are custodial
    payments) the payment store."""

    def __init__(
        self,
        governance: Governance,
        credentials: CredentialAdmin,
        payments: PaymentStore | None = None,
    ) -> None:
        self.governance = governance
        self.credentials = credentials
        self.payments = payments

    def decommission(self, agent_id: str, *, actor: str) -> DecommissionReport:
        """Decommission ``agent_id`` (see the module docstring)."""
        gov = self.governance
        config = gov.cache.get()
        if agent_id not in config.agents:
            raise NotFound(f"agent {agent_id!r} does not exist", field="agent")
        actions = set(config.settings.on_decommission)
        changed = gov.set_agent_status(agent_id, AgentStatus.DECOMMISSIONED.value, actor=actor)
        revoked = 0
        if "revoke_sessions" in actions:
            revoked = self.credentials.revoke_all_sessions(agent_id, actor)
        frozen = 0
        if "freeze_wallets" in actions:
            frozen = self._freeze_wallets(agent_id, actor)
        cancelled = voided = in_flight = 0
        for open_auth in gov.store.open_authorizations(agent_id, MAX_OPEN_AUTHORIZATIONS):
            if open_auth.payment_state in _IN_FLIGHT:
                in_flight += 1
            elif "cancel_pending" in actions:
                done = self._release(open_auth, actor)
                cancelled += done == "cancelled"
                voided += done == "voided"
        report = DecommissionReport(
            agent_id,
            AgentStatus.DECOMMISSIONED.value,
            changed,
            revoked,
            frozen,
            cancelled,
            voided,
            in_flight,
        )
        self._audit(report, actor)
        return report

    def _freeze_wallets(self, agent_id: str, actor: str) -> int:
        config = self.governance.cache.get()
        owned = sorted(w.id for w in config.wallets.values() if w.agent_id == agent_id)
        frozen = 0
        for wallet_id in owned:
            if Scope(ScopeKind.WALLET, wallet_id) in config.frozen:
                continue
            reason = f"agent {agent_id} decommissioned"
            frozen += self.governance.freeze(f"wallet:{wallet_id}", reason=reason, actor=actor)
        return frozen

    def _release(self, open_auth: OpenAuthorization, actor: str) -> str | None:
        """Cancel the queued payment behind ``open_auth`` (releasing it), or void it."""
        gov = self.governance
        waiting = open_auth.payment_state in _WAITING
        if open_auth.payment_id is not None and self.payments is not None and waiting:
            try:
                cancel_payment(gov, self.payments, open_auth.payment_id, actor=actor)
            except InvalidState:
                return None  # claimed by the executor meanwhile: in flight, it re-checks
            return "cancelled"
        # A governance-mode authorization (or, on a node without a payment store, a queued
        # payment's: the queue executor then fails that payment once it sees the release).
        try:
            done = gov.void(open_auth.id, reason="agent decommissioned", actor=actor)
        except InvalidState:
            return None  # released meanwhile (captured, expired)
        return "voided" if done.state is AuthState.VOIDED else None

    def _audit(self, report: DecommissionReport, actor: str) -> None:
        payload: dict[str, object] = {
            "agent": report.agent,
            "status_changed": report.status_changed,
            "sessions_revoked": report.sessions_revoked,
            "wallets_frozen": report.wallets_frozen,
            "payments_cancelled": report.payments_cancelled,
            "authorizations_voided": report.authorizations_voided,
            "payments_in_flight": report.payments_in_flight,
        }
        record = AuditRecord("agent.decommission", actor, f"agent:{report.agent}", payload)
        self.credentials.store.record_audit([record], self.governance.clock.now())
