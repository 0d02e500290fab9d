"""Laws of the decision, checked on generated facts: order never matters, deny dominates."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treasurer.domain.decision import decide
from treasurer.domain.facts import Facts, SpendKind
from treasurer.domain.org import SCOPE_LOCK_RANK
from treasurer.domain.outcome import TIER_RANK, Decision, Tier
from treasurer.domain.policies import GRANTING_TYPES, Policy, PolicyMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds strategies.py
from strategies import POLICY_TYPE_NAMES, facts_st, policies_st, policy

LAWS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
#: The policy type a special spend needs before it can be allowed at all.
GATE_TYPE = {
    SpendKind.CONTRACT_CALL: "contracts",
    SpendKind.APPROVE: "token_approvals",
    SpendKind.SIGN_MESSAGE: "message_signing",
}


def _summary(decision: Decision) -> tuple[object, ...]:
    return (
        decision.allowed,
        decision.tier,
        sorted(decision.codes),
        decision.reasons,
        [c.key for c in decision.claims],
        decision.headroom,
        decision.delay_s,
        decision.approval,
        decision.shadow,
        decision.value_usd_micros,
        decision.policy_versions,
    )


def _with(facts: Facts, extra: Policy) -> Facts:
    return replace(facts, policies=(*facts.policies, extra))


@LAWS
@given(facts=facts_st())
def test_decide_never_raises_and_is_well_formed(facts: Facts) -> None:
    """For any generated facts, decide returns a coherent decision instead of raising."""
    decision = decide(facts)
    assert decision.allowed is (decision.tier is not Tier.DENY)
    assert decision.allowed or decision.reasons, "a denial always says why"
    assert all(SNAKE.match(r.code) for r in decision.reasons)
    assert decision.value_usd_micros is not None or not decision.allowed
    assert len(decision.headroom) == len(decision.claims)
    assert [h.key for h in decision.headroom] == [c.key for c in decision.claims]
    orders = [(SCOPE_LOCK_RANK[c.scope.kind], c.key) for c in decision.claims]
    assert orders == sorted(orders), "claims come in the global lock order"
    assert len({c.key for c in decision.claims}) == len(decision.claims)
    if decision.allowed:
        enforced = [p for p in facts.policies if p.mode is PolicyMode.ENFORCE]
        assert any(p.type in GRANTING_TYPES for p in enforced), "default deny"
        assert all(h.fits for h in decision.headroom), "an allowed spend fits every budget"
        assert all(r.code == "approval_required" for r in decision.reasons)
    assert (decision.approval is not None) is (decision.tier is Tier.APPROVAL)
    assert decision.delay_s == 0 or decision.tier is Tier.DELAY
    assert {s.policy_id for s in decision.shadow} == {
        p.id for p in facts.policies if p.mode is PolicyMode.SHADOW
    }


@LAWS
@given(facts=facts_st())
def test_an_allowed_spend_that_moves_value_has_a_registered_priced_asset(facts: Facts) -> None:
    """Fail closed: only a message signature may be allowed without a known, priced asset."""
    decision = decide(facts)
    if decision.allowed and facts.request.kind is not SpendKind.SIGN_MESSAGE:
        assert facts.asset is not None and facts.price is not None


@LAWS
@given(
    facts=facts_st(),
    kind=st.sampled_from([k for k in SpendKind if k is not SpendKind.SIGN_MESSAGE]),
)
def test_a_spend_naming_no_asset_is_never_allowed(facts: Facts, kind: SpendKind) -> None:
    """Fail closed: a transfer, approval or call that names no asset is denied, not valued $0."""
    request = replace(facts.request, asset_id=None, kind=kind)
    decision = decide(replace(facts, request=request, asset=None, price=None))
    assert not decision.allowed


@LAWS
@given(facts=facts_st())
def test_decide_is_deterministic(facts: Facts) -> None:
    """The same facts always give the same decision (pure function, no hidden inputs)."""
    assert decide(facts) == decide(facts)


@LAWS
@given(data=st.data(), facts=facts_st())
def test_policy_order_never_matters(data: st.DataObject, facts: Facts) -> None:
    """Any permutation of the policies gives the same outcome, reasons, claims and headroom."""
    shuffled = data.draw(st.permutations(facts.policies))
    original = decide(facts)
    permuted = decide(replace(facts, policies=tuple(shuffled)))
    assert _summary(permuted) == _summary(original)


@LAWS
@given(data=st.data(), facts=facts_st())
def test_deny_dominates(data: st.DataObject, facts: Facts) -> None:
    """Adding an enforced policy that denies this spend on its own always gives a deny."""
    target = facts.request.spender if facts.request.kind is SpendKind.APPROVE else None
    target = target or facts.request.recipient or "0xnobody"
    denier = data.draw(
        st.sampled_from(
            [
                policy("zz_deny", "allowed_chains", "org:acme", {"chains": ["nowhere"]}),
                policy("zz_deny", "allowed_assets", "org:acme", {"assets": ["nowhere:NOPE"]}),
                policy("zz_deny", "recipients", "org:acme", {"deny": [{"address": target}]}),
                policy(
                    "zz_deny",
                    "fee_limit",
                    "org:acme",
                    {"max_gwei": 1, "max_fee_usd": "0"},
                ),
            ]
        )
    )
    if denier.type == "fee_limit" and (
        facts.request.fee_usd_micros == 0 and (facts.request.gas_price_gwei or 2) <= 1
    ):
        return  # that fee policy happens to allow this spend; not a denier here
    decision = decide(_with(facts, denier))
    assert not decision.allowed
    assert decision.tier is Tier.DENY


@LAWS
@given(data=st.data(), facts=facts_st())
def test_adding_a_non_granting_policy_never_turns_deny_into_allow(
    data: st.DataObject, facts: Facts
) -> None:
    """A denied spend stays denied when any policy that cannot grant it is added."""
    before = decide(facts)
    lifting = set(GRANTING_TYPES)
    if facts.request.kind in GATE_TYPE:
        lifting.add(GATE_TYPE[facts.request.kind])
    extra = data.draw(
        policies_st(
            "zz_extra",
            types=[t for t in POLICY_TYPE_NAMES if t not in lifting],
            modes=["enforce"],
        )
    )
    after = decide(_with(facts, extra))
    if not before.allowed:
        assert not after.allowed
        # Every reason of the first denial still stands.
        assert set(before.reasons) <= set(after.reasons) | {
            r for r in before.reasons if r.code == "approval_required"
        }


@LAWS
@given(data=st.data(), facts=facts_st())
def test_adding_any_enforced_policy_never_loosens_a_granted_spend(
    data: st.DataObject, facts: Facts
) -> None:
    """Once a spend is granted, adding any enforced policy never lowers its tier."""
    before = decide(facts)
    extra = data.draw(policies_st("zz_extra", modes=["enforce"]))
    after = decide(_with(facts, extra))
    if before.allowed:
        assert TIER_RANK[after.tier] >= TIER_RANK[before.tier]
        if after.tier is before.tier is Tier.DELAY:
            assert after.delay_s >= before.delay_s


@LAWS
@given(data=st.data(), facts=facts_st())
def test_shadow_policies_never_change_the_outcome(data: st.DataObject, facts: Facts) -> None:
    """Adding a shadow policy changes nothing but the recorded shadow results."""
    before = decide(facts)
    extra = data.draw(policies_st("zz_shadow", modes=["shadow"]))
    after = decide(_with(facts, extra))
    assert (after.allowed, after.tier, after.reasons, after.claims, after.headroom) == (
        before.allowed,
        before.tier,
        before.reasons,
        before.claims,
        before.headroom,
    )
    assert (after.delay_s, after.approval) == (before.delay_s, before.approval)
    assert "zz_shadow" in {s.policy_id for s in after.shadow}


@LAWS
@given(facts=facts_st())
def test_shadow_result_matches_enforcing_the_policy_alone(facts: Facts) -> None:
    """A shadow policy's would_deny is what enforcing it alone (with a grant) would say."""
    decision = decide(facts)
    for shadow in decision.shadow:
        if decision.value_usd_micros is None:
            assert shadow.would_deny
        else:
            assert shadow.would_deny is (shadow.tier is Tier.DENY)
