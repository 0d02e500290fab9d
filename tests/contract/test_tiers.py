"""Delay and approval tiers of governance-mode authorizations, against every store.

A delayed authorization holds its reservation and becomes capturable once its delay has
passed; one awaiting approval becomes capturable when approved, and releases its reservation
when rejected or when nobody approves in time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

import treasurer
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.authorization import AuthState
from treasurer.domain.errors import InvalidState

DELAY_S = 600
APPROVAL_EXPIRY_S = 3600


@pytest.fixture
def gov(database_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    org = cross_wallet_org(agent_daily="5000.00")
    agent = org["agents"][0]
    agent["tiers"] = {
        "instant_max_usd": "100.00",
        "delay_max_usd": "1000.00",
        "delay_seconds": DELAY_S,
    }
    agent["approval"] = {
        "threshold_usd": "1000.00",
        "second_agent": True,
        "expiry_seconds": APPROVAL_EXPIRY_S,
    }
    governance = treasurer.open(database_url, clock=clock)
    governance.apply(org)
    yield governance
    governance.close()


def _used(gov: EmbeddedGovernance) -> str:
    """What the agent's daily budget has used, reserved included (read from a dry run)."""
    check = gov.check(agent="agent_a", wallet="w1", amount="0.01", asset="USDC", recipient=SHOP)
    budgets = check.as_dict()["budgets"]
    assert isinstance(budgets, list)
    [agent] = [b for b in budgets if b["scope"] == "agent:agent_a"]
    return str(agent["used_usd"])


def _authorize(gov: EmbeddedGovernance, amount: str) -> str:
    result = gov.authorize(
        agent="agent_a", wallet="w1", amount=amount, asset="USDC", recipient=SHOP
    )
    assert result.allowed, result.reasons
    return result.id


def test_delayed_authorization_is_capturable_only_after_its_delay(
    gov: EmbeddedGovernance, clock: FakeClock
) -> None:
    auth = _authorize(gov, "500.00")
    assert gov.store.get_authorization(auth).state is AuthState.DELAYED  # type: ignore[union-attr]
    assert _used(gov) == "500.00"  # reserved while it waits
    with pytest.raises(InvalidState) as exc:
        gov.capture(auth)
    assert exc.value.code == "authorization_not_released"
    with pytest.raises(InvalidState):
        gov.release_delayed(auth)
    clock.advance(seconds=DELAY_S)
    captured = gov.capture(auth)
    assert captured.state is AuthState.CAPTURED
    assert _used(gov) == "500.00"


def test_release_due_promotes_exactly_the_due_ones(
    gov: EmbeddedGovernance, clock: FakeClock
) -> None:
    first = _authorize(gov, "200.00")
    clock.advance(seconds=DELAY_S // 2)
    second = _authorize(gov, "300.00")
    clock.advance(seconds=DELAY_S // 2)
    assert gov.release_due() == [first]
    assert gov.release_due() == []
    state = gov.store.get_authorization(first).state  # type: ignore[union-attr]
    assert state is AuthState.PENDING
    clock.advance(seconds=DELAY_S // 2)
    assert gov.release_due() == [second]


def test_approval_then_capture(gov: EmbeddedGovernance) -> None:
    auth = _authorize(gov, "1500.00")
    assert gov.store.get_authorization(auth).state is AuthState.PENDING_APPROVAL  # type: ignore[union-attr]
    with pytest.raises(InvalidState) as exc:
        gov.capture(auth)
    assert exc.value.code == "authorization_not_released"
    approved = gov.approve(auth, actor="agent:agent_b", detail={"votes": 1})
    assert approved.state is AuthState.PENDING
    assert gov.approve(auth, actor="agent:agent_b").state is AuthState.PENDING  # idempotent
    assert gov.capture(auth).state is AuthState.CAPTURED
    assert _used(gov) == "1500.00"


def test_rejection_releases_the_reservation(gov: EmbeddedGovernance) -> None:
    auth = _authorize(gov, "1500.00")
    assert _used(gov) == "1500.00"
    rejected = gov.reject(auth, reason="not in the plan", actor="key:finance")
    assert rejected.state is AuthState.REJECTED
    assert gov.reject(auth, reason="again", actor="key:finance").state is AuthState.REJECTED
    assert _used(gov) == "0.00"
    with pytest.raises(InvalidState):
        gov.approve(auth, actor="agent:agent_b")
    with pytest.raises(InvalidState):
        gov.capture(auth)


def test_an_approval_nobody_gives_in_time_expires_and_releases(
    gov: EmbeddedGovernance, clock: FakeClock
) -> None:
    auth = _authorize(gov, "1500.00")
    clock.advance(seconds=APPROVAL_EXPIRY_S + 1)
    with pytest.raises(InvalidState) as exc:
        gov.approve(auth, actor="agent:agent_b")
    assert exc.value.code == "authorization_expired"
    assert gov.store.get_authorization(auth).state is AuthState.EXPIRED  # type: ignore[union-attr]
    assert _used(gov) == "0.00"


def test_sweeper_expires_unapproved_authorizations(
    gov: EmbeddedGovernance, clock: FakeClock
) -> None:
    auth = _authorize(gov, "1500.00")
    clock.advance(seconds=APPROVAL_EXPIRY_S + 1)
    assert gov.expire_stale() == 1
    assert gov.store.get_authorization(auth).state is AuthState.EXPIRED  # type: ignore[union-attr]
    assert _used(gov) == "0.00"
