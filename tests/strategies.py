"""Shared test world and Hypothesis strategies for the pure domain.

Two things live here:

- a small, fixed **world** (one org in New York, nested departments, two agents, their wallets,
  three assets) and :func:`build_facts`, which turns a few readable keywords into the
  :class:`~treasurer.domain.facts.Facts` that :func:`~treasurer.domain.decision.decide` reads;
- **strategies** for money (decimals, base units, decimal strings, USD micros), policies of
  every type at every scope, and whole generated ``Facts`` for the decision laws.

Nothing here reads the real clock: every moment is a fixed, timezone-aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from treasurer.domain.budgets import BudgetBalance, claim_key
from treasurer.domain.config import OrgConfig
from treasurer.domain.facts import (
    Facts,
    PriceQuote,
    SpendKind,
    SpendRequest,
    TypedDataDomain,
    normalize_address,
)
from treasurer.domain.money import (
    MAX_DECIMALS,
    MAX_UINT256,
    MAX_USD_MICROS,
    PRICE_SCALE,
    Asset,
    parse_amount,
    parse_usd,
)
from treasurer.domain.org import (
    Agent,
    AgentStatus,
    Department,
    Org,
    Scope,
    Wallet,
    WalletStatus,
    department_chain,
)
from treasurer.domain.policies import (
    BudgetParams,
    CounterpartyLimitParams,
    Policy,
    RateLimitParams,
    make_policy,
)
from treasurer.domain.windows import period_of

# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------

#: Tuesday 2026-03-10, 11:00 in New York (EDT, two days after the spring DST change).
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)

ORG = Org(id="acme", name="Acme Corp", timezone="America/New_York")

DEPARTMENTS: dict[str, Department] = {
    "operations": Department("operations", "Operations"),
    "procurement": Department("procurement", "Procurement", parent_id="operations"),
    "research": Department("research", "Research"),
}

AGENTS: dict[str, Agent] = {
    "procurement_bot": Agent("procurement_bot", "Procurement bot", "procurement"),
    "research_bot": Agent("research_bot", "Research bot", "research"),
}

WALLETS: dict[str, Wallet] = {
    "w_base": Wallet(
        "w_base", "procurement_bot", "base", "0xAbC0000000000000000000000000000000000001"
    ),
    "w_base2": Wallet(
        "w_base2", "procurement_bot", "base", "0xAbC0000000000000000000000000000000000002"
    ),
    "w_sol": Wallet(
        "w_sol", "procurement_bot", "solana", "So1anaWa11et1111111111111111111111111111111"
    ),
    "w_research": Wallet(
        "w_research", "research_bot", "base", "0xDeF0000000000000000000000000000000000003"
    ),
}

USDC_BASE = Asset(
    id="base:USDC",
    chain="base",
    symbol="USDC",
    decimals=6,
    address="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    price_source="fixed",
    fixed_price_atto=PRICE_SCALE,
)
ETH_BASE = Asset(id="base:ETH", chain="base", symbol="ETH", decimals=18, price_source="manual")
USDC_SOL = Asset(
    id="solana:USDC",
    chain="solana",
    symbol="USDC",
    decimals=6,
    address="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
    price_source="fixed",
    fixed_price_atto=PRICE_SCALE,
)
ASSETS: dict[str, Asset] = {a.id: a for a in (USDC_BASE, ETH_BASE, USDC_SOL)}

#: The price each asset has unless a case says otherwise (USD per whole token).
DEFAULT_PRICES: dict[str, str] = {"base:USDC": "1", "base:ETH": "3000", "solana:USDC": "1"}

#: Addresses used as recipients, spenders and contracts (EVM, mixed case on purpose).
VENDOR = "0xVeNd000000000000000000000000000000000001"
OTHER = "0x0th3r00000000000000000000000000000000002"
ROUTER = "0xR0uTeR0000000000000000000000000000000003"
TRANSFER_SELECTOR = "0xa9059cbb"


def usd(text: str) -> int:
    """``usd("999.00")`` → 999_000_000 micro-dollars."""
    return parse_usd(text)


def price_atto(text: str) -> int:
    """A USD price per whole token as atto-dollars (``"3000"`` → 3000 x 10^18)."""
    return usd(text) * 10**12


def policy(
    policy_id: str,
    policy_type: str,
    scope: str,
    params: Mapping[str, Any] | None = None,
    *,
    mode: str = "enforce",
    version: int = 1,
) -> Policy:
    """Build a validated policy: ``policy("daily", "budget", "agent:bot", {...})``."""
    return make_policy(
        policy_id=policy_id,
        policy_type=policy_type,
        scope=Scope.parse(scope),
        params=dict(params or {}),
        mode=mode,
        version=version,
    )


def balance_key(pol: Policy, now: datetime, timezone: str, subject: str = "") -> str:
    """The claim key the decision uses for ``pol`` at ``now`` (what balances are keyed by)."""
    params = pol.params
    assert isinstance(params, BudgetParams | RateLimitParams | CounterpartyLimitParams)
    window = params.as_window()
    return claim_key(pol.id, period_of(window, now, timezone), subject)


def build_facts(
    *,
    policies: Sequence[Policy] = (),
    amount: str | int = "10.00",
    asset: str | None = "base:USDC",
    wallet: str | None = "w_base",
    agent: str | None = "procurement_bot",
    kind: SpendKind | str = SpendKind.TRANSFER,
    recipient: str | None = VENDOR,
    chain: str | None = None,
    contract: str | None = None,
    method: str | None = None,
    spender: str | None = None,
    typed_data: TypedDataDomain | None = None,
    fee_usd: str | None = None,
    gas_price_gwei: int | None = None,
    price: str | bool | None = True,
    price_age_s: float = 60.0,
    price_source: str | None = None,
    agent_status: AgentStatus | str | None = None,
    wallet_status: WalletStatus | str | None = None,
    frozen: Sequence[str] = (),
    used: Mapping[str, BudgetBalance] | None = None,
    used_subject: Mapping[str, str] | None = None,
    spent_by_wallet: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    now: datetime = NOW,
    org: Org = ORG,
    only_covering: bool = True,
) -> Facts:
    """Facts for one spend in the fixed world, from readable keywords.

    ``amount`` is a token-unit decimal string (or an ``int`` of base units). ``price`` is
    ``True`` for the asset's default price, a decimal string for another price, or ``None``
    for "no price known". ``used`` maps a *policy id* to its balance; the claim key is worked
    out here (for a counterparty limit the subject is the recipient unless ``used_subject``
    names another). ``spent_by_wallet`` maps a policy id to ``(wallet id, usd)`` pairs.

    Like the service, only policies whose scope covers the spend (its wallet, its agent, the
    agent's departments and their parents, the org) are handed to the decision, unless
    ``only_covering`` is False.
    """
    by_id = {p.id: p for p in policies}
    agent_obj = AGENTS.get(agent) if agent is not None else None
    if agent_obj is not None and agent_status is not None:
        agent_obj = replace(agent_obj, status=AgentStatus(agent_status))
    wallet_obj = WALLETS.get(wallet) if wallet is not None else None
    if wallet_obj is not None and wallet_status is not None:
        wallet_obj = replace(wallet_obj, status=WalletStatus(wallet_status))
    asset_obj = ASSETS.get(asset) if asset is not None else None

    if isinstance(amount, int):
        base_units = amount
    else:
        decimals = asset_obj.decimals if asset_obj is not None else 6
        base_units = parse_amount(amount, decimals)

    quote: PriceQuote | None = None
    if price is not None and price is not False and asset_obj is not None:
        price_text = DEFAULT_PRICES[asset_obj.id] if price is True else str(price)
        quote = PriceQuote(
            price_atto=price_atto(price_text),
            as_of=now - timedelta(seconds=price_age_s),
            source=price_source or asset_obj.price_source,
        )
    elif price is not None and price is not False and asset is not None:
        # An asset the world does not know: a price may still be quoted for it.
        quote = PriceQuote(price_atto(str(price) if price is not True else "1"), now, "manual")

    request = SpendRequest(
        agent_id=agent or "nobody",
        wallet_id=wallet or "no_wallet",
        asset_id=asset,
        amount=base_units,
        kind=SpendKind(kind),
        recipient=recipient,
        chain=chain,
        contract=contract,
        method=method,
        spender=spender,
        typed_data=typed_data,
        fee_usd_micros=usd(fee_usd) if fee_usd is not None else None,
        gas_price_gwei=gas_price_gwei,
    )

    def key_for(policy_id: str) -> str:
        pol = by_id[policy_id]
        subject = ""
        if pol.type == "counterparty_limit":
            subject_text = (used_subject or {}).get(policy_id, recipient or "")
            subject = normalize_address(subject_text)
        return balance_key(pol, now, org.timezone, subject)

    balances = {key_for(pid): bal for pid, bal in (used or {}).items()}
    breakdown = {
        key_for(pid): tuple((WALLETS[w].handle, usd(amt)) for w, amt in pairs)
        for pid, pairs in (spent_by_wallet or {}).items()
    }
    department_ids = (
        tuple(department_chain(DEPARTMENTS, agent_obj.department_id)) if agent_obj else ()
    )
    in_force = tuple(policies)
    if only_covering and agent_obj is not None:
        config = OrgConfig(org=org, departments=DEPARTMENTS, policies=by_id)
        in_force = config.policies_for(agent_obj, wallet_obj)
    return Facts(
        request=request,
        now=now,
        org=org,
        agent=agent_obj,
        wallet=wallet_obj,
        department_ids=department_ids,
        asset=asset_obj,
        price=quote,
        policies=in_force,
        frozen=frozenset(Scope.parse(s) for s in frozen),
        balances=balances,
        spent_by_wallet=breakdown,
    )


# --------------------------------------------------------------------------------------------
# Money strategies
# --------------------------------------------------------------------------------------------

decimals_st = st.integers(min_value=0, max_value=MAX_DECIMALS)
"""Asset decimals, 0 (whole units) to 36."""

base_amounts_st = st.one_of(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=MAX_UINT256),
    st.sampled_from([1, 10**18, MAX_UINT256, MAX_UINT256 - 1, 2**255]),
)
"""Positive token amounts in base units, 1 to 2^256-1, with the edges well represented."""

usd_micros_st = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=MAX_USD_MICROS),
    st.sampled_from([0, 1, 999_999, 1_000_000, MAX_USD_MICROS]),
)
"""USD in micro-dollars, $0 to the one-trillion-dollar ceiling."""

prices_atto_st = st.one_of(
    st.integers(min_value=1, max_value=10**24),
    st.sampled_from([1, PRICE_SCALE, 3000 * PRICE_SCALE, 10**12 - 1, 10**12 + 1]),
)
"""Prices per whole token in atto-dollars, from 10^-18 USD to a million USD."""


@st.composite
def decimal_strings(draw: st.DrawFn, decimals: int) -> str:
    """A well-formed, positive token-unit string for an asset with ``decimals`` places.

    It may carry leading zeros in the fraction and extra trailing zeros beyond ``decimals``
    (``"1.500000000"`` for 6 decimals), both of which must parse.
    """
    whole = draw(st.integers(min_value=0, max_value=10**30))
    places = draw(st.integers(min_value=0, max_value=decimals))
    frac = draw(st.integers(min_value=0, max_value=10**places - 1)) if places else 0
    if whole == 0 and frac == 0:
        whole = 1
    text = str(whole)
    trailing = draw(st.integers(min_value=0, max_value=4))
    if places or trailing:
        digits = str(frac).rjust(places, "0") if places else ""
        text += "." + digits + "0" * trailing
        if text.endswith("."):
            text += "0"
    return text


# --------------------------------------------------------------------------------------------
# Policy strategies
# --------------------------------------------------------------------------------------------

SCOPES: tuple[str, ...] = (
    "org:acme",
    "department:operations",
    "department:procurement",
    "agent:procurement_bot",
    "wallet:w_base",
    "wallet:w_base2",
)
CHAINS = ("base", "solana", "ethereum")
ADDRESS_POOL = (VENDOR, VENDOR.lower(), VENDOR.upper().replace("0X", "0x"), OTHER, ROUTER)
WINDOWS = ("day", "week", "month", "quarter", "year", "lifetime")

_usd_text = st.integers(min_value=0, max_value=20_000).map(lambda d: f"{d}.00")
_windowed = st.one_of(
    st.fixed_dictionaries({"window": st.sampled_from(WINDOWS)}),
    st.fixed_dictionaries(
        {"window": st.just("rolling"), "rolling_seconds": st.sampled_from([60, 3600, 86400])}
    ),
)


def _merge(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


@st.composite
def _budget_params(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"window": "per_transaction", "limit_usd": draw(_usd_text)}
    params = draw(_windowed)
    what = draw(st.sampled_from(["usd", "count", "both"]))
    if what in {"usd", "both"}:
        params["limit_usd"] = draw(_usd_text)
    if what in {"count", "both"}:
        params["max_count"] = draw(st.integers(1, 20))
    return params


@st.composite
def _tiers_params(draw: st.DrawFn) -> dict[str, Any]:
    values = sorted(draw(st.lists(st.integers(0, 20_000), min_size=4, max_size=4)))
    params: dict[str, Any] = {"instant_max_usd": f"{values[0]}.00"}
    if draw(st.booleans()):
        params["notify_max_usd"] = f"{values[1]}.00"
    if draw(st.booleans()):
        params["delay_max_usd"] = f"{values[2]}.00"
        params["delay_seconds"] = draw(st.sampled_from([60, 3600, 86400]))
    if draw(st.booleans()):
        params["max_per_tx_usd"] = f"{values[3]}.00"
    return params


_address_entry = st.fixed_dictionaries(
    {"address": st.sampled_from(ADDRESS_POOL)},
    optional={"label": st.just("vendor"), "chain": st.sampled_from(CHAINS)},
)


@st.composite
def _recipients_params(draw: st.DrawFn) -> dict[str, Any]:
    which = draw(st.sampled_from(["allow", "deny", "both"]))
    params: dict[str, Any] = {}
    if which in {"allow", "both"}:
        params["allow"] = draw(st.lists(_address_entry, max_size=3))
    if which in {"deny", "both"}:
        params["deny"] = draw(st.lists(_address_entry, max_size=3))
    return params


_contract_entry = st.fixed_dictionaries(
    {"address": st.sampled_from(ADDRESS_POOL)},
    optional={
        "methods": st.lists(st.sampled_from([TRANSFER_SELECTOR, "0x095ea7b3"]), max_size=2),
        "max_usd_per_call": _usd_text,
    },
)
_spender_entry = st.fixed_dictionaries(
    {"spender": st.sampled_from(ADDRESS_POOL)},
    optional={
        "asset": st.sampled_from(["base:USDC", "USDC", "base:ETH"]),
        "max_amount": st.sampled_from(["1", "100", "1000.5", "5000"]),
        "allow_unlimited": st.booleans(),
    },
)
_message_entry = st.fixed_dictionaries(
    {"primary_type": st.sampled_from(["Permit", "Order"])},
    optional={
        "domain_name": st.sampled_from(["USD Coin", "Seaport"]),
        "verifying_contract": st.sampled_from(ADDRESS_POOL),
        "chain_id": st.sampled_from([1, 8453]),
    },
)


@st.composite
def _schedule_params(draw: st.DrawFn) -> dict[str, Any]:
    days = draw(
        st.lists(
            st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
            min_size=1,
            max_size=7,
            unique=True,
        )
    )
    start, end = sorted(draw(st.lists(st.integers(0, 24), min_size=2, max_size=2, unique=True)))
    return {"days": days, "start": f"{start:02d}:00", "end": f"{end:02d}:00"}


@st.composite
def _fee_params(draw: st.DrawFn) -> dict[str, Any]:
    which = draw(st.sampled_from(["usd", "gwei", "both"]))
    params: dict[str, Any] = {}
    if which in {"usd", "both"}:
        params["max_fee_usd"] = draw(st.sampled_from(["0.50", "5.00", "50.00"]))
    if which in {"gwei", "both"}:
        params["max_gwei"] = draw(st.integers(1, 200))
    return params


@st.composite
def _approval_params(draw: st.DrawFn) -> dict[str, Any]:
    approvers = draw(st.lists(st.sampled_from(["alice", "bob", "carol"]), unique=True))
    required = draw(st.integers(1, max(1, len(approvers)))) if approvers else 1
    params: dict[str, Any] = {"threshold_usd": draw(_usd_text), "required": required}
    if approvers:
        params["approvers"] = approvers
    if draw(st.booleans()):
        params["second_agent"] = True
    return params


PARAMS_BY_TYPE: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "budget": _budget_params(),
    "spending_tiers": _tiers_params(),
    "allowed_chains": st.fixed_dictionaries(
        {"chains": st.lists(st.sampled_from(CHAINS), min_size=1, max_size=3, unique=True)}
    ),
    "allowed_assets": st.fixed_dictionaries(
        {
            "assets": st.lists(
                st.sampled_from(["base:USDC", "USDC", "usdc", "base:ETH", "ETH", "solana:USDC"]),
                min_size=1,
                max_size=3,
            )
        }
    ),
    "recipients": _recipients_params(),
    "contracts": st.fixed_dictionaries(
        {"allow": st.lists(_contract_entry, min_size=1, max_size=2)}
    ),
    "token_approvals": st.fixed_dictionaries(
        {"allow": st.lists(_spender_entry, min_size=1, max_size=2)}
    ),
    "message_signing": st.fixed_dictionaries(
        {"allow": st.lists(_message_entry, min_size=1, max_size=2)}
    ),
    "schedule": _schedule_params(),
    "rate_limit": _merge(_windowed, st.fixed_dictionaries({"max_count": st.integers(1, 10)})),
    "counterparty_limit": _merge(_windowed, st.fixed_dictionaries({"limit_usd": _usd_text})),
    "fee_limit": _fee_params(),
    "approval": _approval_params(),
}
POLICY_TYPE_NAMES = tuple(PARAMS_BY_TYPE)
GRANTING = frozenset({"budget", "spending_tiers"})


@st.composite
def policies_st(
    draw: st.DrawFn,
    policy_id: str,
    types: Sequence[str] = POLICY_TYPE_NAMES,
    modes: Sequence[str] = ("enforce", "enforce", "enforce", "shadow"),
) -> Policy:
    """One valid policy of one of ``types`` at one of the world's scopes."""
    policy_type = draw(st.sampled_from(list(types)))
    params = draw(PARAMS_BY_TYPE[policy_type])
    return policy(
        policy_id,
        policy_type,
        draw(st.sampled_from(SCOPES)),
        params,
        mode=draw(st.sampled_from(list(modes))),
        version=draw(st.integers(1, 5)),
    )


@st.composite
def policy_sets_st(draw: st.DrawFn, max_size: int = 5) -> tuple[Policy, ...]:
    """Several policies with unique ids, usually including an enforced one that grants."""
    count = draw(st.integers(0, max_size))
    found = [draw(policies_st(f"p{i}")) for i in range(count)]
    if draw(st.sampled_from([True, True, True, True, False])):
        grant = draw(
            policies_st(f"p{count}", types=("budget", "spending_tiers"), modes=["enforce"])
        )
        grant_scope = draw(st.sampled_from(["org:acme", "agent:procurement_bot"]))
        found.append(replace(grant, scope=Scope.parse(grant_scope)))
    return tuple(found)


# --------------------------------------------------------------------------------------------
# Whole facts
# --------------------------------------------------------------------------------------------

TIMEZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Auckland")
moments_st = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2027, 12, 31),
    timezones=st.just(UTC),
)


@st.composite
def _request_bits(draw: st.DrawFn, healthy: bool) -> dict[str, Any]:
    """The request part of generated facts; ``healthy`` keeps it ordinary and decidable."""
    kinds = [SpendKind.TRANSFER] * 6 + list(SpendKind) if healthy else list(SpendKind)
    kind = draw(st.sampled_from(kinds))
    bits: dict[str, Any] = {"kind": kind}
    assets = ["base:USDC", "base:USDC", "base:ETH"]
    if not healthy:
        assets += ["solana:USDC", "base:DOGE", None]
    bits["asset"] = (
        None if kind is SpendKind.SIGN_MESSAGE and healthy else draw(st.sampled_from(assets))
    )
    amounts = st.integers(1, 10**9) if bits["asset"] != "base:ETH" else st.integers(1, 10**18)
    if not healthy:
        amounts = st.one_of(
            amounts,
            st.integers(1, 10**22),
            st.sampled_from([MAX_UINT256, 2**255, 10**6, 500 * 10**6]),
        )
    bits["amount"] = draw(amounts)
    recipients = st.sampled_from(ADDRESS_POOL)
    bits["recipient"] = draw(recipients if healthy else st.one_of(st.none(), recipients))
    bits["chain"] = None if healthy else draw(st.one_of(st.none(), st.sampled_from(CHAINS)))
    if kind is SpendKind.CONTRACT_CALL:
        bits["contract"] = draw(st.one_of(st.none(), st.sampled_from(ADDRESS_POOL)))
        bits["method"] = draw(
            st.sampled_from([None, TRANSFER_SELECTOR, "0xA9059CBB", "0xdeadbeef"])
        )
    if kind is SpendKind.APPROVE:
        bits["spender"] = draw(st.one_of(st.none(), st.sampled_from(ADDRESS_POOL)))
    if kind is SpendKind.SIGN_MESSAGE:
        bits["typed_data"] = draw(
            st.one_of(
                st.none(),
                st.builds(
                    TypedDataDomain,
                    primary_type=st.sampled_from(["Permit", "Order", "Mail"]),
                    name=st.sampled_from([None, "USD Coin", "Seaport"]),
                    verifying_contract=st.sampled_from([None, *ADDRESS_POOL]),
                    chain_id=st.sampled_from([None, 1, 8453]),
                ),
            )
        )
    bits["fee_usd"] = draw(st.sampled_from([None, "0.10", "2.00", "75.00"]))
    bits["gas_price_gwei"] = draw(st.sampled_from([None, 1, 30, 500]))
    return bits


@st.composite
def facts_st(
    draw: st.DrawFn, policies: st.SearchStrategy[tuple[Policy, ...]] | None = None
) -> Facts:
    """Well-typed facts for the decision laws.

    About half are *healthy* (a known, active agent spending from its own wallet, a priced
    asset, a named recipient) so that many decisions are allowed; the rest draw any request
    kind, state, freeze, price and budget usage, including unknown and broken ones.
    """
    healthy = draw(st.booleans())
    pols = draw(policies if policies is not None else policy_sets_st())
    bits = draw(_request_bits(healthy))
    gate_type = {
        SpendKind.CONTRACT_CALL: "contracts",
        SpendKind.APPROVE: "token_approvals",
        SpendKind.SIGN_MESSAGE: "message_signing",
    }.get(bits["kind"])
    if healthy and gate_type is not None and draw(st.booleans()):
        # A special spend usually comes with a policy of its own kind (which may not match).
        pols = (*pols, draw(policies_st("gate", types=[gate_type], modes=["enforce"])))
    now = draw(moments_st)
    org = replace(ORG, timezone=draw(st.sampled_from(TIMEZONES)))
    if healthy:
        agent: str | None = "procurement_bot"
        wallet: str | None = draw(st.sampled_from(["w_base", "w_base2"]))
        agent_status = wallet_status = None
        frozen: list[str] = []
        price_choice = "default"
    else:
        agent = draw(st.sampled_from(["procurement_bot", "procurement_bot", "research_bot", None]))
        wallet = draw(st.sampled_from(["w_base", "w_base", "w_base2", "w_sol", "w_research", None]))
        agent_status = draw(st.sampled_from([None, None, None, "frozen", "decommissioned"]))
        wallet_status = draw(st.sampled_from([None, None, None, "frozen", "retired"]))
        frozen = draw(
            st.lists(
                st.sampled_from(
                    [
                        "org:acme",
                        "department:operations",
                        "department:procurement",
                        "department:research",
                        "agent:procurement_bot",
                        "wallet:w_base",
                    ]
                ),
                max_size=1,
            )
        )
        price_choice = draw(st.sampled_from(["default", "default", "none", "stale"]))
    facts = build_facts(
        policies=pols,
        agent=agent,
        wallet=wallet,
        agent_status=agent_status,
        wallet_status=wallet_status,
        frozen=frozen,
        price=None if price_choice == "none" else True,
        price_age_s=7200.0 if price_choice == "stale" else 30.0,
        now=now,
        org=org,
        **bits,
    )
    # Budget usage for some budget-like policies, keyed exactly as the decision keys them.
    balances: dict[str, BudgetBalance] = {}
    for pol in facts.policies:
        if pol.type not in {"budget", "rate_limit", "counterparty_limit"}:
            continue
        if getattr(pol.params, "window", None) == "per_transaction":
            continue
        subject = ""
        if pol.type == "counterparty_limit":
            subject = normalize_address(facts.request.recipient or "")
        key = balance_key(pol, now, org.timezone, subject)
        if draw(st.booleans()):
            balances[key] = BudgetBalance(
                posted_micros=draw(st.integers(0, 20_000 * 10**6)),
                pending_micros=draw(st.integers(0, 2_000 * 10**6)),
                posted_count=draw(st.integers(0, 20)),
                pending_count=draw(st.integers(0, 3)),
            )
    return replace(facts, balances=balances)
