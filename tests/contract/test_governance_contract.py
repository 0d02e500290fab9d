"""The governance contract, run against every store (SQLite file and PostgreSQL schema).

These are the product's promises from the core issue: aggregate budgets across wallets, chains
and vendors; department and org ceilings; default deny and fail closed; the two-phase
authorization; idempotency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources

import pytest
import yaml
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

import treasurer
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import Conflict, IdempotencyConflict, InvalidRequest, InvalidState
from treasurer.domain.org import Scope
from treasurer.service.orgfile import parse_org_file


@pytest.fixture
def gov(database_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    """Governance on the backend under test with the cross-wallet org applied."""
    governance = treasurer.open(database_url, clock=clock)
    governance.apply(cross_wallet_org())
    yield governance
    governance.close()


def _pay(gov: EmbeddedGovernance, wallet: str, amount: str, agent: str = "agent_a") -> str:
    result = gov.authorize(agent=agent, wallet=wallet, amount=amount, asset="USDC", recipient=SHOP)
    assert result.allowed, result.reasons
    gov.capture(result.id)
    return result.id


@pytest.mark.parametrize("vendors", [("coinbase-cdp", "metamask"), ("privy", "fireblocks")])
def test_cross_wallet_budget_is_aggregate(
    database_url: str, clock: FakeClock, vendors: tuple[str, str]
) -> None:
    """$999 on wallet 1 then $499 on wallet 2 (another chain and vendor) is denied in aggregate."""
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(cross_wallet_org(vendors=vendors))
        _pay(gov, "w1", "999.00")
        denied = gov.authorize(agent="agent_a", wallet="w2", amount="499.00", asset="USDC")
        assert not denied.allowed
        assert denied.codes == ["agent_daily_budget_exceeded"]
        message = str(denied.reasons[0]["message"])
        assert "$1,498.00 of its $1,000.00 daily budget" in message
        assert "$999.00 already spent on wallet base:0x111111" in message
        budgets = denied.decision["budgets"]
        assert isinstance(budgets, list)
        assert {b["scope"] for b in budgets} == {"agent:agent_a", "department:ops", "org:acme"}


def test_department_ceiling_denies_when_agent_budget_allows(
    database_url: str, clock: FakeClock
) -> None:
    """A department ceiling binds even though each agent's own budget has room."""
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(cross_wallet_org(agent_daily="1000.00", department_daily="1500.00"))
        _pay(gov, "w1", "900.00")
        denied = gov.authorize(agent="agent_b", wallet="w3", amount="700.00", asset="USDC")
        assert denied.codes == ["department_daily_budget_exceeded"]
        assert "$1,600.00 of its $1,500.00 daily budget" in str(denied.reasons[0]["message"])
        remaining = {b["scope"]: b["remaining_usd"] for b in denied.decision["budgets"]}  # type: ignore[union-attr]
        assert remaining == {
            "agent:agent_b": "300.00",
            "department:ops": "-100.00",
            "org:acme": "48400.00",
        }


def test_org_ceiling_denies_when_agent_and_department_allow(
    database_url: str, clock: FakeClock
) -> None:
    """The org ceiling is checked too; every covering budget is reported."""
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(cross_wallet_org(agent_daily="1000.00", org_daily="1200.00"))
        _pay(gov, "w1", "800.00")
        denied = gov.authorize(agent="agent_b", wallet="w3", amount="500.00", asset="USDC")
        assert denied.codes == ["org_daily_budget_exceeded"]
        assert len(denied.decision["budgets"]) == 3  # type: ignore[arg-type]


def test_no_policies_denies(database_url: str, clock: FakeClock) -> None:
    """With no policy granting anything, every spend is denied (default deny)."""
    org = cross_wallet_org()
    del org["org"]["budgets"]
    for department in org["departments"]:
        department.pop("budgets")
    for agent in org["agents"]:
        agent.pop("budgets")
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(org)
        result = gov.authorize(agent="agent_a", wallet="w1", amount="1.00", asset="USDC")
        assert result.codes == ["no_policy_allows"]


def test_unknown_asset_disallowed_chain_and_stale_price(
    gov: EmbeddedGovernance, clock: FakeClock
) -> None:
    """Unknown asset, disallowed chain and stale price each deny with their own code."""
    unknown = gov.authorize(agent="agent_a", wallet="w1", amount="1", asset="DOGE")
    assert unknown.codes == ["unknown_asset"]
    missing = gov.authorize(agent="agent_a", wallet="w2", amount="0.01", asset="ETH")
    assert missing.codes == ["price_unavailable"]
    gov.set_price("ethereum:ETH", "3000.00")
    fresh = gov.authorize(agent="agent_a", wallet="w2", amount="0.01", asset="ETH")
    assert fresh.allowed and fresh.decision["value_usd"] == "30.00"
    clock.advance(hours=2)
    stale = gov.authorize(agent="agent_a", wallet="w2", amount="0.01", asset="ETH")
    assert stale.codes == ["price_stale"]
    org = cross_wallet_org()
    org["agents"][0]["allowed_chains"] = ["base"]
    gov.apply(org)
    chain = gov.authorize(agent="agent_a", wallet="w2", amount="1.00", asset="USDC")
    assert chain.codes == ["chain_not_allowed"]


def test_capture_lower_amount_releases_difference(gov: EmbeddedGovernance) -> None:
    """Capturing less than authorized posts the final amount and frees the rest."""
    auth = gov.authorize(agent="agent_a", wallet="w1", amount="600.00", asset="USDC")
    gov.capture(auth.id, "450.00")
    headroom = gov.check(agent="agent_a", wallet="w1", amount="550.00", asset="USDC")
    assert headroom.allowed
    over = gov.check(agent="agent_a", wallet="w1", amount="550.01", asset="USDC")
    assert over.codes == ["agent_daily_budget_exceeded"]
    with pytest.raises(InvalidRequest) as exc:
        gov.capture(
            gov.authorize(agent="agent_a", wallet="w1", amount="1.00", asset="USDC").id, "2.00"
        )
    assert exc.value.code == "capture_exceeds_authorization"


def test_void_releases_and_is_final(gov: EmbeddedGovernance) -> None:
    """A void releases the reservation; a voided authorization cannot be captured."""
    auth = gov.authorize(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC")
    assert not gov.check(agent="agent_a", wallet="w1", amount="1.00", asset="USDC").allowed
    gov.void(auth.id)
    assert gov.void(auth.id).state.value == "voided"  # idempotent
    assert gov.check(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC").allowed
    with pytest.raises(InvalidState):
        gov.capture(auth.id)


def test_stale_authorizations_expire_and_release(gov: EmbeddedGovernance, clock: FakeClock) -> None:
    """An authorization not captured within its TTL expires and frees its budget."""
    auth = gov.authorize(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC")
    clock.advance(minutes=16)
    assert gov.expire_stale() == 1
    assert gov.store.get_authorization(auth.id).state.value == "expired"  # type: ignore[union-attr]
    assert gov.check(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC").allowed
    with pytest.raises(InvalidState):
        gov.capture(auth.id)


def test_void_after_expiry_records_expired(gov: EmbeddedGovernance, clock: FakeClock) -> None:
    """Voiding an authorization the sweeper has not reached yet releases it as ``expired``:
    the record says what happened first, and voiding again returns the same."""
    auth = gov.authorize(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC")
    clock.advance(minutes=16)
    assert gov.void(auth.id).state.value == "expired"
    assert gov.void(auth.id).state.value == "expired"
    assert gov.expire_stale() == 0
    assert gov.check(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC").allowed


def test_capture_after_expiry_is_refused(gov: EmbeddedGovernance, clock: FakeClock) -> None:
    """Capture checks the expiry itself, even before the sweeper runs."""
    auth = gov.authorize(agent="agent_a", wallet="w1", amount="10.00", asset="USDC")
    clock.advance(seconds=901)
    with pytest.raises(InvalidState) as exc:
        gov.capture(auth.id)
    assert exc.value.code == "authorization_expired"


def test_idempotency_replay_and_conflict(gov: EmbeddedGovernance) -> None:
    """Same key + same request returns the first result; a different request conflicts."""
    first = gov.authorize(
        agent="agent_a", wallet="w1", amount="10.00", asset="USDC", idempotency_key="k1"
    )
    again = gov.authorize(
        agent="agent_a", wallet="w1", amount="10.00", asset="USDC", idempotency_key="k1"
    )
    assert again.replayed and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        gov.authorize(
            agent="agent_a", wallet="w1", amount="11.00", asset="USDC", idempotency_key="k1"
        )
    spent = {row.group: row.pending_usd_micros for row in gov.spend(by="agent")}
    assert spent["agent_a"] == 10_000_000


def test_denied_request_is_replayed_too(gov: EmbeddedGovernance) -> None:
    """A retry of a denied request returns the same denial, not a fresh decision."""
    first = gov.authorize(
        agent="agent_a", wallet="w1", amount="5000.00", asset="USDC", idempotency_key="big"
    )
    assert not first.allowed
    again = gov.authorize(
        agent="agent_a", wallet="w1", amount="5000.00", asset="USDC", idempotency_key="big"
    )
    assert again.replayed and again.id == first.id and not again.allowed


def test_calendar_day_rolls_over_at_org_midnight(gov: EmbeddedGovernance, clock: FakeClock) -> None:
    """The daily budget resets at midnight America/New_York, not UTC."""
    clock.set(datetime(2026, 6, 16, 3, 59, 59, tzinfo=UTC))  # 23:59:59 in New York
    _pay(gov, "w1", "1000.00")
    assert not gov.check(agent="agent_a", wallet="w1", amount="1.00", asset="USDC").allowed
    clock.advance(seconds=1)  # 00:00:00 in New York
    assert gov.check(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC").allowed


def test_rolling_window_never_allows_over_limit(database_url: str, clock: FakeClock) -> None:
    """A rolling 1-hour budget counts spend until it is a full hour old, then frees it."""
    org = cross_wallet_org()
    org["agents"][0]["budgets"] = [
        {"window": "rolling", "rolling_seconds": 3600, "limit_usd": "100.00"}
    ]
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(org)
        _pay(gov, "w1", "60.00")
        clock.advance(minutes=30)
        _pay(gov, "w1", "40.00")
        clock.advance(minutes=29)
        assert not gov.check(agent="agent_a", wallet="w1", amount="0.01", asset="USDC").allowed
        assert not gov.authorize(agent="agent_a", wallet="w1", amount="0.01", asset="USDC").allowed
        clock.advance(minutes=2, seconds=1)  # first spend is now over an hour (and a bucket) old
        assert gov.authorize(agent="agent_a", wallet="w1", amount="60.00", asset="USDC").allowed
        assert not gov.authorize(agent="agent_a", wallet="w1", amount="0.01", asset="USDC").allowed
        clock.advance(hours=2)
        assert gov.authorize(agent="agent_a", wallet="w1", amount="40.00", asset="USDC").allowed


def test_policy_change_bumps_version_and_applies_at_once(gov: EmbeddedGovernance) -> None:
    """Raising a budget creates version 2 and the next decision uses it."""
    _pay(gov, "w1", "1000.00")
    org = cross_wallet_org()
    org["agents"][0]["budgets"] = [{"window": "day", "limit_usd": "2000.00"}]
    result = gov.apply(org)
    assert [c.summary() for c in result.plan.changes] == ["~ policy agent:agent_a:budget:day"]
    decision = gov.check(agent="agent_a", wallet="w2", amount="999.00", asset="USDC")
    assert decision.allowed
    versions = dict(decision.policy_versions)
    assert versions["agent:agent_a:budget:day"] == 2
    history = gov.store.policy_history("agent:agent_a:budget:day")
    assert [h["version"] for h in history] == [1, 2]


def test_frozen_agent_is_denied(gov: EmbeddedGovernance) -> None:
    """A freeze takes effect on the very next decision and is lifted by unfreeze."""
    assert gov.freeze("agent:agent_a", reason="investigation")
    assert gov.authorize(agent="agent_a", wallet="w1", amount="1.00", asset="USDC").codes == [
        "agent_frozen"
    ]
    assert gov.unfreeze("agent:agent_a")
    assert gov.authorize(agent="agent_a", wallet="w1", amount="1.00", asset="USDC").allowed


def test_every_decision_is_audited(gov: EmbeddedGovernance) -> None:
    """Allowed and denied decisions, captures and voids each leave an audit event."""
    ok = gov.authorize(agent="agent_a", wallet="w1", amount="1.00", asset="USDC")
    gov.authorize(agent="agent_a", wallet="w1", amount="5000.00", asset="USDC")
    gov.capture(ok.id)
    kinds = [e["kind"] for e in gov.store.audit_events(limit=500)]
    assert kinds.count("authorization.created") == 1
    assert kinds.count("authorization.denied") == 1
    assert kinds.count("authorization.captured") == 1
    denied = [e for e in gov.store.audit_events(limit=500) if e["kind"] == "authorization.denied"]
    payload = denied[0]["payload"]
    assert isinstance(payload, dict)
    assert payload["reasons"][0]["code"] == "agent_daily_budget_exceeded"
    assert payload["request"]["amount"] == "5000"


def test_concurrent_config_edits_do_not_overwrite_each_other(
    database_url: str, clock: FakeClock
) -> None:
    """An edit prepared on a stale config is refused; edit_config redoes it on fresh state."""
    with (
        treasurer.open(database_url, clock=clock) as first,
        treasurer.open(database_url, clock=clock, migrate=False) as second,
    ):
        first.apply(cross_wallet_org())
        stale_version, stale = first.cache.versioned()
        second.freeze("agent:agent_b")  # any config write bumps the version
        raised = cross_wallet_org(agent_daily="2000.00")
        with pytest.raises(Conflict) as exc:
            first.apply_config(parse_org_file(raised), base_version=stale_version)
        assert exc.value.code == "config_changed"
        assert first.cache.get() is not stale

        def rename(config: OrgConfig) -> OrgConfig:
            org = dataclasses.replace(config.org, name="Acme Renamed")
            return dataclasses.replace(config, org=org)

        second.edit_config(rename)
        first.edit_config(lambda c: dataclasses.replace(c, org=c.org))  # no-op edit succeeds
        assert first.cache.get().org.name == "Acme Renamed"
        assert Scope.parse("agent:agent_b") in first.cache.get().frozen


def test_example_org_file_applies_idempotently_and_round_trips(
    database_url: str, clock: FakeClock
) -> None:
    """The packaged example applies; re-applying is a no-op; export -> apply changes nothing."""
    example = resources.files("treasurer").joinpath("examples/org.yaml").read_text("utf-8")
    with treasurer.open(database_url, clock=clock) as gov:
        first = gov.apply(yaml.safe_load(example))
        assert first.applied and first.plan.counts()["create"] > 30
        assert gov.apply(yaml.safe_load(example)).plan.empty
        exported = gov.export()
        again = gov.apply(yaml.safe_load(yaml.safe_dump(exported)))
        assert again.plan.empty, [c.summary() for c in again.plan.changes]
        budgets = {p.id: p for p in gov.cache.get().policies.values() if p.type == "budget"}
        assert budgets["org:acme:budget:day"].params.limit_usd == 50_000_000_000  # type: ignore[attr-defined]


def test_daily_budget_follows_a_dst_change(database_url: str, clock: FakeClock) -> None:
    """On the 23-hour day of a spring-forward, the day still ends at local midnight."""
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(cross_wallet_org())
        # 2026-03-08 is 23 hours long in New York: midnight to midnight is 04:00Z..05:00Z next day.
        clock.set(datetime(2026, 3, 9, 3, 59, 59, tzinfo=UTC))  # 23:59:59 EDT, still March 8
        _pay(gov, "w1", "1000.00")
        assert not gov.check(agent="agent_a", wallet="w1", amount="1.00", asset="USDC").allowed
        clock.set(datetime(2026, 3, 9, 4, 0, 0, tzinfo=UTC))  # 00:00 EDT on March 9
        decision = gov.check(agent="agent_a", wallet="w1", amount="1000.00", asset="USDC")
        assert decision.allowed
        assert decision.headroom[0].period == "day:2026-03-09"


def test_shadow_budget_measures_recorded_spend(database_url: str, clock: FakeClock) -> None:
    """A shadow budget reserves nothing yet judges against what was really spent."""
    org = cross_wallet_org()
    org["policies"] = [
        {
            "id": "stricter-agent-a",
            "type": "budget",
            "scope": "agent:agent_a",
            "mode": "shadow",
            "params": {"window": "day", "limit_usd": "500.00"},
        }
    ]
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(org)
        _pay(gov, "w1", "400.00")
        result = gov.authorize(agent="agent_a", wallet="w2", amount="200.00", asset="USDC")
        assert result.allowed
        shadow = result.decision["shadow"]
        assert isinstance(shadow, list) and shadow[0]["would_deny"] is True
        assert shadow[0]["reasons"][0]["code"] == "agent_daily_budget_exceeded"
        assert "$600.00 of its $500.00 daily budget" in shadow[0]["reasons"][0]["message"]
        calm = gov.check(agent="agent_b", wallet="w3", amount="200.00", asset="USDC")
        assert calm.shadow == ()  # the shadow policy is agent_a's only


def test_allowed_authorization_reports_real_headroom(gov: EmbeddedGovernance) -> None:
    """The headroom of an allowed authorization counts what was already spent or reserved."""
    _pay(gov, "w1", "300.00")
    held = gov.authorize(agent="agent_a", wallet="w2", amount="200.00", asset="USDC")
    result = gov.authorize(agent="agent_a", wallet="w1", amount="100.00", asset="USDC")
    budgets = {b["scope"]: b for b in result.decision["budgets"]}  # type: ignore[union-attr]
    agent = budgets["agent:agent_a"]
    assert (agent["used_usd"], agent["requested_usd"], agent["remaining_usd"]) == (
        "500.00",
        "100.00",
        "400.00",
    )
    assert agent["used_count"] == 2 and held.allowed
