"""Recording what reconciliation found wrong: unauthorized spends and contradicted captures.

Each verdict is written in one transaction through the :class:`ReconcileStore` (the transfer's
record, and for money nobody authorized the captured authorization that counts it, its
budget postings and its audit events: :mod:`.reconcile_spend`). When the org's
``settings.on_breach`` lists ``freeze_agent``, the agent's freeze is part of that same
transaction, written only if the record is new: no crash can record a breach and leave its
agent free to spend. The audit events are what the notifier turns into webhooks.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from treasurer.domain.authorization import Authorization
from treasurer.domain.config import OrgConfig
from treasurer.domain.money import usd_decimal_text
from treasurer.domain.org import Scope, ScopeKind, Wallet
from treasurer.service.admin import Governance
from treasurer.service.chain_ports import ObservedTransfer
from treasurer.service.ports import AuditRecord
from treasurer.service.reconcile_match import Verdict
from treasurer.service.reconcile_ports import (
    FreezeOrder,
    ReconcileStore,
    TransferRecord,
    TransferStatus,
)
from treasurer.service.reconcile_spend import (
    ACTOR,
    Valuation,
    claims_of,
    unauthorized_record,
    value,
)

log = logging.getLogger("treasurer.reconcile")


class Recorder:
    """Writes the verdicts that are breaches, and applies the org's breach actions."""

    def __init__(self, governance: Governance, store: ReconcileStore) -> None:
        self.gov = governance
        self.store = store

    def unauthorized(
        self,
        config: OrgConfig,
        wallet: Wallet,
        record: TransferRecord,
        expected: TransferStatus | None,
    ) -> bool:
        """Count ``record``'s transfer as a spend nobody authorized; False when another pass
        recorded it first (nothing written, nothing frozen)."""
        now = self.gov.clock.now()
        transfer = record.transfer
        agent = config.agents[wallet.agent_id]
        valuation = value(config, self.gov.store, record.network, transfer, now)
        claims = claims_of(config, agent, wallet, valuation, transfer, now)
        reason = (
            "spend_unauthorized",
            f"{valuation.amount_text(transfer.amount)} {valuation.asset_id} left wallet "
            f"{wallet.handle} in transaction {transfer.tx_id} without an authorization",
        )
        auth = unauthorized_record(
            network=record.network,
            agent=agent,
            wallet=wallet,
            transfer=transfer,
            valuation=valuation,
            claims=claims,
            now=now,
            reason=reason,
        )
        audit = self._unauthorized_audit(auth, record, valuation, "no_authorization")
        settled = replace(
            record,
            status=TransferStatus.UNAUTHORIZED,
            authorization_id=auth.id,
            detail={"value_usd": auth.decision["value_usd"], "priced": valuation.priced},
            resolved_at=now,
        )
        freeze = self._freeze_order(config, wallet, transfer)
        done = self.store.record_unauthorized(settled, expected, auth, claims, [audit], now, freeze)
        if done:
            log.warning("unauthorized spend: %s", reason[1])
            self._frozen(freeze)
        return done

    def mismatch(
        self,
        config: OrgConfig,
        wallet: Wallet,
        record: TransferRecord,
        verdict: Verdict,
        expected: TransferStatus | None,
    ) -> bool:
        """Flag a capture the chain contradicts (``spend.mismatch``), and count whatever the
        transfer is worth beyond what the capture counted as an unauthorized spend."""
        now = self.gov.clock.now()
        transfer = record.transfer
        matched = verdict.authorization
        assert matched is not None
        agent = config.agents[wallet.agent_id]
        valuation = value(config, self.gov.store, record.network, transfer, now)
        counted = matched.captured_usd_micros or matched.value_usd_micros
        excess = max(0, valuation.usd_micros - counted)
        payload: dict[str, object] = {
            "authorization": matched.id,
            "agent": agent.id,
            "wallet": wallet.id,
            "chain": record.network,
            "tx_id": transfer.tx_id,
            "index": transfer.index,
            "differences": list(verdict.differences),
            "expected": {
                "asset": matched.asset_id,
                "recipient": matched.recipient,
                "amount_base_units": str(matched.captured_amount or matched.amount),
            },
            "observed": {
                "asset": valuation.asset_id,
                "token": transfer.token,
                "recipient": transfer.recipient,
                "amount_base_units": str(transfer.amount),
                "value_usd": usd_decimal_text(valuation.usd_micros) if valuation.priced else None,
            },
            "excess_usd_micros": excess,
        }
        audits = [AuditRecord("spend.mismatch", ACTOR, matched.id, payload)]
        detail: dict[str, object] = {
            "differences": list(verdict.differences),
            "excess_usd_micros": excess,
        }
        settled = replace(
            record,
            status=TransferStatus.MISMATCH,
            authorization_id=matched.id,
            detail=detail,
            resolved_at=now,
        )
        freeze = self._freeze_order(config, wallet, transfer)
        if excess > 0:
            claims = claims_of(
                config, agent, wallet, replace(valuation, usd_micros=excess), transfer, now
            )
            reason = (
                "spend_exceeds_authorization",
                f"transaction {transfer.tx_id} moved more than authorization {matched.id} "
                f"counted ({', '.join(verdict.differences)} differ)",
            )
            extra = unauthorized_record(
                network=record.network,
                agent=agent,
                wallet=wallet,
                transfer=transfer,
                valuation=valuation,
                claims=claims,
                now=now,
                reason=reason,
                usd_micros=excess,
            )
            audits.append(
                self._unauthorized_audit(extra, record, valuation, "exceeds_authorization")
            )
            detail["unauthorized_authorization"] = extra.id
            done = self.store.record_unauthorized(
                settled, expected, extra, claims, audits, now, freeze
            )
        else:
            done = self.store.settle(settled, expected, audits, freeze)
        if done:
            log.warning(
                "capture of %s does not match transaction %s: %s differ",
                matched.id,
                transfer.tx_id,
                ", ".join(verdict.differences),
            )
            self._frozen(freeze)
        return done

    def _unauthorized_audit(
        self, auth: Authorization, record: TransferRecord, valuation: Valuation, reason: str
    ) -> AuditRecord:
        transfer = record.transfer
        return AuditRecord(
            "spend.unauthorized",
            ACTOR,
            auth.id,
            {
                "authorization": auth.id,
                "agent": auth.agent_id,
                "wallet": auth.wallet_id,
                "department": auth.department_id,
                "chain": record.network,
                "asset": valuation.asset_id,
                "amount": valuation.amount_text(transfer.amount),
                "amount_base_units": str(transfer.amount),
                "value_usd": auth.decision["value_usd"],
                "recipient": transfer.recipient,
                "tx_id": transfer.tx_id,
                "index": transfer.index,
                "block": transfer.block,
                "token": transfer.token,
                "initiator": transfer.initiator,
                "priced": valuation.priced,
                "reason": reason,
            },
        )

    def _freeze_order(
        self, config: OrgConfig, wallet: Wallet, transfer: ObservedTransfer
    ) -> FreezeOrder | None:
        """The agent's freeze when the org file says so (``on_breach: freeze_agent``), written
        with the verdict in one transaction."""
        if "freeze_agent" not in config.settings.on_breach:
            return None
        scope = Scope(ScopeKind.AGENT, wallet.agent_id)
        reason = f"unauthorized spend from wallet {wallet.id} (tx {transfer.tx_id})"
        audit = AuditRecord("freeze.set", ACTOR, str(scope), {"reason": reason})
        return FreezeOrder(scope, reason, ACTOR, audit)

    def _frozen(self, freeze: FreezeOrder | None) -> None:
        """After a committed freeze: this process's next decision must see it at once."""
        if freeze is not None:
            self.gov.cache.invalidate()
