"""Backtesting and shadow reports over recorded traffic, against every store.

The traffic is generated from a seeded random stream (two agents, two wallets on two chains,
four days, captures, partial captures, voids and spends left open), and every expectation is
computed by an independent model written here from the rules in the module docstring of
:mod:`treasurer.service.backtest` — not by calling the code under test.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

import treasurer
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.errors import InvalidRequest

TZ = ZoneInfo("America/New_York")
REAL_DAILY = Decimal("1000.00")
WALLETS = {"agent_a": ("w1", "w2"), "agent_b": ("w3",)}


@dataclass(frozen=True)
class Spend:
    """What the generator did, and how it ended (in USD, since USDC is pegged at $1)."""

    id: str
    agent: str
    at: datetime
    value: Decimal
    allowed: bool
    spent: Decimal  # captured amount; value while open; 0 when voided


@dataclass
class Traffic:
    gov: EmbeddedGovernance
    spends: list[Spend]
    since: datetime
    until: datetime


def _generate(gov: EmbeddedGovernance, clock: FakeClock, seed: int, count: int) -> list[Spend]:
    rng = random.Random(seed)
    spends: list[Spend] = []
    for _ in range(count):
        clock.advance(minutes=rng.randint(20, 200))
        agent = rng.choice(sorted(WALLETS))
        wallet = rng.choice(WALLETS[agent])
        value = Decimal(rng.randint(1_000, 40_000)) / 100
        result = gov.authorize(
            agent=agent, wallet=wallet, amount=str(value), asset="USDC", recipient=SHOP
        )
        spent = Decimal(0)
        if result.allowed:
            roll = rng.random()
            if roll < 0.55:
                gov.capture(result.id)
                spent = value
            elif roll < 0.7:
                partial = (value * Decimal("0.6")).quantize(Decimal("0.01"))
                gov.capture(result.id, amount=str(partial))
                spent = partial
            elif roll < 0.88:
                gov.void(result.id)
            else:
                spent = value  # left open: still reserved
        spends.append(Spend(result.id, agent, clock.now(), value, result.allowed, spent))
    return spends


@pytest.fixture
def traffic(database_url: str, clock: FakeClock) -> Iterator[Traffic]:
    gov = treasurer.open(database_url, clock=clock)
    gov.apply(cross_wallet_org(agent_daily=str(REAL_DAILY)))
    since = clock.now()
    spends = _generate(gov, clock, seed=7, count=70)
    clock.advance(minutes=1)
    yield Traffic(gov, spends, since, clock.now())
    gov.close()


def _model(spends: list[Spend], daily: Decimal) -> dict[str, bool]:
    """The draft's decision per spend: an agent daily budget of ``daily`` in the org's time
    zone, where an allowed spend counts what it really came to (full value if reality had
    denied it), and a denied one counts nothing."""
    used: dict[tuple[str, object], Decimal] = defaultdict(Decimal)
    decided: dict[str, bool] = {}
    for spend in spends:
        day = (spend.agent, spend.at.astimezone(TZ).date())
        allowed = used[day] + spend.value <= daily
        decided[spend.id] = allowed
        if allowed:
            used[day] += spend.spent if spend.allowed else spend.value
    return decided


def _state(gov: EmbeddedGovernance) -> tuple[Any, ...]:
    """Everything a backtest must leave as it was: audit log, authorizations, balances."""
    events = gov.store.audit_events(100_000)
    auths = [gov.store.get_authorization(str(e["subject"])) for e in events]
    keys = sorted({k for e in events for k in _claim_keys(e)})
    return (len(events), events[-1]["id"], auths, gov.store.balances(keys))


def _claim_keys(event: dict[str, object]) -> list[str]:
    payload = event["payload"]
    assert isinstance(payload, dict)
    return [str(b["key"]) for b in payload.get("budgets", []) if "key" in b]


def _draft(daily: str, **extra: Any) -> dict[str, Any]:
    org = cross_wallet_org(agent_daily=daily)
    for agent in org["agents"]:
        agent.update(extra)
    return org


def test_stricter_draft_lists_exactly_the_decisions_that_change(traffic: Traffic) -> None:
    """A $400 agent budget instead of $1,000: exactly the spends the model says would be
    denied now and were allowed then are listed, with totals; nothing real is touched."""
    before = _state(traffic.gov)
    report = traffic.gov.backtest(_draft("400.00"), since=traffic.since, until=traffic.until)
    assert _state(traffic.gov) == before

    real = {s.id: s.allowed for s in traffic.spends}
    draft = _model(traffic.spends, Decimal("400.00"))
    assert real == _model(traffic.spends, REAL_DAILY)  # the model reproduces reality first
    expected = {i for i in real if real[i] and not draft[i]}
    assert expected, "the generated traffic must exercise the stricter budget"
    assert report.replayed == len(traffic.spends)
    assert {c.authorization_id for c in report.changes} == expected
    assert {c.change for c in report.changes} == {"allowed_to_denied"}
    for change in report.changes:
        assert change.after.codes == ("agent_daily_budget_exceeded",)
    values = {s.id: s.value for s in traffic.spends}
    assert report.counts == {"allowed_to_denied": len(expected)}
    expected_usd = sum(values[i] for i in expected) * 1_000_000
    assert report.usd_micros == {"allowed_to_denied": expected_usd}


def test_looser_draft_lists_the_denials_it_would_allow(traffic: Traffic) -> None:
    """With $1,500 instead of $1,000, real budget denials the model allows turn up as
    ``denied_to_allowed`` — and only those."""
    report = traffic.gov.backtest(_draft("1500.00"), since=traffic.since, until=traffic.until)
    real = {s.id: s.allowed for s in traffic.spends}
    draft = _model(traffic.spends, Decimal("1500.00"))
    expected = {i for i in real if not real[i] and draft[i]}
    assert expected, "the generated traffic must contain real denials the draft allows"
    assert {c.authorization_id for c in report.changes} == expected
    assert {c.change for c in report.changes} == {"denied_to_allowed"}


def test_tier_changes_are_listed(traffic: Traffic) -> None:
    """Same budget, but spends above $250 would now need a delay: every allowed spend above
    $250 is a tier change, instant → delay, and nothing else changes."""
    tiers = {"instant_max_usd": "250.00", "delay_max_usd": "100000.00", "delay_seconds": 600}
    draft = _draft(str(REAL_DAILY), tiers=tiers)
    report = traffic.gov.backtest(draft, since=traffic.since, until=traffic.until)
    expected = {s.id for s in traffic.spends if s.allowed and s.value > Decimal("250.00")}
    assert expected
    assert {c.authorization_id for c in report.changes} == expected
    assert all(c.before.tier == "instant" and c.after.tier == "delay" for c in report.changes)


def test_a_range_with_nothing_recorded_changes_nothing(traffic: Traffic) -> None:
    later = traffic.until + timedelta(days=30)
    report = traffic.gov.backtest(_draft("1.00"), since=later, until=later + timedelta(days=1))
    assert report.replayed == 0 and report.changes == []


def test_bad_ranges_and_drafts_are_refused(traffic: Traffic) -> None:
    with pytest.raises(InvalidRequest) as exc:
        traffic.gov.backtest(_draft("1.00"), since=traffic.until, until=traffic.since)
    assert exc.value.field == "until"
    with pytest.raises(InvalidRequest) as exc:
        naive = traffic.since.replace(tzinfo=None)
        traffic.gov.backtest(_draft("1.00"), since=naive, until=traffic.until)
    assert exc.value.field == "since"
    with pytest.raises(InvalidRequest):
        traffic.gov.backtest({"version": 1, "org": {}}, since=traffic.since, until=traffic.until)


def test_shadow_report_counts_what_a_shadow_budget_would_deny(
    database_url: str, clock: FakeClock
) -> None:
    """A shadow $300 agent budget beside the real $1,000 one: per policy, the report counts
    the spends it would have denied, measured (as production measures shadow budgets) on the
    recorded usage of the agent's day."""
    org = cross_wallet_org(agent_daily=str(REAL_DAILY))
    shadow = {
        "id": "strict-agent-a",
        "type": "budget",
        "scope": "agent:agent_a",
        "mode": "shadow",
        "params": {"window": "day", "limit_usd": "300.00"},
    }
    org["policies"] = [shadow]
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(org)
        since = clock.now()
        spends = _generate(gov, clock, seed=11, count=50)
        clock.advance(minutes=1)
        report = gov.shadow_report(since=since, until=clock.now())

    used: dict[object, Decimal] = defaultdict(Decimal)
    would_deny: list[Spend] = []
    for spend in spends:
        if spend.agent != "agent_a":
            continue
        day = spend.at.astimezone(TZ).date()
        if used[day] + spend.value > Decimal("300.00"):
            would_deny.append(spend)
        if spend.allowed:
            used[day] += spend.spent
    assert would_deny
    [entry] = report
    assert entry.policy_id == "strict-agent-a"
    assert entry.evaluated == sum(1 for s in spends if s.agent == "agent_a")
    assert entry.would_deny == len(would_deny)
    assert entry.would_deny_usd_micros == sum(s.value for s in would_deny) * 1_000_000
    allowed = [s for s in would_deny if s.allowed]
    assert entry.would_deny_allowed == len(allowed)
    assert entry.codes == {"agent_daily_budget_exceeded": len(would_deny)}
