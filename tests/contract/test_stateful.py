"""Stateful property test: random authorize / capture / void / expire / freeze sequences.

A Hypothesis state machine drives the real embedded API (``treasurer.open``) on a fresh
database per run and, after every step, compares it with a simple independent model: per
authorization its state, reserved and captured cents and its New York day; per daily budget its
limit. Every decision, every balance row, the spend report and every stored state must agree.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from tests.conftest import PG_URL, pg_schema_url
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

import treasurer
from treasurer.domain.budgets import BudgetBalance
from treasurer.domain.errors import IdempotencyConflict, InvalidState
from treasurer.domain.windows import Window, WindowKind, period_of

TIMEZONE = "America/New_York"
NY = ZoneInfo(TIMEZONE)
TTL = timedelta(seconds=900)
MICROS = 10_000  # USD micros per cent (USDC at a fixed $1)
WALLETS = {"w1": "agent_a", "w2": "agent_a", "w3": "agent_b"}
#: policy id -> (the only agent it covers, None for all; daily limit in USD micros; denial code)
BUDGETS = {
    "agent:agent_a:budget:day": ("agent_a", 1_000_000_000, "agent_daily_budget_exceeded"),
    "agent:agent_b:budget:day": ("agent_b", 1_000_000_000, "agent_daily_budget_exceeded"),
    "department:ops:budget:day": (None, 1_500_000_000, "department_daily_budget_exceeded"),
    "org:acme:budget:day": (None, 2_500_000_000, "org_daily_budget_exceeded"),
}
KEYS = ("k1", "k2", "k3")
STARTS = [datetime(2026, m, d, 12, tzinfo=UTC) for m, d in ((6, 15), (3, 7), (10, 31))]
# Any amount (Hypothesis favours small ones) or whole dollars drawn evenly (fill the budgets).
CENTS = st.integers(1, 120_000) | st.sampled_from(range(100, 120_001, 100))
REQUESTS = st.tuples(st.sampled_from(sorted(WALLETS)), CENTS, st.none() | st.sampled_from(KEYS))


def _usd(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@functools.cache
def _migrated_sqlite() -> Path:
    """One migrated database file per session; each run copies it (migrating takes ~0.2 s)."""
    folder = tempfile.mkdtemp(prefix="treasurer-stateful-template-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / "treasurer.db"
    treasurer.open(f"sqlite:///{path}").close()
    return path


@dataclass
class ModelAuth:
    """The model of one authorization (states as the API spells them)."""

    id: str
    agent: str
    wallet: str
    cents: int
    day: date
    expires: datetime
    state: str
    captured: int = 0


class GovernanceMachine(RuleBasedStateMachine):
    """The embedded API on SQLite against a plain-Python model of budgets and authorizations."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.tmp: str | None = None
        self.gov = treasurer.open(self._database_url(), clock=self.clock)
        self.auths: dict[str, ModelAuth] = {}
        self.keys: dict[tuple[str, str], ModelAuth] = {}
        self.frozen = False

    def _database_url(self) -> str:
        self.tmp = tempfile.mkdtemp(prefix="treasurer-stateful-")
        return f"sqlite:///{shutil.copy(_migrated_sqlite(), self.tmp)}"

    def teardown(self) -> None:
        self.gov.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model --------------------------------------------------------------------------
    def _today(self) -> date:
        return self.clock.now().astimezone(NY).date()

    def _in(self, state: str) -> list[ModelAuth]:
        return [a for a in self.auths.values() if a.state == state]

    def _sums(self, policy: str, day: date) -> tuple[int, int, int, int]:
        """Posted and pending USD micros, then their counts, of ``policy`` on ``day``."""
        only = BUDGETS[policy][0]
        mine = [a for a in self.auths.values() if a.day == day and only in (None, a.agent)]
        captured = [a.captured for a in mine if a.state == "captured"]
        pending = [a.cents for a in mine if a.state == "pending"]
        return (sum(captured) * MICROS, sum(pending) * MICROS, len(captured), len(pending))

    def _pick(self, data: st.DataObject) -> ModelAuth:
        """A pending authorization half the time, else any (each state present equally likely)."""
        pending = self._in("pending")
        if pending and data.draw(st.booleans()):
            return data.draw(st.sampled_from(pending))
        state = data.draw(st.sampled_from(sorted({a.state for a in self.auths.values()})))
        return data.draw(st.sampled_from(self._in(state)))

    @initialize(start=st.sampled_from(STARTS))
    def apply_org(self, start: datetime) -> None:
        """Start mid-June or the day before a DST change (a 23- or 25-hour day follows)."""
        self.clock.set(start)
        org = cross_wallet_org(
            agent_daily="1000.00", department_daily="1500.00", org_daily="2500.00"
        )
        self.gov.apply(org)

    # -- rules ------------------------------------------------------------------------------
    # Hypothesis lists rules by argument count, then name, and favours the first when it makes
    # simple choices: so authorize (the rule that matters most) takes exactly one argument.
    @rule(request=REQUESTS)
    def authorize(self, request: tuple[str, int, str | None]) -> None:
        self._authorize(*request)

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data())
    def retry_with_key(self, data: st.DataObject) -> None:
        """Repeat a keyed request exactly (a replay) or one cent more (a conflict)."""
        (_agent, key), first = data.draw(st.sampled_from(sorted(self.keys.items())))
        self._authorize(first.wallet, first.cents + data.draw(st.sampled_from([0, 1])), key)

    @rule(data=st.data())
    def fill_budget(self, data: st.DataObject) -> None:
        """Ask for exactly the headroom left (allowed) or one cent more (denied)."""
        wallet = data.draw(st.sampled_from(sorted(WALLETS)))
        headroom = min(
            limit - sum(self._sums(policy, self._today())[:2])
            for policy, (only, limit, _code) in BUDGETS.items()
            if only in (None, WALLETS[wallet])
        )
        cents = headroom // MICROS + data.draw(st.sampled_from([0, 1]))
        self._authorize(wallet, max(cents, 1), None)

    def _authorize(self, wallet: str, cents: int, key: str | None) -> None:
        agent = WALLETS[wallet]
        first = self.keys.get((agent, key)) if key else None
        request = {"agent": agent, "wallet": wallet, "amount": _usd(cents), "asset": "USDC"}
        if first is not None and (first.wallet, first.cents) != (wallet, cents):
            with pytest.raises(IdempotencyConflict):
                self.gov.authorize(**request, idempotency_key=key)
            return
        result = self.gov.authorize(**request, idempotency_key=key)
        if first is not None:
            assert result.replayed and result.id == first.id
            assert result.allowed == (first.state != "denied")
            return
        auth = ModelAuth(result.id, agent, wallet, cents, self._today(), self.clock.now() + TTL, "")
        expected = {
            code
            for policy, (only, limit, code) in BUDGETS.items()
            if only in (None, agent)
            and sum(self._sums(policy, auth.day)[:2]) + cents * MICROS > limit
        }
        if agent == "agent_a" and self.frozen:
            expected.add("agent_frozen")
        assert not result.replayed
        assert set(result.codes) == expected, (result.codes, expected)
        assert result.allowed == (not expected)
        auth.state = "denied" if expected else "pending"
        assert result.state.value == auth.state
        self.auths[auth.id] = auth
        if key is not None:
            self.keys[(agent, key)] = auth

    @precondition(lambda self: bool(self.auths))
    @rule(data=st.data())
    def capture(self, data: st.DataObject) -> None:
        """Capture in full or less; also retries and captures of final or denied ones."""
        auth = self._pick(data)
        final = st.none() | st.integers(1, auth.cents) | st.just(auth.captured or auth.cents)
        self._capture(auth, data.draw(final))

    def _capture(self, auth: ModelAuth, cents: int | None) -> None:
        final = auth.cents if cents is None else cents
        amount = None if cents is None else _usd(cents)
        if auth.state == "pending" and self.clock.now() >= auth.expires:
            with pytest.raises(InvalidState) as exc:
                self.gov.capture(auth.id, amount)
            assert exc.value.code == "authorization_expired"
            auth.state = "expired"
        elif auth.state == "pending" or (auth.state == "captured" and auth.captured == final):
            done = self.gov.capture(auth.id, amount)
            assert done.state.value == "captured"
            assert done.captured_usd_micros == final * MICROS
            auth.state, auth.captured = "captured", final
        else:
            with pytest.raises(InvalidState) as exc:
                self.gov.capture(auth.id, amount)
            assert exc.value.code == "authorization_not_pending"

    @precondition(lambda self: bool(self.auths))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        auth = self._pick(data)
        if auth.state == "pending" and self.clock.now() >= auth.expires:
            # Past its expiry but not swept yet: released as what happened first, expired.
            assert self.gov.void(auth.id).state.value == "expired"
            auth.state = "expired"
        elif auth.state == "expired":  # a void of a released one returns it
            assert self.gov.void(auth.id).state.value == "expired"
        elif auth.state in ("pending", "voided"):  # a void of a voided one returns it again
            assert self.gov.void(auth.id).state.value == "voided"
            auth.state = "voided"
        else:
            with pytest.raises(InvalidState):
                self.gov.void(auth.id)

    @rule(seconds=st.integers(1, 2000), sweep=st.booleans())
    def pass_time(self, seconds: int, sweep: bool) -> None:
        """Move the clock; then maybe run the expiry sweep (else capture meets the expiry)."""
        self.clock.advance(seconds=seconds)
        if sweep:
            self._sweep()

    def _sweep(self) -> None:
        stale = [a for a in self._in("pending") if self.clock.now() >= a.expires]
        assert self.gov.expire_stale() == len(stale)
        for auth in stale:
            auth.state = "expired"

    @precondition(lambda self: bool(self._in("pending")))
    @rule(data=st.data())
    def reach_expiry(self, data: st.DataObject) -> None:
        """Jump to a pending authorization's exact expiry (or 1 s before); sweep or capture."""
        auth = data.draw(st.sampled_from(self._in("pending")))
        target = auth.expires - timedelta(seconds=data.draw(st.sampled_from([0, 1])))
        self.clock.set(max(target, self.clock.now()))
        if data.draw(st.booleans()):
            self._sweep()
        else:
            self._capture(auth, None)

    @precondition(lambda self: len([a for a in self.auths.values() if a.day == self._today()]) > 2)
    @rule(before_s=st.sampled_from([0, 1, 600]))
    def cross_midnight(self, before_s: int) -> None:
        """Once the day is busy, go to the next New York midnight or just before it."""
        tomorrow = self._today() + timedelta(days=1)
        midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=NY).astimezone(UTC)
        target = midnight - timedelta(seconds=before_s)
        self.clock.set(target if target > self.clock.now() else midnight)

    @rule(frozen=st.booleans())
    def freeze(self, frozen: bool) -> None:
        changed = (self.gov.freeze if frozen else self.gov.unfreeze)("agent:agent_a")
        assert changed == (frozen != self.frozen)
        self.frozen = frozen

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def balances_match_model(self) -> None:
        """Each day's balance rows hold exactly the model's posted and pending, within limit."""
        for day in {self._today()} | {a.day for a in self.auths.values()}:
            noon = datetime(day.year, day.month, day.day, 12, tzinfo=NY)
            period = period_of(Window(WindowKind.DAY), noon, TIMEZONE)
            keys = {policy: f"{policy}|{period.key}|" for policy in BUDGETS}
            found = self.gov.store.balances(list(keys.values()))
            for policy, key in keys.items():
                got = found.get(key, BudgetBalance())
                row = (got.posted_micros, got.pending_micros, got.posted_count, got.pending_count)
                assert row == self._sums(policy, day), key
                assert got.used_micros <= BUDGETS[policy][1], key

    @invariant()
    def spend_report_matches_model(self) -> None:
        """``spend(by="agent")`` reports the model's captured and reserved totals."""
        rows = {row.group: row for row in self.gov.spend(by="agent")}
        for agent in ("agent_a", "agent_b"):
            mine = [a for a in self.auths.values() if a.agent == agent]
            captured = sum(a.captured for a in mine if a.state == "captured")
            pending = sum(a.cents for a in mine if a.state == "pending")
            row = rows.get(agent)
            got = (row.captured_usd_micros, row.pending_usd_micros) if row else (0, 0)
            assert got == (captured * MICROS, pending * MICROS), agent

    @invariant()
    def stored_states_match_model(self) -> None:
        """Every authorization is stored in the state the model holds for it."""
        for auth in self.auths.values():
            stored = self.gov.store.get_authorization(auth.id)
            assert stored is not None and stored.state.value == auth.state, auth


class PostgresGovernanceMachine(GovernanceMachine):
    """The same machine on a fresh PostgreSQL schema per run, dropped in teardown."""

    schema: str | None = None

    def _database_url(self) -> str:
        assert PG_URL, "TREASURER_TEST_POSTGRES_URL must be set in CI"
        self.schema = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
        return pg_schema_url(PG_URL, self.schema)

    def teardown(self) -> None:
        self.gov.close()
        with psycopg.connect(str(PG_URL), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


class TestGovernanceStatefulSqlite(GovernanceMachine.TestCase):  # type: ignore[misc,valid-type]
    """Random sequences on SQLite agree with the model after every step."""

    settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


@pytest.mark.postgres
@pytest.mark.skipif(
    not PG_URL and not os.environ.get("CI"), reason="TREASURER_TEST_POSTGRES_URL is not set"
)
class TestGovernanceStatefulPostgres(PostgresGovernanceMachine.TestCase):  # type: ignore[misc,valid-type]
    """Random sequences on PostgreSQL agree with the model after every step."""

    settings = settings(max_examples=10, stateful_step_count=25, deadline=None)
