"""Backtesting a draft org file over recorded traffic, and what shadow policies would have done.

``backtest`` answers "had this draft been in force, which of our recorded decisions would have
come out differently?" It replays every authorization recorded in a time range — allowed,
denied, voided, custodial payments' and governance mode's alike — in the order they were made,
through the same pure :func:`~treasurer.domain.decision.decide` that production uses, with:

- the *draft's* policies, agents, wallets and assets;
- each spend's own time (calendar windows, schedules) and its recorded price (the price the
  real decision used is stored on the authorization), so valuations match the original;
- budgets from a :class:`~.backtest_ledger.SimulatedLedger` that only the draft's decisions
  move. A spend the draft allows is posted at what it really came to (the captured amount;
  the reserved value while it is still open; nothing when it was voided, expired or rejected,
  since that money never left); a spend reality denied but the draft allows is posted at its
  full value — the draft would have let it be spent.

Nothing is written: no balance row, no authorization, no audit event. The real budgets and the
audit chain of real decisions are untouched, whatever the draft says.

``shadow_report`` reads the shadow results recorded with each decision and totals, per shadow
policy, how many spends (and how many USD) it would have denied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime

from treasurer.domain.authorization import RESERVING_STATES, Authorization, AuthState
from treasurer.domain.config import OrgConfig
from treasurer.domain.decision import decide
from treasurer.domain.facts import Facts, PriceQuote, SpendKind, SpendRequest, TypedDataDomain
from treasurer.domain.money import Asset
from treasurer.domain.outcome import Decision, Tier
from treasurer.service.backtest_ledger import SimulatedLedger
from treasurer.service.ports import Store
from treasurer.service.reconcile_spend import UNAUTHORIZED_TIER

#: Recorded authorizations read per query while replaying.
PAGE = 1000
#: Changes listed in a report; the totals always count every one.
MAX_LISTED_CHANGES = 10_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """One side of a comparison: allowed or not, the tier, and the reason codes."""

    allowed: bool
    tier: str
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BacktestChange:
    """A recorded decision the draft would have made differently."""

    authorization_id: str
    at: datetime
    agent_id: str
    wallet_id: str
    asset_id: str | None
    amount: int
    value_usd_micros: int
    change: str  # allowed_to_denied | denied_to_allowed | tier_changed
    before: Outcome
    after: Outcome
    #: The asset's decimals, as recorded (None: unknown asset; ``amount`` is base units).
    decimals: int | None = None


@dataclass
class BacktestReport:
    """Every change, with totals by kind of change (counts and USD micros)."""

    since: datetime
    until: datetime
    replayed: int = 0
    changes: list[BacktestChange] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    usd_micros: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(self.counts.values())

    def add(self, change: BacktestChange) -> None:
        self.counts[change.change] = self.counts.get(change.change, 0) + 1
        self.usd_micros[change.change] = (
            self.usd_micros.get(change.change, 0) + change.value_usd_micros
        )
        if len(self.changes) < MAX_LISTED_CHANGES:
            self.changes.append(change)


@dataclass
class ShadowPolicyReport:
    """What one shadow policy said over a range: evaluated, would deny, and of those how
    many reality allowed (the decisions it would have changed)."""

    policy_id: str
    policy_type: str
    evaluated: int = 0
    would_deny: int = 0
    would_deny_usd_micros: int = 0
    would_deny_allowed: int = 0
    would_deny_allowed_usd_micros: int = 0
    codes: dict[str, int] = field(default_factory=dict)


def recorded(store: Store, since: datetime, until: datetime) -> Iterator[Authorization]:
    """Every authorization created in [since, until), oldest first, a page at a time."""
    after: tuple[datetime, str] | None = None
    while True:
        page = store.recorded_authorizations(since, until, PAGE, after)
        yield from page
        if len(page) < PAGE:
            return
        after = (page[-1].created_at, page[-1].id)


def backtest(store: Store, draft: OrgConfig, since: datetime, until: datetime) -> BacktestReport:
    """Replay [since, until) against ``draft``; report every decision that would change."""
    report = BacktestReport(since, until)
    ledger = SimulatedLedger()
    for auth in recorded(store, since, until):
        if auth.tier == UNAUTHORIZED_TIER:
            # Money that left without asking (reconciliation): no decision to replay, but it
            # was spent whatever the draft says, so its budgets count it.
            _outcome, counted = _replay(draft, auth, ledger)
            if counted is not None:
                claims = (*counted.claims, *counted.shadow_claims)
                ledger.post(claims, _spent_usd(auth), auth.created_at)
            continue
        report.replayed += 1
        before = _recorded_outcome(auth)
        after, decision = _replay(draft, auth, ledger)
        if decision is not None and decision.allowed:
            claims = (*decision.claims, *decision.shadow_claims)
            ledger.post(claims, _spent_usd(auth), auth.created_at)
        kind = _change_kind(before, after)
        if kind is not None:
            report.add(
                BacktestChange(
                    auth.id,
                    auth.created_at,
                    auth.agent_id,
                    auth.wallet_id,
                    auth.asset_id,
                    auth.amount,
                    auth.value_usd_micros,
                    kind,
                    before,
                    after,
                    auth.decimals,
                )
            )
    return report


def shadow_report(store: Store, since: datetime, until: datetime) -> list[ShadowPolicyReport]:
    """Per shadow policy: what it would have denied among the decisions of [since, until)."""
    found: dict[str, ShadowPolicyReport] = {}
    for auth in recorded(store, since, until):
        shadows = auth.decision.get("shadow", [])
        assert isinstance(shadows, list)
        for shadow in shadows:
            policy_id = str(shadow["policy_id"])
            entry = found.setdefault(
                policy_id, ShadowPolicyReport(policy_id, str(shadow["policy_type"]))
            )
            entry.evaluated += 1
            if not shadow["would_deny"]:
                continue
            entry.would_deny += 1
            entry.would_deny_usd_micros += auth.value_usd_micros
            if auth.state is not AuthState.DENIED:
                entry.would_deny_allowed += 1
                entry.would_deny_allowed_usd_micros += auth.value_usd_micros
            for reason in shadow.get("reasons", []):
                code = str(reason["code"])
                entry.codes[code] = entry.codes.get(code, 0) + 1
    return [found[k] for k in sorted(found)]


# -- one replay ---------------------------------------------------------------------------
def _recorded_outcome(auth: Authorization) -> Outcome:
    reasons = auth.decision.get("reasons", [])
    assert isinstance(reasons, list)
    codes = tuple(sorted({str(r["code"]) for r in reasons}))
    return Outcome(auth.state is not AuthState.DENIED, auth.tier, codes)


def _replay(
    draft: OrgConfig, auth: Authorization, ledger: SimulatedLedger
) -> tuple[Outcome, Decision | None]:
    """The draft's decision on the recorded spend, with the ledger's balances."""
    agent = draft.agents.get(auth.agent_id)
    wallet = draft.wallets.get(auth.wallet_id)
    if agent is None or wallet is None:
        missing = "agent_not_in_draft" if agent is None else "wallet_not_in_draft"
        return Outcome(False, Tier.DENY.value, (missing,)), None
    asset = draft.assets.get(auth.asset_id) if auth.asset_id is not None else None
    facts = Facts(
        request=_request(auth),
        now=auth.created_at,
        org=draft.org,
        agent=agent,
        wallet=wallet,
        department_ids=draft.departments_of(agent),
        asset=asset,
        price=_price(auth, asset),
        policies=draft.policies_for(agent, wallet),
        frozen=draft.frozen,
    )
    first = decide(facts)
    claims = (*first.claims, *first.shadow_claims)
    decision = decide(replace(facts, balances=ledger.balances(claims, auth.created_at)))
    codes = tuple(sorted({reason.code for reason in decision.reasons}))
    return Outcome(decision.allowed, decision.tier.value, codes), decision


def _request(auth: Authorization) -> SpendRequest:
    """The spend as it was asked for, from the authorization and its recorded request."""
    asked = auth.decision.get("request", {})
    assert isinstance(asked, dict)
    typed = asked.get("typed_data")
    fee = asked.get("fee_usd_micros")
    gwei = asked.get("gas_price_gwei")
    return SpendRequest(
        agent_id=auth.agent_id,
        wallet_id=auth.wallet_id,
        asset_id=auth.asset_id,
        amount=auth.amount,
        kind=SpendKind(str(asked.get("kind", SpendKind.TRANSFER.value))),
        recipient=auth.recipient,
        chain=_text(asked.get("chain")),
        contract=_text(asked.get("contract")),
        method=_text(asked.get("method")),
        spender=_text(asked.get("spender")),
        typed_data=TypedDataDomain(**typed) if isinstance(typed, dict) else None,
        fee_usd_micros=fee if isinstance(fee, int) else None,
        gas_price_gwei=gwei if isinstance(gwei, int) else None,
    )


def _price(auth: Authorization, asset: Asset | None) -> PriceQuote | None:
    """The price the original decision used, so the replay values the spend identically.

    A fixed peg in the draft is the draft's own statement. Otherwise the recorded price; for
    records made before prices were recorded, the highest price that reproduces the recorded
    USD value (exact for any amount below 10^(decimals+12) base units).
    """
    if asset is not None and asset.price_source == "fixed" and asset.fixed_price_atto is not None:
        return PriceQuote(asset.fixed_price_atto, auth.created_at, "fixed")
    if auth.price_atto is not None:
        return PriceQuote(auth.price_atto, auth.created_at, "recorded")
    if auth.value_usd_micros > 0 and auth.amount > 0 and auth.decimals is not None:
        scale = 10 ** (auth.decimals + 12)
        return PriceQuote(auth.value_usd_micros * scale // auth.amount, auth.created_at, "recorded")
    return None


def _spent_usd(auth: Authorization) -> int:
    """What this spend really came to, for the ledger (see the module docstring)."""
    if auth.state is AuthState.CAPTURED:
        return auth.captured_usd_micros or 0
    if auth.state in RESERVING_STATES or auth.state is AuthState.DENIED:
        return auth.value_usd_micros
    return 0  # voided, expired, rejected: released, never spent


def _change_kind(before: Outcome, after: Outcome) -> str | None:
    if before.allowed and not after.allowed:
        return "allowed_to_denied"
    if not before.allowed and after.allowed:
        return "denied_to_allowed"
    if before.tier != after.tier:
        return "tier_changed"
    return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
