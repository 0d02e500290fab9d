"""Policy schemas: every type validates at write time and names the offending field."""

from __future__ import annotations

from typing import Any

import pytest

from treasurer.domain.errors import InvalidRequest, PolicyInvalid
from treasurer.domain.org import Scope, ScopeKind
from treasurer.domain.policies import (
    GRANTING_TYPES,
    POLICY_TYPES,
    BudgetParams,
    Policy,
    PolicyMode,
    make_policy,
    parse_params,
)
from treasurer.domain.windows import Window, WindowKind

AGENT = Scope(ScopeKind.AGENT, "procurement_bot")

GOOD: dict[str, dict[str, Any]] = {
    "budget": {"window": "day", "limit_usd": "1000.00", "max_count": 50},
    "spending_tiers": {
        "instant_max_usd": "100",
        "notify_max_usd": "1000",
        "delay_max_usd": "5000",
        "delay_seconds": 3600,
        "max_per_tx_usd": "20000",
    },
    "allowed_chains": {"chains": ["base", "solana"]},
    "allowed_assets": {"assets": ["base:USDC", "ETH"]},
    "recipients": {
        "allow": [{"address": "0xVendor", "label": "Acme Supplies", "chain": "base"}],
        "deny": [{"address": "0xBad"}],
    },
    "contracts": {
        "allow": [{"address": "0xRouter", "methods": ["0xa9059cbb"], "max_usd_per_call": "250"}]
    },
    "token_approvals": {"allow": [{"spender": "0xRouter", "asset": "USDC", "max_amount": "1000"}]},
    "message_signing": {
        "allow": [
            {
                "primary_type": "Permit",
                "domain_name": "USD Coin",
                "verifying_contract": "0xUSDC",
                "chain_id": 8453,
            }
        ]
    },
    "schedule": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"},
    "rate_limit": {"window": "rolling", "rolling_seconds": 3600, "max_count": 10},
    "counterparty_limit": {"window": "week", "limit_usd": "2500.50"},
    "fee_limit": {"max_fee_usd": "5.00", "max_gwei": 80},
    "approval": {
        "threshold_usd": "5000",
        "approvers": ["alice", "bob", "carol"],
        "required": 2,
        "expiry_seconds": 7200,
    },
}

#: One bad params example per type, and the field the error must name.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("budget", {"window": "day", "limit_usd": "abc"}, "params.limit_usd"),
    ("budget", {"window": "daily", "limit_usd": "10"}, "params.window"),
    ("budget", {"window": "day", "max_count": 0}, "params.max_count"),
    (
        "budget",
        {"window": "rolling", "rolling_seconds": -5, "limit_usd": "1"},
        "params.rolling_seconds",
    ),
    ("spending_tiers", {"notify_max_usd": "10"}, "params.instant_max_usd"),
    ("spending_tiers", {"instant_max_usd": "1", "delay_seconds": 0}, "params.delay_seconds"),
    ("allowed_chains", {"chains": []}, "params.chains"),
    ("allowed_chains", {"chains": "base"}, "params.chains"),
    ("allowed_assets", {"assets": [1]}, "params.assets[0]"),
    ("recipients", {"allow": [{"address": ""}]}, "params.allow[0].address"),
    ("recipients", {"deny": [{"label": "no address"}]}, "params.deny[0].address"),
    ("contracts", {"allow": []}, "params.allow"),
    (
        "contracts",
        {"allow": [{"address": "0x1", "max_usd_per_call": "-1"}]},
        "params.allow[0].max_usd_per_call",
    ),
    ("token_approvals", {"allow": [{"asset": "USDC"}]}, "params.allow[0].spender"),
    (
        "token_approvals",
        {"allow": [{"spender": "0x1", "allow_unlimited": "maybe"}]},
        "params.allow[0].allow_unlimited",
    ),
    ("message_signing", {"allow": [{"primary_type": ""}]}, "params.allow[0].primary_type"),
    (
        "message_signing",
        {"allow": [{"primary_type": "Permit", "chain_id": "base"}]},
        "params.allow[0].chain_id",
    ),
    ("schedule", {"days": ["monday"]}, "params.days[0]"),
    ("schedule", {"days": []}, "params.days"),
    ("rate_limit", {"window": "day", "max_count": 0}, "params.max_count"),
    ("rate_limit", {"window": "day"}, "params.max_count"),
    ("counterparty_limit", {"window": "day"}, "params.limit_usd"),
    ("counterparty_limit", {"window": "per_transaction", "limit_usd": "5"}, "params.window"),
    ("fee_limit", {"max_gwei": 0}, "params.max_gwei"),
    ("fee_limit", {"max_fee_usd": "1e3"}, "params.max_fee_usd"),
    ("approval", {"approvers": ["alice"]}, "params.threshold_usd"),
    ("approval", {"threshold_usd": "10", "required": 33}, "params.required"),
    ("approval", {"threshold_usd": "10", "expiry_seconds": 0}, "params.expiry_seconds"),
]


def _make(policy_type: str, params: object, **kwargs: Any) -> Policy:
    return make_policy(
        policy_id="p1", policy_type=policy_type, scope=AGENT, params=params, **kwargs
    )


def _refusal(policy_type: str, params: object, **kwargs: Any) -> PolicyInvalid:
    with pytest.raises(PolicyInvalid) as caught:
        _make(policy_type, params, **kwargs)
    return caught.value


def test_there_are_exactly_the_thirteen_spec_types() -> None:
    """The registry holds the 13 policy types of the spec, and only budgets and tiers grant."""
    assert set(POLICY_TYPES) == {
        "budget",
        "spending_tiers",
        "allowed_chains",
        "allowed_assets",
        "recipients",
        "contracts",
        "token_approvals",
        "message_signing",
        "schedule",
        "rate_limit",
        "counterparty_limit",
        "fee_limit",
        "approval",
    }
    assert set(GOOD) == set(POLICY_TYPES)
    assert {policy_type for policy_type, _, _ in BAD} == set(POLICY_TYPES)
    assert frozenset({"budget", "spending_tiers"}) == GRANTING_TYPES


@pytest.mark.parametrize("policy_type", sorted(GOOD))
def test_every_type_accepts_a_good_example(policy_type: str) -> None:
    """A well-formed params object of each type is accepted and typed."""
    built = _make(policy_type, GOOD[policy_type])
    assert built.type == policy_type
    assert built.mode is PolicyMode.ENFORCE
    assert isinstance(built.params, POLICY_TYPES[policy_type])


@pytest.mark.parametrize("policy_type", sorted(GOOD))
def test_params_dict_round_trips(policy_type: str) -> None:
    """params_dict gives JSON-ready params that validate back to the same policy params."""
    built = _make(policy_type, GOOD[policy_type])
    again = parse_params(policy_type, built.params_dict())
    assert again == built.params


@pytest.mark.parametrize(
    ("policy_type", "params", "field"), BAD, ids=[f"{t}-{f}" for t, _, f in BAD]
)
def test_every_type_refuses_a_bad_example_naming_the_field(
    policy_type: str, params: dict[str, Any], field: str
) -> None:
    """A bad params object is refused with PolicyInvalid whose field names the culprit."""
    error = _refusal(policy_type, params)
    assert error.field == field
    assert error.code == "policy_invalid"
    assert isinstance(error, InvalidRequest)
    assert field in error.message
    assert "'p1'" in error.message


@pytest.mark.parametrize("policy_type", sorted(GOOD))
def test_unknown_fields_are_refused_listing_accepted_ones(policy_type: str) -> None:
    """An unknown key is refused, and the message lists every field the type accepts."""
    error = _refusal(policy_type, {**GOOD[policy_type], "colour": "red"})
    assert error.field == "params.colour"
    assert "unknown field" in error.message
    for name in POLICY_TYPES[policy_type].model_fields:
        assert name in error.message


def test_unknown_field_inside_a_list_entry_is_refused() -> None:
    """Nested entries forbid unknown keys too (a typo never silently widens a policy)."""
    error = _refusal("recipients", {"allow": [{"address": "0x1", "lable": "typo"}]})
    assert error.field == "params.allow[0].lable"


@pytest.mark.parametrize(
    ("policy_type", "params", "field"),
    [
        ("budget", {"window": "day", "limit_usd": 1000.0}, "params.limit_usd"),
        ("spending_tiers", {"instant_max_usd": 0.5}, "params.instant_max_usd"),
        ("counterparty_limit", {"window": "day", "limit_usd": 99.99}, "params.limit_usd"),
        ("fee_limit", {"max_fee_usd": 2.5}, "params.max_fee_usd"),
        ("approval", {"threshold_usd": 100.0}, "params.threshold_usd"),
        (
            "contracts",
            {"allow": [{"address": "0x1", "max_usd_per_call": 1.5}]},
            "params.allow[0].max_usd_per_call",
        ),
        (
            "token_approvals",
            {"allow": [{"spender": "0x1", "max_amount": 1.5}]},
            "params.allow[0].max_amount",
        ),
        ("budget", {"window": "day", "max_count": 2.5}, "params.max_count"),
        ("fee_limit", {"max_gwei": 1.5}, "params.max_gwei"),
    ],
)
def test_floats_are_refused(policy_type: str, params: dict[str, Any], field: str) -> None:
    """A float where an exact amount or count belongs is refused, naming the field."""
    error = _refusal(policy_type, params)
    assert error.field == field


def test_float_usd_message_says_to_use_a_string() -> None:
    """The float refusal tells the author to write a decimal string."""
    error = _refusal("budget", {"window": "day", "limit_usd": 1000.0})
    assert "string" in error.message


@pytest.mark.parametrize(
    ("params", "usd"),
    [
        ({"window": "day", "limit_usd": "1000"}, 1_000_000_000),
        ({"window": "day", "limit_usd": "0.000001"}, 1),
        ({"window": "day", "limit_usd": 1000}, 1_000_000_000),
        ({"window": "day", "limit_usd": "0"}, 0),
    ],
)
def test_usd_params_become_micro_dollars(params: dict[str, Any], usd: int) -> None:
    """USD in policies is parsed to exact micro-dollars (JSON integers and $0 allowed)."""
    built = _make("budget", params)
    assert isinstance(built.params, BudgetParams)
    assert built.params.limit_usd == usd


@pytest.mark.parametrize(
    ("policy_type", "params", "names"),
    [
        ("budget", {"window": "day"}, "limit_usd"),
        ("budget", {"window": "rolling", "limit_usd": "5"}, "rolling_seconds"),
        ("budget", {"window": "day", "rolling_seconds": 60, "limit_usd": "5"}, "rolling_seconds"),
        ("budget", {"window": "per_transaction", "max_count": 3}, "limit_usd"),
        ("budget", {"window": "per_transaction", "limit_usd": "5", "max_count": 3}, "max_count"),
        ("spending_tiers", {"instant_max_usd": "100", "notify_max_usd": "50"}, "notify_max_usd"),
        (
            "spending_tiers",
            {"instant_max_usd": "100", "max_per_tx_usd": "50"},
            "max_per_tx_usd",
        ),
        ("spending_tiers", {"instant_max_usd": "1", "delay_max_usd": "5"}, "delay_seconds"),
        ("recipients", {}, "allow"),
        ("contracts", {"allow": [{"address": "0x1", "methods": ["transfer"]}]}, "selector"),
        ("schedule", {"days": ["mon"], "start": "17:00", "end": "09:00"}, "start"),
        ("schedule", {"days": ["mon"], "start": "9:00"}, "start"),
        ("schedule", {"days": ["mon"], "end": "25:00"}, "end"),
        ("fee_limit", {}, "max_fee_usd"),
        ("approval", {"threshold_usd": "1", "approvers": ["a"], "required": 2}, "required"),
    ],
)
def test_cross_field_shape_errors_name_the_field_in_the_message(
    policy_type: str, params: dict[str, Any], names: str
) -> None:
    """Rules spanning fields are refused at write time; the message names what to fix."""
    error = _refusal(policy_type, params)
    assert error.field is not None and error.field.startswith("params")
    assert names in error.message


def test_approval_amount_in_token_approvals_is_validated_at_write_time() -> None:
    """A token_approvals max_amount that is not a positive decimal is refused when written."""
    for bad in ("abc", "-5", "1e3", "0"):
        error = _refusal("token_approvals", {"allow": [{"spender": "0x1", "max_amount": bad}]})
        assert error.field == "params.allow[0].max_amount"


@pytest.mark.parametrize(
    ("policy_type", "params"),
    [
        ("schedule", {"days": ["mon"], "start": "09:00\n"}),
        ("schedule", {"days": ["mon"], "end": "17:00\n"}),
        ("contracts", {"allow": [{"address": "0x1", "methods": ["0xa9059cbb\n"]}]}),
    ],
)
def test_pattern_checked_text_refuses_a_trailing_newline(
    policy_type: str, params: dict[str, Any]
) -> None:
    """Times and selectors with a trailing newline are malformed (a regex '$' must not pass)."""
    error = _refusal(policy_type, params)
    assert error.field is not None and error.field.startswith("params")


def test_approval_approvers_must_be_distinct() -> None:
    """Naming one approver twice cannot make a 2-of-N rule satisfiable by one person."""
    error = _refusal(
        "approval", {"threshold_usd": "1", "approvers": ["alice", "alice"], "required": 2}
    )
    assert error.field is not None and error.field.startswith("params")
    assert "approvers" in error.message or "required" in error.message


def test_unknown_type_is_refused_listing_the_types() -> None:
    """An unknown policy type names field 'type' and lists every valid type."""
    error = _refusal("budgets", {})
    assert error.field == "type"
    for name in POLICY_TYPES:
        assert name in error.message


@pytest.mark.parametrize("params", [[], "window=day", None, 5])
def test_params_must_be_an_object(params: object) -> None:
    """Params that are not a mapping are refused with field 'params'."""
    assert _refusal("budget", params).field == "params"


@pytest.mark.parametrize("mode", ["audit", "ENFORCE", ""])
def test_bad_mode_is_refused(mode: str) -> None:
    """Only 'enforce' and 'shadow' are modes."""
    error = _refusal("budget", GOOD["budget"], mode=mode)
    assert error.field == "mode"


def test_shadow_mode_is_accepted() -> None:
    """A policy can be written in shadow mode."""
    assert _make("budget", GOOD["budget"], mode="shadow").mode is PolicyMode.SHADOW


@pytest.mark.parametrize("policy_id", ["", "has space", "x" * 129, "semi;colon", "ünï"])
def test_bad_policy_ids_are_refused(policy_id: str) -> None:
    """Policy ids are 1-128 characters of letters, digits, '_', '-', '.' or ':'."""
    with pytest.raises(PolicyInvalid) as caught:
        make_policy(policy_id=policy_id, policy_type="budget", scope=AGENT, params=GOOD["budget"])
    assert caught.value.field == "id"


def test_rolling_budget_gives_a_rolling_window() -> None:
    """A rolling budget's window carries its length in seconds."""
    built = _make("budget", {"window": "rolling", "rolling_seconds": 86400, "limit_usd": "5"})
    assert isinstance(built.params, BudgetParams)
    assert built.params.as_window() == Window(WindowKind.ROLLING, 86400)


def test_policies_are_immutable_values() -> None:
    """Validated params are frozen: a policy cannot be edited after validation."""
    built = _make("budget", GOOD["budget"])
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own frozen error
        built.params.limit_usd = 1  # type: ignore[misc]
