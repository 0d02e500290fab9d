"""The governance use cases: check, authorize, capture, void, expire.

``authorize`` follows ARCHITECTURE.md: decide on cached facts (pure), then reserve every claim
in one short transaction with conditional updates; if a reservation loses a race, reload the
balances and decide again, so the answer is always explained with the real numbers. Nothing
slow (network, file I/O) happens inside a transaction.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

from treasurer.domain.authorization import Authorization, AuthState
from treasurer.domain.budgets import BudgetBalance, BudgetClaim
from treasurer.domain.config import OrgConfig
from treasurer.domain.decision import decide
from treasurer.domain.errors import (
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    StoreUnavailable,
)
from treasurer.domain.facts import Facts, PriceQuote
from treasurer.domain.money import parse_amount
from treasurer.domain.org import ScopeKind
from treasurer.domain.outcome import Decision, Tier
from treasurer.domain.windows import rolling_cutoff
from treasurer.service.config_cache import ConfigCache
from treasurer.service.ports import AuditRecord, Clock, Store, UsageQuery
from treasurer.service.requests import Resolved, SpendInput, request_dict, resolve

#: Attempts to reserve when a concurrent writer changed a balance between decide and reserve.
MAX_RESERVE_ATTEMPTS = 4
_STATE_FOR_TIER = {
    Tier.INSTANT: AuthState.PENDING,
    Tier.NOTIFY: AuthState.PENDING,
    Tier.DELAY: AuthState.DELAYED,
    Tier.APPROVAL: AuthState.PENDING_APPROVAL,
}


@dataclass(frozen=True, slots=True)
class AuthorizationResult:
    """What ``authorize`` returns: the stored authorization and the decision behind it."""

    authorization: Authorization
    decision: dict[str, object]
    replayed: bool = False

    @property
    def allowed(self) -> bool:
        return self.authorization.state is not AuthState.DENIED

    @property
    def id(self) -> str:
        return self.authorization.id

    @property
    def state(self) -> AuthState:
        return self.authorization.state

    @property
    def reasons(self) -> list[dict[str, object]]:
        reasons = self.decision.get("reasons", [])
        assert isinstance(reasons, list)
        return reasons

    @property
    def codes(self) -> list[str]:
        return [str(r["code"]) for r in self.reasons]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class GovernanceCore:
    """Decisions and two-phase authorizations over a :class:`Store`."""

    def __init__(self, store: Store, clock: Clock, cache: ConfigCache | None = None) -> None:
        self.store = store
        self.clock = clock
        self.cache = cache or ConfigCache(store)

    # -- facts ----------------------------------------------------------------------------
    def _price(self, resolved: Resolved) -> PriceQuote | None:
        asset = resolved.asset
        if asset is None:
            return None
        if asset.price_source == "fixed" and asset.fixed_price_atto is not None:
            return PriceQuote(asset.fixed_price_atto, self.clock.now(), "fixed")
        return self.store.price(asset.id)

    def _facts(self, config: OrgConfig, resolved: Resolved, price: PriceQuote | None) -> Facts:
        return Facts(
            request=resolved.request,
            now=self.clock.now(),
            org=config.org,
            agent=resolved.agent,
            wallet=resolved.wallet,
            department_ids=config.departments_of(resolved.agent),
            asset=resolved.asset,
            price=price,
            policies=config.policies_for(resolved.agent, resolved.wallet),
            frozen=config.frozen,
        )

    def _explained(self, facts: Facts, decision: Decision) -> Decision:
        """Decide again with real balances and per-wallet spend, to state the numbers."""
        keys = [claim.key for claim in decision.claims]
        detailed = replace(
            facts,
            balances={**facts.balances, **self._balances(facts, decision)},
            spent_by_wallet=self.store.spent_by_wallet(keys),
        )
        return decide(detailed)

    def _with_balances(self, facts: Facts, decision: Decision) -> tuple[Facts, Decision]:
        """Decide again with a snapshot of the balances the spend would claim."""
        if not decision.claims:
            return facts, decision
        facts = replace(facts, balances={**facts.balances, **self._balances(facts, decision)})
        return facts, decide(facts)

    def _balances(self, facts: Facts, decision: Decision) -> dict[str, BudgetBalance]:
        cutoffs = {
            claim.key: rolling_cutoff(claim.window, facts.now)
            for claim in decision.claims
            if claim.is_rolling
        }
        return self.store.balances([claim.key for claim in decision.claims], cutoffs)

    def _decide(self, config: OrgConfig, facts: Facts) -> tuple[Facts, Decision]:
        """Decide; when shadow budgets are in force, measure their recorded usage first.

        Shadow budgets reserve nothing, so their "balance" is what the authorizations in
        their scope and period add up to; only then can they say what they would have denied.
        """
        decision = decide(facts)
        claims = decision.shadow_claims
        if not claims:
            return facts, decision
        usage = self.store.recorded_usage([self._usage_query(config, c, facts) for c in claims])
        facts = replace(facts, balances={**facts.balances, **usage})
        return facts, decide(facts)

    @staticmethod
    def _usage_query(config: OrgConfig, claim: BudgetClaim, facts: Facts) -> UsageQuery:
        kind = claim.scope.kind
        column, ids = {
            ScopeKind.WALLET: ("wallet_id", (claim.scope.id,)),
            ScopeKind.AGENT: ("agent_id", (claim.scope.id,)),
            ScopeKind.DEPARTMENT: ("department_id", config.department_subtree(claim.scope.id)),
        }.get(kind, (None, ()))
        since, until = claim.period.start, claim.period.end
        if claim.window.rolling_s is not None:
            since, until = facts.now - timedelta(seconds=claim.window.rolling_s), None
        return UsageQuery(claim.key, column, ids, since, until, claim.subject)

    # -- use cases ------------------------------------------------------------------------
    def check_spend(self, spend: SpendInput) -> Decision:
        """Dry run: the full decision and remaining headroom; nothing is reserved."""
        config = self.cache.get()
        resolved = resolve(config, spend)
        facts, decision = self._decide(config, self._facts(config, resolved, self._price(resolved)))
        return self._explained(facts, decision)

    def recheck_spend(self, spend: SpendInput, authorization_id: str) -> Decision:
        """Decide ``spend`` again on the facts of now, for an authorization that already
        holds its reservation (a queued payment about to execute).

        Its own reservation is already counted in the balances it claimed, so it is
        subtracted first: the spend is judged against what *other* spends use, never counted
        twice. Freezes, agent status, policies and prices are today's. The tier of the answer
        is not meant to be acted on (the spend was approved, or its delay served); only
        ``allowed`` and the reasons are. Nothing is written.
        """
        config = self.cache.get()
        resolved = resolve(config, spend)
        facts, decision = self._decide(config, self._facts(config, resolved, self._price(resolved)))
        if not decision.claims:
            return decision
        own = {
            line.balance_key: line.amount_micros
            for line in self.store.authorization_lines(authorization_id)
        }
        balances = {
            key: _without_reservation(balance, own[key]) if key in own else balance
            for key, balance in self._balances(facts, decision).items()
        }
        return decide(replace(facts, balances={**facts.balances, **balances}))

    def authorize_spend(
        self,
        spend: SpendInput,
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
    ) -> AuthorizationResult:
        """Decide and, if allowed, reserve on every covering budget at once."""
        config = self.cache.get()
        resolved = resolve(config, spend)
        if idempotency_key is not None:
            first = self.store.find_by_idempotency_key(resolved.agent.id, idempotency_key)
            if first is not None:
                return self._replay(first, resolved)
        facts, decision = self._decide(config, self._facts(config, resolved, self._price(resolved)))
        for _attempt in range(MAX_RESERVE_ATTEMPTS):
            # The balances as of this decision: they explain it (headroom, reasons) and let a
            # spend that cannot fit be denied without a write. The conditional reservation
            # below is still what guarantees the limit.
            facts, decision = self._with_balances(facts, decision)
            if not decision.allowed:
                decision = self._explained(facts, decision)
                if not decision.allowed:
                    return self._deny(config, resolved, facts, decision, idempotency_key, actor)
                continue
            auth = self._new_authorization(config, resolved, facts, decision, idempotency_key)
            outcome = self.store.reserve(
                auth, decision.claims, self._audit("authorization.created", auth, actor), facts.now
            )
            if outcome.authorization is not None:
                if outcome.replayed:
                    return self._replay(outcome.authorization, resolved)
                return AuthorizationResult(outcome.authorization, auth.decision)
            decision = self._explained(facts, decision)  # lost a race: real numbers now
        if not decision.allowed:
            return self._deny(config, resolved, facts, decision, idempotency_key, actor)
        # Every attempt lost a race yet the budgets still seem to have room: nothing was
        # recorded, so the caller may simply retry.
        raise StoreUnavailable(
            "the budgets of this spend changed concurrently on every attempt; retry",
            code="budget_contention",
        )

    def _replay(self, first: Authorization, resolved: Resolved) -> AuthorizationResult:
        if first.request_hash != resolved.fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {first.idempotency_key!r} was already used for a different "
                f"request (authorization {first.id}); use a new key for a new request",
                field="idempotency_key",
            )
        return AuthorizationResult(first, first.decision, replayed=True)

    def _deny(
        self,
        config: OrgConfig,
        resolved: Resolved,
        facts: Facts,
        decision: Decision,
        idempotency_key: str | None,
        actor: str | None,
    ) -> AuthorizationResult:
        assert not decision.allowed, "only denials are recorded without a reservation"
        auth = self._new_authorization(config, resolved, facts, decision, idempotency_key)
        outcome = self.store.record_denial(
            auth, self._audit("authorization.denied", auth, actor), self.clock.now()
        )
        assert outcome.authorization is not None
        if outcome.replayed:
            return self._replay(outcome.authorization, resolved)
        return AuthorizationResult(outcome.authorization, auth.decision)

    def _new_authorization(
        self,
        config: OrgConfig,
        resolved: Resolved,
        facts: Facts,
        decision: Decision,
        idempotency_key: str | None,
    ) -> Authorization:
        """The authorization to store; it keeps the price the decision used, so a backtest
        replays the spend at the value it had, not at today's price."""
        now = self.clock.now()
        state = _STATE_FOR_TIER.get(decision.tier, AuthState.DENIED)
        ttl_s = config.settings.authorization_ttl_s
        if state is AuthState.PENDING_APPROVAL and decision.approval_expiry_s is not None:
            ttl_s = decision.approval_expiry_s
        release_after = now + timedelta(seconds=decision.delay_s) if decision.delay_s else None
        expires_at = None
        if state is not AuthState.DENIED:
            expires_at = (release_after or now) + timedelta(seconds=ttl_s)
        asset = resolved.asset
        explained = decision.as_dict()
        explained["request"] = request_dict(resolved.request, asset, resolved.call)
        return Authorization(
            id=new_id("auth"),
            agent_id=resolved.agent.id,
            wallet_id=resolved.wallet.id,
            department_id=resolved.agent.department_id,
            chain=resolved.wallet.chain,
            vendor=resolved.wallet.vendor,
            asset_id=resolved.request.asset_id,
            amount=resolved.request.amount,
            value_usd_micros=decision.value_usd_micros or 0,
            price_atto=None if facts.price is None else facts.price.price_atto,
            decimals=asset.decimals if asset else None,
            state=state,
            tier=decision.tier.value,
            recipient=resolved.request.recipient,
            created_at=now,
            expires_at=expires_at,
            release_after=release_after,
            idempotency_key=idempotency_key,
            request_hash=resolved.fingerprint,
            decision=explained,
        )

    def _audit(self, kind: str, auth: Authorization, actor: str | None) -> AuditRecord:
        return AuditRecord(
            kind=kind,
            actor=actor or f"agent:{auth.agent_id}",
            subject=auth.id,
            payload={"authorization": auth.id, "state": auth.state.value, **auth.decision},
        )

    def _get(self, authorization_id: str) -> Authorization:
        auth = self.store.get_authorization(authorization_id)
        if auth is None:
            raise NotFound(f"authorization {authorization_id!r} does not exist")
        return auth

    def capture(
        self,
        authorization_id: str,
        amount: object = None,
        *,
        tx_hash: str | None = None,
        actor: str | None = None,
    ) -> Authorization:
        """Post the final amount (≤ authorized). Exactly once; a same-amount retry returns it."""
        auth = self._get(authorization_id)
        final = auth.amount if amount is None else parse_amount(amount, auth.decimals or 0)
        if final > auth.amount:
            raise InvalidRequest(
                f"amount: capture of {final} base units exceeds the {auth.amount} authorized; "
                "authorize the difference separately",
                field="amount",
                code="capture_exceeds_authorization",
            )
        if (
            auth.state is AuthState.DELAYED
            and auth.release_after is not None
            and auth.release_after <= self.clock.now()
        ):
            auth = self.release_delayed(auth.id, actor=actor or f"agent:{auth.agent_id}")
        self._refuse_unless_capturable(auth)
        usd = self._captured_usd(auth, final)
        now = self.clock.now()
        audit = AuditRecord(
            "authorization.captured",
            actor or f"agent:{auth.agent_id}",
            auth.id,
            {"amount_base_units": str(final), "usd_micros": usd, "tx_hash": tx_hash},
        )
        done = self.store.capture(auth.id, final, usd, now, audit, tx_hash)
        if done is not None:
            return done
        current = self._get(authorization_id)
        if current.state is AuthState.CAPTURED and current.captured_amount == final:
            return current
        raise InvalidState(
            f"authorization {auth.id} is {current.state.value}; it can no longer be captured",
            code="authorization_not_pending",
        )

    def _refuse_unless_capturable(self, auth: Authorization) -> None:
        if (
            auth.state is AuthState.PENDING
            and auth.expires_at
            and auth.expires_at <= self.clock.now()
        ):
            self.store.release(
                auth.id,
                AuthState.EXPIRED.value,
                self.clock.now(),
                AuditRecord("authorization.expired", "system", auth.id, {}),
            )
            raise InvalidState(
                f"authorization {auth.id} expired at {auth.expires_at.isoformat()}",
                code="authorization_expired",
            )
        if auth.state in {AuthState.PENDING_APPROVAL, AuthState.DELAYED}:
            raise InvalidState(
                f"authorization {auth.id} is {auth.state.value}; it can be captured once it is "
                "approved or its delay has passed",
                code="authorization_not_released",
            )

    def _captured_usd(self, auth: Authorization, final: int) -> int:
        if auth.amount in (final, 0):
            return auth.value_usd_micros
        # Same valuation as at authorization time, pro rata, rounded up; never above it.
        prorated = -(-auth.value_usd_micros * final // auth.amount)
        return min(prorated, auth.value_usd_micros)

    def void(
        self, authorization_id: str, *, reason: str = "voided by caller", actor: str | None = None
    ) -> Authorization:
        """Release the reservation. Exactly once; voiding a voided authorization returns it.

        An authorization already past its expiry that the sweeper has not reached yet is
        released as ``expired``, not ``voided``: the record says what happened first.
        """
        auth = self._get(authorization_id)
        now = self.clock.now()
        if auth.expires_at is not None and auth.expires_at <= now:
            audit = AuditRecord("authorization.expired", "system", auth.id, {"noticed_by": actor})
            expired = self.store.release(auth.id, AuthState.EXPIRED.value, now, audit)
            if expired is not None:
                return expired
        audit = AuditRecord(
            "authorization.voided", actor or f"agent:{auth.agent_id}", auth.id, {"reason": reason}
        )
        done = self.store.release(auth.id, AuthState.VOIDED.value, now, audit)
        if done is not None:
            return done
        current = self._get(authorization_id)
        if current.state in (AuthState.VOIDED, AuthState.EXPIRED):
            return current
        raise InvalidState(
            f"authorization {auth.id} is {current.state.value}; only a pending authorization "
            "can be voided",
            code="authorization_not_pending",
        )

    def hold(self, authorization_id: str, *, seconds: int, actor: str) -> Authorization:
        """Keep a pending authorization reserved for ``seconds`` more (never shorter).

        A custodial payment holds its authorization from broadcast until the chain decides:
        a slow confirmation must not find the reservation expired and released.
        """
        now = self.clock.now()
        audit = AuditRecord("authorization.held", actor, authorization_id, {"seconds": seconds})
        held = self.store.hold(authorization_id, now + timedelta(seconds=seconds), now, audit)
        if held is None:
            current = self._get(authorization_id)
            raise InvalidState(
                f"authorization {authorization_id} is {current.state.value} or expired; "
                "it can no longer be held",
                code="authorization_not_pending",
            )
        return held

    # -- tiers: approval and delay --------------------------------------------------------
    def approve(
        self, authorization_id: str, *, actor: str, detail: dict[str, object] | None = None
    ) -> Authorization:
        """The required approvals are in: ``pending_approval`` → ``pending``, capturable for
        the org's authorization TTL from now. The reservation it held all along stays."""
        return self._promote(
            authorization_id, AuthState.PENDING_APPROVAL, "authorization.approved", actor, detail
        )

    def reject(self, authorization_id: str, *, reason: str, actor: str) -> Authorization:
        """Approvers said no: the authorization is ``rejected`` and its reservation released.
        Rejecting a rejected authorization returns it."""
        audit = AuditRecord("authorization.rejected", actor, authorization_id, {"reason": reason})
        done = self.store.release(
            authorization_id, AuthState.REJECTED.value, self.clock.now(), audit
        )
        if done is not None:
            return done
        current = self._get(authorization_id)
        if current.state is AuthState.REJECTED:
            return current
        raise InvalidState(
            f"authorization {authorization_id} is {current.state.value}; only one that is "
            "still reserved can be rejected",
            code="authorization_not_pending",
        )

    def release_delayed(self, authorization_id: str, *, actor: str = "system") -> Authorization:
        """A delayed authorization whose delay has passed becomes ``pending`` (capturable)."""
        auth = self._get(authorization_id)
        if (
            auth.state is AuthState.DELAYED
            and auth.release_after is not None
            and auth.release_after > self.clock.now()
        ):
            raise InvalidState(
                f"authorization {auth.id} is delayed until {auth.release_after.isoformat()}",
                code="authorization_not_released",
            )
        return self._promote(authorization_id, AuthState.DELAYED, "authorization.released", actor)

    def release_due(self, *, limit: int = 1000) -> list[str]:
        """Release every delayed authorization whose delay has passed; returns their ids."""
        released = []
        for ident in self.store.due_delayed(self.clock.now(), limit):
            with contextlib.suppress(InvalidState):  # another worker released it first
                self.release_delayed(ident)
                released.append(ident)
        return released

    def _promote(
        self,
        authorization_id: str,
        from_state: AuthState,
        kind: str,
        actor: str,
        detail: dict[str, object] | None = None,
    ) -> Authorization:
        now = self.clock.now()
        expires_at = now + timedelta(seconds=self.cache.get().settings.authorization_ttl_s)
        audit = AuditRecord(kind, actor, authorization_id, dict(detail or {}))
        done = self.store.promote(authorization_id, from_state.value, expires_at, now, audit)
        if done is not None:
            return done
        current = self._get(authorization_id)
        if current.state is AuthState.PENDING and from_state is not AuthState.PENDING:
            return current  # promoted already (a retry, or a racing worker)
        if current.state is from_state and current.expires_at and current.expires_at <= now:
            self.store.release(
                current.id,
                AuthState.EXPIRED.value,
                now,
                AuditRecord("authorization.expired", "system", current.id, {}),
            )
            raise InvalidState(
                f"authorization {current.id} expired at {current.expires_at.isoformat()}",
                code="authorization_expired",
            )
        raise InvalidState(
            f"authorization {authorization_id} is {current.state.value}, not {from_state.value}",
            code="authorization_not_pending",
        )

    def expire_stale(self, *, limit: int = 1000) -> int:
        """Release every reserving authorization past its expiry (pending, delayed, awaiting
        approval: an approval nobody gave in time expires); returns how many."""
        now = self.clock.now()
        count = 0
        for ident in self.store.stale_authorizations(now, limit):
            audit = AuditRecord("authorization.expired", "system", ident, {})
            if self.store.release(ident, AuthState.EXPIRED.value, now, audit) is not None:
                count += 1
        return count


def _without_reservation(balance: BudgetBalance, amount_micros: int) -> BudgetBalance:
    """``balance`` as if one reservation of ``amount_micros`` (and a count of one) were not
    in it; never below zero."""
    return replace(
        balance,
        pending_micros=max(0, balance.pending_micros - amount_micros),
        pending_count=max(0, balance.pending_count - 1),
    )
