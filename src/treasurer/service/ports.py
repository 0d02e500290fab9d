"""The ports: Protocols for everything the use cases need from the outside world.

Adapters implement them (``adapters/sql`` for the store, ``adapters/clock`` for time); tests
may pass fakes. Nothing in ``service`` imports a concrete adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from treasurer.domain.authorization import Authorization, AuthorizationLine
from treasurer.domain.budgets import BudgetBalance, BudgetClaim
from treasurer.domain.config import OrgConfig
from treasurer.domain.facts import PriceQuote
from treasurer.domain.org import AgentStatus, Scope
from treasurer.domain.payment import UNFINISHED_STATES, Notification, Payment, PaymentState
from treasurer.domain.plan import Plan


class Clock(Protocol):
    """Time, injected so tests move it instead of sleeping."""

    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An event to write in the same transaction as the change it records."""

    kind: str
    actor: str
    subject: str
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """Result of :meth:`Store.reserve`.

    ``authorization`` is the stored row (the new one, or — for an idempotent retry — the first
    one, with ``replayed`` set). ``failed_key`` names the first balance row whose conditional
    update did not match (nothing was written in that case). ``balances`` are the rows' values
    after the reservation, for headroom reporting.
    """

    authorization: Authorization | None
    replayed: bool = False
    failed_key: str | None = None
    balances: dict[str, BudgetBalance] | None = None


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group of a spend aggregation (captured and still-reserved USD, with counts)."""

    group: str
    captured_usd_micros: int
    pending_usd_micros: int
    captured_count: int
    pending_count: int
    #: Captured amount per asset: (asset id, base units, decimals), sorted by asset.
    captured_amounts: tuple[tuple[str, int, int | None], ...] = ()


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Recorded spend (captured, plus still reserved) of one scope in a time range.

    ``column`` is ``wallet_id``, ``agent_id``, ``department_id`` or ``None`` (the whole org);
    ``ids`` the values it may take; ``subject`` a recipient for counterparty limits.
    """

    key: str
    column: str | None
    ids: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    subject: str = ""


@dataclass(frozen=True, slots=True)
class OpenAuthorization:
    """An authorization that still reserves (pending, delayed, awaiting approval), with the
    custodial payment behind it, if any, and that payment's state: what a decommission must
    release, cancel, or leave to finish (a payment already on its way to the chain)."""

    id: str
    state: str
    payment_id: str | None = None
    payment_state: str | None = None


class Store(Protocol):
    """Persistence of config, balances, authorizations and audit events.

    Every method is one short transaction. ``reserve`` follows ARCHITECTURE.md "Budgets under
    concurrency": conditional updates in the claims' lock order, all or nothing.
    """

    def migrate(self) -> None: ...

    def close(self) -> None: ...

    # -- configuration --------------------------------------------------------------------
    def config_version(self) -> int: ...

    def load_config(self) -> OrgConfig | None: ...

    def load_config_versioned(self) -> tuple[int, OrgConfig | None]: ...

    def apply_plan(
        self,
        plan: Plan,
        audit: Sequence[AuditRecord],
        now: datetime,
        expected_version: int | None = None,
    ) -> int:
        """Write a plan; raise ``Conflict(code="config_changed")`` if the config version is no
        longer ``expected_version`` (another writer got there first)."""
        ...

    def set_price(
        self, asset_id: str, quote: PriceQuote, audit: AuditRecord, now: datetime
    ) -> None: ...

    def set_freeze(
        self, scope: Scope, frozen: bool, reason: str, actor: str, audit: AuditRecord, now: datetime
    ) -> bool: ...

    def set_agent_status(
        self, agent_id: str, status: AgentStatus, audit: AuditRecord, now: datetime
    ) -> bool: ...

    def policy_history(self, policy_id: str) -> list[dict[str, object]]: ...

    def price(self, asset_id: str) -> PriceQuote | None: ...

    # -- budgets and authorizations -------------------------------------------------------
    def balances(
        self, keys: Sequence[str], rolling_cutoffs: Mapping[str, int] | None = None
    ) -> dict[str, BudgetBalance]:
        """Balance rows by key; ``rolling_cutoffs`` (key → first bucket still in the window)
        leaves out rolling spend that has expired."""
        ...

    def spent_by_wallet(self, keys: Sequence[str]) -> dict[str, tuple[tuple[str, int], ...]]: ...

    def recorded_usage(self, queries: Sequence[UsageQuery]) -> dict[str, BudgetBalance]:
        """Spend measured from authorizations (for shadow budgets, which reserve nothing)."""
        ...

    def find_by_idempotency_key(self, agent_id: str, key: str) -> Authorization | None: ...

    def reserve(
        self,
        authorization: Authorization,
        claims: Sequence[BudgetClaim],
        audit: AuditRecord,
        now: datetime,
    ) -> ReserveOutcome: ...

    def record_denial(
        self, authorization: Authorization, audit: AuditRecord, now: datetime
    ) -> ReserveOutcome: ...

    def get_authorization(self, authorization_id: str) -> Authorization | None: ...

    def authorization_lines(self, authorization_id: str) -> list[AuthorizationLine]: ...

    def capture(
        self,
        authorization_id: str,
        amount: int,
        usd_micros: int,
        now: datetime,
        audit: AuditRecord,
        tx_hash: str | None = None,
    ) -> Authorization | None: ...

    def release(
        self,
        authorization_id: str,
        new_state: str,
        now: datetime,
        audit: AuditRecord,
    ) -> Authorization | None: ...

    def hold(
        self, authorization_id: str, until: datetime, now: datetime, audit: AuditRecord
    ) -> Authorization | None:
        """Extend a pending, unexpired authorization to ``until``; None otherwise."""
        ...

    def promote(
        self,
        authorization_id: str,
        from_state: str,
        expires_at: datetime,
        now: datetime,
        audit: AuditRecord,
    ) -> Authorization | None:
        """Move a ``delayed`` or ``pending_approval`` authorization to ``pending`` (capturable
        until ``expires_at``), keeping its reservation; None unless it was in ``from_state``."""
        ...

    def stale_authorizations(self, now: datetime, limit: int) -> list[str]:
        """Reserving authorizations (pending, delayed, awaiting approval) past their expiry."""
        ...

    def due_delayed(self, now: datetime, limit: int) -> list[str]:
        """Delayed authorizations whose delay has passed, oldest release first."""
        ...

    def open_authorizations(self, agent_id: str, limit: int) -> list[OpenAuthorization]:
        """The agent's authorizations that still reserve, oldest first (see
        :class:`OpenAuthorization`)."""
        ...

    def recorded_authorizations(
        self, since: datetime, until: datetime, limit: int, after: tuple[datetime, str] | None
    ) -> list[Authorization]:
        """Authorizations created in [since, until), every state, in (created_at, id) order,
        starting after the ``after`` cursor: what backtesting replays."""
        ...

    # -- reporting ------------------------------------------------------------------------
    def spend(
        self,
        group_by: str,
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, str],
    ) -> list[SpendRow]: ...

    def spend_authorizations(
        self,
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, str],
        departments: Sequence[str] | None,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[Authorization]:
        """Exactly the authorizations :meth:`spend` sums (created in [since, until), captured
        or still reserving), in (created_at, id) order after the ``after`` cursor. ``filters``
        as for spend; ``departments``: only these (None: any), for department-scoped keys."""
        ...

    def audit_events(self, limit: int, after_id: int = 0) -> list[dict[str, object]]:
        """Events with ``id > after_id`` in id order: ``id``, ``at``, ``kind``, ``actor``,
        ``subject``, ``payload`` and the chain position ``seq``, ``hash``, ``prev_hash``
        (None until the event is sealed)."""
        ...


class PaymentStore(Protocol):
    """Persistence of custodial payments and the notification outbox.

    Every write is one short transaction; ``update`` is guarded on the state the payment
    leaves, so each transition happens once however many workers race for it.
    """

    def insert(self, payment: Payment) -> tuple[Payment, bool]:
        """Insert ``payment``; if its (agent, idempotency key) exists, return that one and
        ``False`` instead (the first attempt won)."""
        ...

    def get(self, payment_id: str) -> Payment | None: ...

    def find_by_idempotency_key(self, agent_id: str, key: str) -> Payment | None: ...

    def update(
        self,
        payment: Payment,
        expected: PaymentState,
        notification: Notification | None = None,
    ) -> bool:
        """Write ``payment``'s mutable fields if the stored state is still ``expected``, with
        ``notification`` in the same transaction; ``False`` when another writer moved it."""
        ...

    def unfinished(
        self, limit: int, states: frozenset[PaymentState] = UNFINISHED_STATES
    ) -> list[Payment]:
        """Oldest first: payments in ``states`` (default ``created`` and ``broadcast``)."""
        ...

    def notifications(self, limit: int, after_id: int = 0) -> list[dict[str, object]]:
        """Outbox rows in id order (delivery comes later; tests and reports read them)."""
        ...

    def list_page(
        self,
        limit: int,
        *,
        agents: Sequence[str] | None = None,
        wallet: str | None = None,
        state: PaymentState | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[Payment]:
        """Newest first (creation time, then id): up to ``limit`` payments matching every
        filter given. ``agents`` None means any agent and an empty sequence none (a caller who
        may see no agent sees nothing). ``before`` is the (created_at, id) of the previous
        page's last payment, so a page never repeats or skips a row as new payments arrive."""
        ...
