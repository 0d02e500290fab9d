"""Budget claims and balances: what a spend asks of each covering budget.

Every budget-like policy (``budget``, ``rate_limit``, ``counterparty_limit``) turns a spend into
a :class:`BudgetClaim` on one balance row, keyed by policy, period and (for counterparty
limits) recipient. The store reserves all claims of a spend at once with conditional updates
(``posted + pending + x <= limit``); the decision checks the same claims against a snapshot so
its reasons can state the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from treasurer.domain.money import format_usd
from treasurer.domain.org import SCOPE_LOCK_RANK, Scope
from treasurer.domain.windows import Period, Window, WindowKind

_WINDOW_CODE = {
    WindowKind.DAY: "daily",
    WindowKind.WEEK: "weekly",
    WindowKind.MONTH: "monthly",
    WindowKind.QUARTER: "quarterly",
    WindowKind.YEAR: "yearly",
    WindowKind.ROLLING: "rolling",
    WindowKind.LIFETIME: "lifetime",
    WindowKind.PER_TRANSACTION: "per_transaction",
}


@dataclass(frozen=True, slots=True)
class BudgetClaim:
    """One spend's demand on one balance row (amount in USD micros, and a count of one)."""

    key: str
    policy_id: str
    policy_version: int
    policy_type: str
    scope: Scope
    window: Window
    period: Period
    limit_micros: int | None
    max_count: int | None
    amount_micros: int
    subject: str = ""

    @property
    def lock_order(self) -> tuple[int, str]:
        """Global lock order: narrow scopes first, the org (hottest row) last."""
        return (SCOPE_LOCK_RANK[self.scope.kind], self.key)

    @property
    def is_rolling(self) -> bool:
        return self.window.kind is WindowKind.ROLLING

    def describe(self) -> str:
        """``agent procurement_bot's $1,000.00 daily budget`` — for messages and reports."""
        what = {
            "budget": "budget",
            "rate_limit": "rate limit",
            "counterparty_limit": "counterparty limit",
        }[self.policy_type]
        limit = format_usd(self.limit_micros) if self.limit_micros is not None else ""
        count = f"{self.max_count} transactions " if self.max_count is not None else ""
        head = f"{limit} " if limit else count
        return f"{self.scope.kind.value} {self.scope.id}'s {head}{self.window.adjective} {what}"


def claim_key(policy_id: str, period: Period, subject: str = "") -> str:
    return f"{policy_id}|{period.key}|{subject}"


def window_code(window: Window) -> str:
    """Stable word for reason codes: ``agent_daily_budget_exceeded``."""
    return _WINDOW_CODE[window.kind]


@dataclass(frozen=True, slots=True)
class BudgetBalance:
    """Snapshot of one balance row: captured (posted) and reserved (pending) amounts."""

    posted_micros: int = 0
    pending_micros: int = 0
    posted_count: int = 0
    pending_count: int = 0

    @property
    def used_micros(self) -> int:
        return self.posted_micros + self.pending_micros

    @property
    def used_count(self) -> int:
        return self.posted_count + self.pending_count


@dataclass(frozen=True, slots=True)
class Headroom:
    """How a spend leaves one budget: its limit, what was used before, what remains after."""

    key: str
    policy_id: str
    scope: str
    window: str
    period: str
    limit_micros: int | None
    used_micros: int
    requested_micros: int
    max_count: int | None
    used_count: int

    @property
    def remaining_after_micros(self) -> int | None:
        if self.limit_micros is None:
            return None
        return self.limit_micros - self.used_micros - self.requested_micros

    @property
    def fits(self) -> bool:
        amount_ok = self.remaining_after_micros is None or self.remaining_after_micros >= 0
        count_ok = self.max_count is None or self.used_count + 1 <= self.max_count
        return amount_ok and count_ok


def headroom_of(claim: BudgetClaim, balance: BudgetBalance) -> Headroom:
    return Headroom(
        key=claim.key,
        policy_id=claim.policy_id,
        scope=str(claim.scope),
        window=str(claim.window),
        period=claim.period.key,
        limit_micros=claim.limit_micros,
        used_micros=balance.used_micros,
        requested_micros=claim.amount_micros,
        max_count=claim.max_count,
        used_count=balance.used_count,
    )
