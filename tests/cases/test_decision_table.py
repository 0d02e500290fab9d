"""The decision table: each row of decisions.yaml is one spend and the outcome it must get.

The rows are written for people who run finance, not for programmers; this file only turns
each row into facts (through ``strategies.build_facts``), calls ``decide`` and compares.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from treasurer.domain.budgets import BudgetBalance
from treasurer.domain.decision import decide
from treasurer.domain.facts import Facts, TypedDataDomain
from treasurer.domain.money import MAX_UINT256
from treasurer.domain.org import Scope
from treasurer.domain.outcome import Decision, Tier
from treasurer.domain.policies import BudgetParams, Policy, PolicyMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds strategies.py
from strategies import build_facts, policy, usd

TABLE = yaml.safe_load((Path(__file__).parent / "decisions.yaml").read_text(encoding="utf-8"))
LIBRARY: dict[str, dict[str, Any]] = TABLE["library"]
CASES: list[dict[str, Any]] = TABLE["cases"]

SPEND_KEYS = {
    "amount",
    "asset",
    "wallet",
    "agent",
    "kind",
    "recipient",
    "chain",
    "contract",
    "method",
    "spender",
    "typed_data",
    "fee_usd",
    "gas_price_gwei",
    "at",
}
STATE_KEYS = {
    "agent_status",
    "wallet_status",
    "frozen",
    "price",
    "price_age_s",
    "used",
    "spent_by_wallet",
}
EXPECT_KEYS = {
    "outcome",
    "reasons",
    "message_contains",
    "delay_s",
    "approval",
    "headroom",
    "shadow",
    "value_usd",
}


def _signed_usd(text: str) -> int:
    return -usd(text[1:]) if text.startswith("-") else usd(text)


def _policies(entries: list[Any]) -> list[Policy]:
    built = []
    for entry in entries:
        spec = {"id": entry, **LIBRARY[entry]} if isinstance(entry, str) else entry
        built.append(
            policy(
                spec["id"],
                spec["type"],
                spec["scope"],
                spec.get("params", {}),
                mode=spec.get("mode", "enforce"),
            )
        )
    return built


def facts_for(case: dict[str, Any]) -> Facts:
    """Build the facts of one table row."""
    spend = dict(case.get("spend") or {})
    state = dict(case.get("state") or {})
    unknown = (set(spend) - SPEND_KEYS) | (set(state) - STATE_KEYS)
    assert not unknown, f"unknown keys in case {case['name']!r}: {sorted(unknown)}"
    kwargs: dict[str, Any] = {"recipient": "0xVendor01"}
    for key, value in spend.items():
        if key == "at":
            kwargs["now"] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif key == "amount" and value == "unlimited":
            kwargs["amount"] = MAX_UINT256
        elif key == "typed_data":
            kwargs["typed_data"] = TypedDataDomain(**value)
        else:
            kwargs[key] = value
    for key in ("agent_status", "wallet_status", "frozen", "price_age_s"):
        if key in state:
            kwargs[key] = state[key]
    if "price" in state:
        kwargs["price"] = state["price"]
    used: dict[str, BudgetBalance] = {}
    subjects: dict[str, str] = {}
    for policy_id, row in (state.get("used") or {}).items():
        used[policy_id] = BudgetBalance(
            posted_micros=usd(str(row.get("usd", "0"))),
            pending_micros=usd(str(row.get("pending_usd", "0"))),
            posted_count=int(row.get("count", 0)),
            pending_count=int(row.get("pending_count", 0)),
        )
        if "recipient" in row:
            subjects[policy_id] = row["recipient"]
    spent = {
        policy_id: [(wallet, str(amount)) for wallet, amount in per_wallet.items()]
        for policy_id, per_wallet in (state.get("spent_by_wallet") or {}).items()
    }
    return build_facts(
        policies=_policies(case.get("policies") or []),
        used=used,
        used_subject=subjects,
        spent_by_wallet=spent,
        **kwargs,
    )


def check(decision: Decision, expect: dict[str, Any]) -> None:
    """Compare a decision with the expectations of one table row."""
    unknown = set(expect) - EXPECT_KEYS
    assert not unknown, f"unknown expectations: {sorted(unknown)}"
    outcome = Tier(expect["outcome"])
    explain = [f"{r.code}: {r.message}" for r in decision.reasons]
    assert decision.tier is outcome, explain
    assert decision.allowed is (outcome is not Tier.DENY)
    assert sorted(decision.codes) == sorted(expect["reasons"]), explain
    messages = " | ".join(r.message for r in decision.reasons)
    for fragment in expect.get("message_contains", []):
        assert fragment in messages, f"{fragment!r} not in {messages!r}"
    assert decision.delay_s == expect.get("delay_s", 0)
    if "approval" in expect:
        want = expect["approval"]
        assert decision.approval is not None
        assert decision.approval.policy_id == want["policy"]
        assert decision.approval.required == want["required"]
        if "approvers" in want:
            assert list(decision.approval.approvers) == want["approvers"]
    elif outcome is not Tier.APPROVAL:
        assert decision.approval is None
    if "headroom" in expect:
        got = {h.policy_id: h.remaining_after_micros for h in decision.headroom}
        want_headroom = {pid: _signed_usd(str(v)) for pid, v in expect["headroom"].items()}
        assert got == want_headroom
    if "shadow" in expect:
        assert {s.policy_id: s.would_deny for s in decision.shadow} == expect["shadow"]
    if "value_usd" in expect:
        assert decision.value_usd_micros == usd(str(expect["value_usd"]))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_decision_table(case: dict[str, Any]) -> None:
    """Each row of the table gets exactly the outcome and reason codes it states."""
    check(decide(facts_for(case)), case["expect"])


def test_case_names_are_unique() -> None:
    """Every row has its own name, so a failure points at exactly one row."""
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))


def test_every_reason_carries_its_policy_when_a_policy_decided() -> None:
    """Budget and rule denials name the policy and version that produced them."""
    case = next(c for c in CASES if c["name"].startswith("the spec example"))
    decision = decide(facts_for(case))
    (reason,) = decision.reasons
    assert (reason.policy_id, reason.policy_version) == ("bot_daily", 1)
    assert decision.policy_versions == (("bot_daily", 1),)


def test_a_rule_that_raises_denies_with_its_own_code() -> None:
    """An evaluator that errors is a deny (policy_evaluation_failed), never a skip."""
    broken = Policy(
        id="mystery",
        type="no_such_evaluator",
        scope=Scope.parse("org:acme"),
        params=BudgetParams(window="day", limit_usd=1),
    )
    facts = build_facts(policies=[*_policies(["open"]), broken])
    decision = decide(facts)
    assert not decision.allowed
    assert decision.codes == ["policy_evaluation_failed"]
    assert decision.reasons[0].policy_id == "mystery"


def test_shadow_results_carry_their_reasons() -> None:
    """A shadow policy's would-be denial is recorded with its code and numbers."""
    case = next(c for c in CASES if c["name"].startswith("a shadow budget that would deny"))
    decision = decide(facts_for(case))
    (shadow,) = decision.shadow
    assert shadow.policy_type == "budget"
    assert shadow.tier is Tier.DENY
    assert [r.code for r in shadow.reasons] == ["agent_daily_budget_exceeded"]
    assert "$10.00" in shadow.reasons[0].message
    # A shadow policy never reserves anything.
    assert all(c.policy_id != "trial_cap" for c in decision.claims)
    assert all(p.mode is PolicyMode.SHADOW for p in facts_for(case).policies if p.id == "trial_cap")


def test_a_zero_price_fails_closed() -> None:
    """A price of $0 cannot value a spend: it is denied like a missing price, never free."""
    facts = build_facts(policies=_policies(["open", "bot_daily"]), asset="base:ETH", price="0")
    decision = decide(facts)
    assert not decision.allowed


@pytest.mark.parametrize("base_units", [0, -1_000_000])
def test_a_non_positive_amount_fails_closed(base_units: int) -> None:
    """A zero or negative amount reaching decide is denied, never a $0 or negative claim."""
    facts = build_facts(policies=_policies(["open", "bot_daily"]), amount=base_units)
    decision = decide(facts)
    assert not decision.allowed
    assert all(claim.amount_micros >= 0 for claim in decision.claims)


def test_every_approval_policy_in_force_is_required() -> None:
    """Two approval policies at different scopes both apply: neither requirement is dropped."""
    cfo = policy(
        "cfo_approval", "approval", "org:acme", {"threshold_usd": "500", "approvers": ["cfo"]}
    )
    facts = build_facts(policies=[*_policies(["open", "two_of_three"]), cfo], amount="600.00")
    decision = decide(facts)
    assert decision.tier is Tier.APPROVAL
    requirements = tuple(getattr(decision, "approvals", ())) or (decision.approval,)
    required_by = {r.policy_id for r in requirements if r is not None}
    assert required_by >= {"two_of_three", "cfo_approval"}
