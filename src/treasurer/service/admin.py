"""The full embedded interface: governance plus org files, prices, freezes and spend reports.

:class:`Governance` is what ``treasurer.open(url)`` returns; the remote client offers the same
method names over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import Conflict, InvalidRequest, NotFound
from treasurer.domain.facts import PriceQuote
from treasurer.domain.money import parse_price
from treasurer.domain.org import AgentStatus, Scope, ScopeKind
from treasurer.domain.outcome import Decision
from treasurer.domain.plan import Plan, make_plan
from treasurer.domain.windows import Window, WindowKind, period_of
from treasurer.service.backtest import BacktestReport, ShadowPolicyReport, backtest, shadow_report
from treasurer.service.governance import AuthorizationResult, GovernanceCore
from treasurer.service.orgfile_export import export_org_file
from treasurer.service.orgfile_parse import parse_org_file
from treasurer.service.ports import AuditRecord, SpendRow
from treasurer.service.requests import SpendInput
from treasurer.service.spend_items import MAX_ITEMS_PAGE, SpendPage, spend_page

#: ``to``/``data``/``value``: the raw contract call an external wallet is about to sign,
#: decoded into the spend it is (see :mod:`treasurer.service.requests`).
_EXTRA_FIELDS = frozenset(
    {
        "contract",
        "method",
        "spender",
        "typed_data",
        "fee_usd",
        "gas_price_gwei",
        "to",
        "data",
        "value",
    }
)


def _spend(
    agent: str,
    wallet: object,
    amount: object,
    asset: str | None,
    recipient: str | None,
    chain: str | None,
    kind: str,
    extra: Mapping[str, object],
) -> SpendInput:
    unknown = set(extra) - _EXTRA_FIELDS
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(sorted(unknown))}; accepted extras: "
            f"{', '.join(sorted(_EXTRA_FIELDS))}",
            field=sorted(unknown)[0],
        )
    wallet_ref = getattr(wallet, "id", wallet)
    return SpendInput(
        agent=agent,
        wallet=str(wallet_ref),
        amount=amount,
        asset=asset,
        recipient=recipient,
        chain=chain,
        kind=kind,
        **extra,  # type: ignore[arg-type]
    )


GROUPS = ("org", "department", "agent", "wallet", "chain", "asset", "vendor")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """A plan and whether it was written (``applied`` is False for a dry run or no-op)."""

    plan: Plan
    applied: bool
    config_version: int | None = None


class Governance(GovernanceCore):
    """Everything the embedded API offers."""

    # -- spends ---------------------------------------------------------------------------
    def check(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object = None,
        asset: str | None = None,
        recipient: str | None = None,
        chain: str | None = None,
        kind: str = "transfer",
        **extra: object,
    ) -> Decision:
        """Dry run: ``gov.check(agent="a", wallet="w2", amount="499.00", asset="USDC")``."""
        spend = _spend(agent, wallet, amount, asset, recipient, chain, kind, extra)
        return self.check_spend(spend)

    def authorize(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object = None,
        asset: str | None = None,
        recipient: str | None = None,
        chain: str | None = None,
        kind: str = "transfer",
        idempotency_key: str | None = None,
        actor: str | None = None,
        **extra: object,
    ) -> AuthorizationResult:
        """Decide and reserve; capture or void the result later.

        For a contract call, give ``to``, ``data`` (hex calldata) and optionally ``value``
        instead of ``amount``/``asset``/``recipient``: ``gov.authorize(agent="a", wallet="w1",
        to=usdc, data="0xa9059cbb…")`` is decided on the transfer the calldata makes."""
        spend = _spend(agent, wallet, amount, asset, recipient, chain, kind, extra)
        return self.authorize_spend(spend, idempotency_key=idempotency_key, actor=actor)

    # -- org file -------------------------------------------------------------------------
    def plan(self, org_file: Mapping[str, object], *, source: str = "org.yaml") -> Plan:
        """What applying ``org_file`` would create, change and remove."""
        desired = parse_org_file(dict(org_file), source=source)
        return make_plan(self.cache.peek(), desired)

    def apply(
        self,
        org_file: Mapping[str, object],
        *,
        source: str = "org.yaml",
        actor: str = "admin",
        dry_run: bool = False,
    ) -> ApplyResult:
        """Apply an org file idempotently: compute the plan, then write it in one transaction."""
        desired = parse_org_file(dict(org_file), source=source)
        return self.apply_config(desired, actor=actor, dry_run=dry_run)

    def apply_config(
        self,
        desired: OrgConfig,
        *,
        actor: str = "admin",
        dry_run: bool = False,
        base_version: int | None = None,
    ) -> ApplyResult:
        """Apply a whole desired config, as :meth:`apply` does for a parsed org file.

        ``base_version`` is the config version ``desired`` was derived from; if the config
        has changed since, ``Conflict`` (``config_changed``) is raised instead of silently
        undoing another writer's change. The plan itself is also guarded until it is written.
        """
        version, current = self.cache.versioned()
        if base_version is not None and base_version != version:
            raise Conflict(
                f"the configuration changed (version {version}, this change was prepared on "
                f"{base_version}); load it again and retry",
                code="config_changed",
            )
        plan = make_plan(current, desired)
        if dry_run or plan.empty:
            return ApplyResult(plan, applied=False)
        audit = [
            AuditRecord(
                kind=f"{change.kind}.{change.action}d",
                actor=actor,
                subject=f"{change.kind}:{change.id}",
                payload={"before": change.before, "after": change.after},
            )
            for change in plan.changes
        ]
        written = self.store.apply_plan(plan, audit, self.clock.now(), version)
        self.cache.invalidate()
        return ApplyResult(plan, applied=True, config_version=written)

    def edit_config(
        self, edit: Callable[[OrgConfig], OrgConfig], *, actor: str = "admin", attempts: int = 3
    ) -> ApplyResult:
        """Apply ``edit`` to the current config; on a concurrent change, redo it on the new one.

        This is how single-object changes (one agent, one policy) are made: the edit is
        re-applied to fresh state rather than overwriting what another admin just wrote.
        """
        for attempt in range(attempts):
            version, current = self.cache.versioned()
            if current is None:
                raise NotFound("no organization is configured yet", code="org_not_configured")
            try:
                return self.apply_config(edit(current), actor=actor, base_version=version)
            except Conflict as exc:
                if exc.code != "config_changed" or attempt == attempts - 1:
                    raise
                self.cache.invalidate()
        raise AssertionError("unreachable")

    def export(self) -> dict[str, object]:
        """The current state in the org file format (``apply`` of it is a no-op)."""
        return export_org_file(self.cache.get())

    # -- prices ---------------------------------------------------------------------------
    def set_price(self, asset: str, price_usd: object, *, actor: str = "admin") -> PriceQuote:
        """Set the manual USD price of an asset; it goes stale after the asset's max age."""
        config = self.cache.get()
        found = config.find_asset(asset, None)
        if found is None:
            raise NotFound(f"asset {asset!r} is not registered", field="asset")
        quote = PriceQuote(parse_price(price_usd), self.clock.now(), "manual")
        audit = AuditRecord("price.set", actor, f"asset:{found.id}", {"price_usd": str(price_usd)})
        self.store.set_price(found.id, quote, audit, self.clock.now())
        return quote

    # -- freezes --------------------------------------------------------------------------
    def freeze(self, scope: str, *, reason: str = "", actor: str = "admin") -> bool:
        """Freeze ``wallet:<id>``, ``agent:<id>``, ``department:<id>`` or ``org``."""
        return self._set_freeze(scope, True, reason, actor)

    def unfreeze(self, scope: str, *, actor: str = "admin") -> bool:
        return self._set_freeze(scope, False, "", actor)

    def _set_freeze(self, scope_text: str, frozen: bool, reason: str, actor: str) -> bool:
        scope = self._scope(scope_text)
        kind = "freeze.set" if frozen else "freeze.lifted"
        audit = AuditRecord(kind, actor, str(scope), {"reason": reason})
        changed = self.store.set_freeze(scope, frozen, reason, actor, audit, self.clock.now())
        self.cache.invalidate()
        return changed

    def _scope(self, text: str) -> Scope:
        config = self.cache.get()
        if text == "org":
            return Scope(ScopeKind.ORG, config.org.id)
        try:
            scope = Scope.parse(text)
        except ValueError:
            raise InvalidRequest(
                f"scope: {text!r} must be org, department:<id>, agent:<id> or wallet:<id>",
                field="scope",
            ) from None
        known = {
            ScopeKind.ORG: {config.org.id},
            ScopeKind.DEPARTMENT: set(config.departments),
            ScopeKind.AGENT: set(config.agents),
            ScopeKind.WALLET: set(config.wallets),
        }[scope.kind]
        if scope.id not in known:
            raise NotFound(f"scope {text!r} does not exist", field="scope")
        return scope

    def set_agent_status(self, agent: str, status: str, *, actor: str = "admin") -> bool:
        """Set an agent active, frozen or decommissioned (the kill switch comes later)."""
        if agent not in self.cache.get().agents:
            raise NotFound(f"agent {agent!r} does not exist", field="agent")
        audit = AuditRecord("agent.status", actor, f"agent:{agent}", {"status": status})
        changed = self.store.set_agent_status(agent, AgentStatus(status), audit, self.clock.now())
        self.cache.invalidate()
        return changed

    # -- spend ----------------------------------------------------------------------------
    def spend(
        self,
        *,
        by: str = "agent",
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: str,
    ) -> list[SpendRow]:
        """Captured and reserved USD per group (org, department, agent, wallet, chain, ...)."""
        if by not in GROUPS:
            raise InvalidRequest(f"by: {by!r} must be one of {', '.join(GROUPS)}", field="by")
        unknown = set(filters) - set(GROUPS[1:])
        if unknown:
            raise InvalidRequest(
                f"unknown filter(s): {', '.join(sorted(unknown))}", field="filters"
            )
        return self.store.spend(by, since, until, dict(filters))

    def spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = MAX_ITEMS_PAGE,
        after: str | None = None,
        departments: Sequence[str] | None = None,
        **filters: str,
    ) -> SpendPage:
        """One page of the authorizations :meth:`spend` sums, each with its decision (why it
        was allowed), in (created_at, id) order; pass ``next`` as ``after`` to continue.
        ``departments`` narrows to those departments (a scoped key's reach)."""
        return spend_page(
            self.store,
            since=since,
            until=until,
            filters=dict(filters),
            departments=departments,
            limit=limit,
            after=after,
        )

    def spent_today(self, *, by: str = "agent", **filters: str) -> list[SpendRow]:
        """Spend in the current calendar day of the org timezone."""
        config = self.cache.get()
        period = period_of(Window(WindowKind.DAY), self.clock.now(), config.org.timezone)
        return self.spend(by=by, since=period.start, until=period.end, **filters)

    # -- simulation -----------------------------------------------------------------------
    def backtest(
        self,
        draft: Mapping[str, object] | OrgConfig,
        *,
        since: datetime,
        until: datetime,
        source: str = "draft",
    ) -> BacktestReport:
        """Replay the decisions recorded in [since, until) against ``draft`` (an org file or
        a parsed config) and list every one that would change. Writes nothing."""
        _require_range(since, until)
        config = (
            draft if isinstance(draft, OrgConfig) else parse_org_file(dict(draft), source=source)
        )
        return backtest(self.store, config, since, until)

    def shadow_report(self, *, since: datetime, until: datetime) -> list[ShadowPolicyReport]:
        """Per shadow policy, what it would have denied among the decisions of the range."""
        _require_range(since, until)
        return shadow_report(self.store, since, until)


def _require_range(since: datetime, until: datetime) -> None:
    for moment, name in ((since, "since"), (until, "until")):
        if moment.tzinfo is None:
            raise InvalidRequest(
                f"{name}: give a time zone (e.g. 2026-04-01T00:00:00Z)", field=name
            )
    if until <= since:
        raise InvalidRequest("until: must be after since", field="until")
