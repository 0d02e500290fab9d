"""The org file: parsing, validation errors, export round trip and plan rendering."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
import yaml

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import OrgFileInvalid
from treasurer.domain.org import Scope, ScopeKind
from treasurer.domain.plan import make_plan
from treasurer.domain.policies import BudgetParams, make_policy
from treasurer.service.orgfile import export_org_file, parse_org_file, render_plan

Raw = dict[str, Any]


def example_data() -> Raw:
    """The shipped example org file, YAML-loaded the way the CLI loads it."""
    text = (resources.files("treasurer") / "examples" / "org.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def data() -> Raw:
    return example_data()


@pytest.fixture
def cfg(data: Raw) -> OrgConfig:
    return parse_org_file(data)


def budget_limits(cfg: OrgConfig) -> dict[str, tuple[str, int]]:
    """Every budget policy as id -> (window, limit in micro-dollars)."""
    out: dict[str, tuple[str, int]] = {}
    for policy in cfg.policies.values():
        if policy.type == "budget":
            params = policy.params
            assert isinstance(params, BudgetParams)
            assert params.limit_usd is not None
            out[policy.id] = (params.window, params.limit_usd)
    return out


def test_example_has_the_required_budgets(cfg: OrgConfig) -> None:
    """The example states the product pitch: org, department and agent ceilings, per-tx max."""
    budgets = budget_limits(cfg)
    assert budgets["org:acme:budget:day"] == ("day", 50_000_000_000)
    assert budgets["department:engineering:budget:day"] == ("day", 20_000_000_000)
    assert budgets["department:marketing:budget:day"] == ("day", 10_000_000_000)
    assert budgets["department:operations:budget:day"] == ("day", 15_000_000_000)
    assert budgets["agent:procurement_bot:budget:day"] == ("day", 800_000_000)
    assert budgets["agent:procurement_bot:per_tx_max"] == ("per_transaction", 200_000_000)


def test_example_procurement_bot(cfg: OrgConfig) -> None:
    """procurement_bot: operations, three chains, second-agent approval above $500, 2 wallets."""
    assert cfg.agents["procurement_bot"].department_id == "operations"
    chains = cfg.policies["agent:procurement_bot:allowed_chains"].params_dict()
    assert chains == {"chains": ["base", "ethereum", "arbitrum"]}
    approval = cfg.policies["agent:procurement_bot:approval"].params_dict()
    assert approval["threshold_usd"] == "500.00"
    assert approval["second_agent"] is True
    wallets = {w.id: w for w in cfg.wallets.values() if w.agent_id == "procurement_bot"}
    assert {(w.chain, w.vendor, w.custody.value) for w in wallets.values()} == {
        ("base", "coinbase-cdp", "external"),
        ("ethereum", "metamask", "external"),
    }


def test_example_assets_and_settings(cfg: OrgConfig) -> None:
    """USDC is a fixed $1 stablecoin on three chains, ETH is manually priced; 7 years audit."""
    usdc = [a for a in cfg.assets.values() if a.symbol == "USDC"]
    assert {a.chain for a in usdc} == {"base", "ethereum", "arbitrum"}
    assert all(a.price_source == "fixed" and a.fixed_price_atto == 10**18 for a in usdc)
    eth = cfg.assets["ethereum:ETH"]
    assert (eth.price_source, eth.address, eth.max_price_age_s) == ("manual", None, 3600)
    assert "freeze_wallets" in cfg.settings.on_decommission
    assert cfg.settings.on_breach == ("block", "alert_finance")
    assert cfg.settings.finance_contacts == ("finance@acme.example",)
    assert cfg.settings.audit_retention_days == 7 * 365
    assert cfg.settings.authorization_ttl_s == 900


def test_example_has_agents_in_every_department(cfg: OrgConfig) -> None:
    """More agents than the pitch's one, on several chains and vendors."""
    assert {a.department_id for a in cfg.agents.values()} == {
        "engineering",
        "marketing",
        "operations",
    }
    assert len({w.vendor for w in cfg.wallets.values()}) >= 4
    assert len({w.chain for w in cfg.wallets.values()}) == 3


def test_first_apply_creates_everything(cfg: OrgConfig) -> None:
    """Against an empty store every object of the file is a create, and nothing else."""
    plan = make_plan(None, cfg)
    expected = (
        {("org", "acme"), ("settings", "settings")}
        | {("department", d) for d in cfg.departments}
        | {("agent", a) for a in cfg.agents}
        | {("wallet", w) for w in cfg.wallets}
        | {("asset", a) for a in cfg.assets}
        | {("policy", p) for p in cfg.policies}
    )
    assert {c.action for c in plan.changes} == {"create"}
    assert {(c.kind, c.id) for c in plan.changes} == expected
    assert all(p.version == 1 for p in plan.desired.policies.values())


def test_reapply_is_a_no_op(cfg: OrgConfig, data: Raw) -> None:
    """Applying the same file twice (parsed twice) plans nothing."""
    plan = make_plan(cfg, parse_org_file(data))
    assert plan.empty
    assert render_plan(plan) == ["No changes. The org is up to date."]


def test_export_round_trip_is_empty(cfg: OrgConfig) -> None:
    """export -> YAML text -> parse gives the same config: the plan is empty."""
    text = yaml.safe_dump(export_org_file(cfg), sort_keys=False)
    assert make_plan(cfg, parse_org_file(yaml.safe_load(text))).empty


def test_export_folds_generated_policies_into_shorthand(cfg: OrgConfig) -> None:
    """Shorthand-generated policies come back as shorthand; only full-form ones are listed."""
    exported = export_org_file(cfg)
    assert [p["id"] for p in exported["policies"]] == ["no-burn-address", "procurement-rate-watch"]
    bot = exported["agents"][0]
    assert bot["budgets"] == [{"window": "day", "limit_usd": "800.00"}]
    assert bot["per_tx_max_usd"] == "200.00"
    assert bot["approval"] == {"threshold_usd": "500.00", "second_agent": True}
    assert exported["org"]["budgets"] == [{"window": "day", "limit_usd": "50000.00"}]


def test_export_keeps_unfoldable_policies_in_full(cfg: OrgConfig) -> None:
    """A policy with a generated-looking id but shadow mode is not shorthand; it still round
    trips, as do rolling windows."""
    scope = Scope(ScopeKind.AGENT, "ads_bot")
    extra = {
        "agent:ads_bot:budget:week": make_policy(
            policy_id="agent:ads_bot:budget:week",
            policy_type="budget",
            scope=scope,
            params={"window": "week", "limit_usd": "5000"},
            mode="shadow",
        ),
        "agent:ads_bot:budget:rolling3600": make_policy(
            policy_id="agent:ads_bot:budget:rolling3600",
            policy_type="budget",
            scope=scope,
            params={"window": "rolling", "rolling_seconds": 3600, "max_count": 10},
        ),
    }
    changed = dataclasses.replace(cfg, policies={**cfg.policies, **extra})
    exported = export_org_file(changed)
    full_ids = [p["id"] for p in exported["policies"]]
    assert "agent:ads_bot:budget:week" in full_ids
    assert "agent:ads_bot:budget:rolling3600" not in full_ids
    assert make_plan(changed, parse_org_file(exported)).empty


def test_changing_one_budget_is_one_update(cfg: OrgConfig, data: Raw) -> None:
    """Raising procurement_bot's daily budget changes exactly that policy, at version 2."""
    data["agents"][0]["budgets"][0]["limit_usd"] = "900.00"
    plan = make_plan(cfg, parse_org_file(data))
    assert [(c.action, c.kind, c.id) for c in plan.changes] == [
        ("update", "policy", "agent:procurement_bot:budget:day")
    ]
    assert plan.desired.policies["agent:procurement_bot:budget:day"].version == 2
    assert render_plan(plan) == [
        "~ policy agent:procurement_bot:budget:day (params)",
        "Plan: 0 to create, 1 to change, 0 to remove.",
    ]


def test_removing_a_wallet_is_one_delete(cfg: OrgConfig, data: Raw) -> None:
    """Dropping a wallet from the file plans its removal and nothing else."""
    data["agents"][0]["wallets"].pop()
    plan = make_plan(cfg, parse_org_file(data))
    assert render_plan(plan) == [
        "- wallet pb-ethereum",
        "Plan: 0 to create, 0 to change, 1 to remove.",
    ]


def test_render_plan_detail_shows_old_and_new(cfg: OrgConfig, data: Raw) -> None:
    """With detail, an update shows each changed field's old and new value."""
    data["org"]["name"] = "Acme Inc"
    lines = render_plan(make_plan(cfg, parse_org_file(data)), detail=True)
    assert lines == [
        "~ org acme (name)",
        '    name: "Acme Corp" -> "Acme Inc"',
        "Plan: 0 to create, 1 to change, 0 to remove.",
    ]


def test_reordered_actions_are_not_a_change(cfg: OrgConfig, data: Raw) -> None:
    """on_breach is a set of reactions: writing it in another order plans nothing."""
    data["settings"]["on_breach"] = ["alert_finance", "block"]
    assert make_plan(cfg, parse_org_file(data)).empty


def test_minimal_file_uses_defaults() -> None:
    """Only version and org id are required; settings fall back to safe defaults."""
    cfg = parse_org_file({"version": 1, "org": {"id": "solo"}})
    assert (cfg.org.name, cfg.org.timezone) == ("solo", "UTC")
    assert cfg.settings.authorization_ttl_s == 900
    assert not cfg.policies


Mutation = Callable[[Raw], None]


def _set(path: str, value: object) -> Mutation:
    """A mutation setting ``a.b[0].c`` (dotted, with list indexes) to ``value``."""

    def apply(data: Raw) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        node: Any = data
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = value

    return apply


def _both(*mutations: Mutation) -> Mutation:
    def apply(data: Raw) -> None:
        for mutation in mutations:
            mutation(data)

    return apply


BAD_FILES: list[tuple[str, Mutation, str | None, str]] = [
    (
        "float money",
        _set("agents[0].budgets[0].limit_usd", 800.0),
        "agents[0].budgets[0].limit_usd",
        'got a float (800.0); write money as a quoted string like "800.00"',
    ),
    (
        "float per-tx max",
        _set("agents[0].per_tx_max_usd", 200.5),
        "agents[0].per_tx_max_usd",
        'quoted string like "200.50"',
    ),
    (
        "unknown key",
        _set("agents[0].budget", []),
        "agents[0].budget",
        "unknown key 'budget' (did you mean 'budgets'?); allowed keys here: id, name",
    ),
    (
        "unknown top-level key",
        _set("wallets", []),
        "wallets",
        "allowed keys here: version, org",
    ),
    (
        "unknown department",
        _set("agents[2].department", "opps"),
        "agents[2].department",
        "unknown department 'opps'; known: engineering, marketing, operations",
    ),
    (
        "bad timezone",
        _set("org.timezone", "America/NewYork"),
        "org.timezone",
        "did you mean 'America/New_York'?",
    ),
    (
        "duplicate agent id",
        _set("agents[1].id", "procurement_bot"),
        "agents[1].id",
        "first defined at agents[0].id",
    ),
    (
        "duplicate wallet id across agents",
        _set("agents[1].wallets[0].id", "pb-base"),
        "agents[1].wallets[0].id",
        "first defined at agents[0].wallets[0].id",
    ),
    (
        "duplicate wallet address",
        _set("agents[2].wallets[0].address", "0x1111111111111111111111111111111111111111"),
        "agents[2].wallets[0].address",
        "first defined at agents[0].wallets[0].address",
    ),
    (
        "policy id clashing with a generated one",
        _set("policies[0].id", "agent:procurement_bot:approval"),
        "policies[0].id",
        "first defined at agents[0].approval",
    ),
    (
        "fixed price on a non-stablecoin",
        _set("assets[3].price", {"source": "fixed", "usd": "3000.00"}),
        "assets[3].price.source",
        "add `stablecoin: true`",
    ),
    (
        "zero peg",
        _set("assets[0].price.usd", "0"),
        "assets[0].price.usd",
        "price of zero",
    ),
    (
        "decimals out of range",
        _set("assets[0].decimals", 40),
        "assets[0].decimals",
        "use 0..36",
    ),
    (
        "bad scope string",
        _set("policies[1].scope", "team:ops"),
        "policies[1].scope",
        'write "org", "department:<id>", "agent:<id>" or "wallet:<id>"',
    ),
    (
        "scope target missing",
        _set("policies[1].scope", "agent:nobody"),
        "policies[1].scope",
        "unknown agent 'nobody'; known: ads_bot, infra_bot, procurement_bot",
    ),
    (
        "bad policy param",
        _set("policies[1].params.window", "fortnight"),
        "policies[1].params.window",
        "Input should be 'day'",
    ),
    (
        "unknown policy param",
        _set("policies[1].params.limit", 3),
        "policies[1].params.limit",
        "rate_limit accepts: window, rolling_seconds, max_count",
    ),
    (
        "bad policy mode",
        _set("policies[1].mode", "dry-run"),
        "policies[1].mode",
        "must be 'enforce' or 'shadow'",
    ),
    (
        "unknown policy type",
        _set("policies[1].type", "velocity"),
        "policies[1].type",
        "use one of: allowed_assets",
    ),
    (
        "parent cycle",
        _both(
            _set("departments[0].parent", "marketing"),
            _set("departments[1].parent", "engineering"),
        ),
        "departments[0].parent",
        "cycle (engineering -> marketing -> engineering)",
    ),
    (
        "unknown parent",
        _set("departments[0].parent", "rnd"),
        "departments[0].parent",
        "unknown department 'rnd'",
    ),
    (
        "two budgets with one window",
        _set("agents[1].budgets[1].window", "day"),
        "agents[1].budgets[1].window",
        "agents[1].budgets[0] already has window 'day'",
    ),
    (
        "per-transaction budget in budgets",
        _set("agents[1].budgets[1]", {"window": "per_transaction", "limit_usd": "5"}),
        "agents[1].budgets[1].window",
        "per_tx_max_usd",
    ),
    (
        "tiers out of order",
        _set("agents[1].tiers.notify_max_usd", "100.00"),
        "agents[1].tiers",
        "must not be below",
    ),
    (
        "chains not a list",
        _set("agents[0].allowed_chains", "base"),
        "agents[0].allowed_chains",
        "valid list",
    ),
    (
        "unquoted address",
        _set("agents[0].wallets[0].address", 0x1111),
        "agents[0].wallets[0].address",
        "put it in quotes",
    ),
    (
        "unknown vendor",
        _set("agents[0].wallets[0].vendor", "coinbase"),
        "agents[0].wallets[0].vendor",
        "did you mean 'coinbase-cdp'?",
    ),
    (
        "bad custody",
        _set("agents[0].wallets[0].custody", "self"),
        "agents[0].wallets[0].custody",
        "use local or external",
    ),
    (
        "local custody with another vendor",
        _set("agents[0].wallets[0].custody", "local"),
        "agents[0].wallets[0].vendor",
        "vendor: treasurer",
    ),
    (
        "missing wallet id",
        lambda data: data["agents"][0]["wallets"][0].pop("id"),
        "agents[0].wallets[0].id",
        "missing; add `id:`",
    ),
    (
        "bad decommission action",
        _set("settings.on_decommission", ["freeze_wallet"]),
        "settings.on_decommission[0]",
        "did you mean 'freeze_wallets'?",
    ),
    (
        "bad retention",
        _set("settings.audit_retention", "7 years"),
        "settings.audit_retention",
        "1d, 1y",
    ),
    (
        "retention twice",
        _set("settings.audit_retention_days", 30),
        "settings.audit_retention_days",
        "not both",
    ),
    ("wrong version", _set("version", 2), "version", "write `version: 1`"),
    ("id with a colon", _set("agents[0].id", "ops:bot"), "agents[0].id", "like procurement_bot"),
]


@pytest.mark.parametrize(
    ("mutate", "field", "phrase"),
    [pytest.param(m, f, p, id=name) for name, m, f, p in BAD_FILES],
)
def test_bad_files_name_the_path_and_the_fix(
    data: Raw, mutate: Mutation, field: str, phrase: str
) -> None:
    """Each broken file fails with the file name, the path (also in ``.field``) and a fix."""
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(OrgFileInvalid) as caught:
        parse_org_file(bad, source="acme.yaml")
    error = caught.value
    assert error.field == field
    assert error.message.startswith(f"acme.yaml: {field}: ")
    assert phrase in error.message
    assert error.code == "org_file_invalid"


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (None, "the file is empty"),
        ([1, 2], "expected a mapping"),
        ({"version": 1}, "org: missing; add `org:` to the file"),
    ],
)
def test_unusable_documents(data: object, phrase: str) -> None:
    """Empty files and non-mappings are refused with a message saying how to start."""
    with pytest.raises(OrgFileInvalid) as caught:
        parse_org_file(data)
    assert caught.value.message.startswith("org.yaml: ")
    assert phrase in caught.value.message


def test_alias_loop_is_refused() -> None:
    """A self-referencing YAML alias would recurse forever; it is a depth error instead."""
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(OrgFileInvalid, match="nested more than"):
        parse_org_file({"version": 1, "org": {"id": "x"}, "agents": loop})
