"""The reconciliation watcher: follow each chain, and account for every transfer out of a
registered wallet, custodial or external.

Each :meth:`Reconciler.run_once` visits every configured network:

1. **Claim** the network's lease (one node at a time watches a network; a lease renewed every
   tick and taken over once it runs out, see :class:`~.reconcile_ports.ReconcileStore`).
2. **Read** the blocks (slots) after the persisted cursor, up to the chain's final head and
   at most ``max_blocks`` per tick: every transfer out of the network's registered wallets
   (:meth:`~.chain_ports.Chain.outgoing`). The first run only records the head: watching
   starts there.
3. **Reconcile** each transfer not recorded yet, one transaction at a time (rules in
   :mod:`.reconcile_match`): matched, a custodial payment, an allowance pull, awaiting a
   capture, a mismatch or unauthorized. An unauthorized spend is counted (a captured
   authorization posted on every covering budget, past the limit if need be:
   :mod:`.reconcile_spend`), audited as ``spend.unauthorized`` (which the notifier turns into
   a ``spend.unauthorized`` webhook), and freezes the agent at once when the org file's
   ``settings.on_breach`` lists ``freeze_agent``. A capture the chain contradicts is audited as
   ``spend.mismatch`` (and any value beyond what the capture counted as ``spend.unauthorized``).
4. **Advance** the cursor; then revisit transfers still awaiting a capture.

**Restarts.** Every transfer is keyed by ``(network, tx_id, index)`` and recorded at most
once, and the cursor moves only after the range is reconciled, so a watcher stopped anywhere
re-reads at most one range and records nothing twice, and misses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import groupby
from typing import Final

from treasurer.domain.authorization import Authorization
from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import InvalidState
from treasurer.domain.money import MAX_DECIMALS, format_amount
from treasurer.domain.org import Wallet
from treasurer.service.admin import Governance
from treasurer.service.chain_ports import Chain, ObservedTransfer
from treasurer.service.reconcile_match import (
    Expected,
    Verdict,
    by_allowance,
    by_amount,
    may_still_be_captured,
    pair_by_tx,
)
from treasurer.service.reconcile_ports import ReconcileStore, TransferRecord, TransferStatus
from treasurer.service.reconcile_record import Recorder
from treasurer.service.reconcile_spend import ACTOR

log = logging.getLogger("treasurer.reconcile")

#: How often ``treasurer serve`` runs a tick.
WATCH_INTERVAL_S: Final = 1.0
#: Blocks (slots) read per network per tick: one tick stays short while catching up.
MAX_BLOCKS_PER_TICK: Final = 100
#: A lease outlives a missed tick or two, and a dead node's network is taken over after it.
LEASE_S: Final = 30.0
#: How long a transfer may wait for the capture of an open authorization of its asset.
CAPTURE_GRACE_S: Final = 60.0
#: Authorizations older than this are not candidates for a transfer seen now.
LOOKBACK_S: Final = 7 * 86_400
CANDIDATE_LIMIT: Final = 500
AWAITING_LIMIT: Final = 500


@dataclass
class WatchReport:
    """What one tick did, per status and network (for logs and tests)."""

    counts: dict[str, int] = field(default_factory=dict)
    networks: dict[str, int] = field(default_factory=dict)  # network → cursor after the tick
    skipped: list[str] = field(default_factory=list)  # networks another node holds

    def add(self, status: TransferStatus) -> None:
        self.counts[status.value] = self.counts.get(status.value, 0) + 1


class WatchFailed(Exception):
    """Watching some networks failed this tick (the others were watched: ``report``)."""

    def __init__(self, failures: Mapping[str, Exception], report: WatchReport) -> None:
        text = "; ".join(f"{network}: {exc}" for network, exc in failures.items())
        super().__init__(f"watching failed on {text}")
        self.failures = dict(failures)
        self.report = report


class Reconciler:
    """The watcher over ``chains`` (network → adapter) for ``governance``'s org."""

    def __init__(
        self,
        governance: Governance,
        store: ReconcileStore,
        chains: Mapping[str, Chain],
        *,
        owner: str | None = None,
        max_blocks: int = MAX_BLOCKS_PER_TICK,
        lease_s: float = LEASE_S,
        capture_grace_s: float = CAPTURE_GRACE_S,
    ) -> None:
        if max_blocks < 1:
            raise ValueError("max_blocks must be at least 1")
        self.gov = governance
        self.store = store
        self.chains = dict(chains)
        self.owner = owner or f"watcher-{secrets.token_hex(6)}"
        self.max_blocks = max_blocks
        self.lease_s = lease_s
        self.grace_s = capture_grace_s
        self.recorder = Recorder(governance, store)

    # -- the loop -------------------------------------------------------------------------
    def run_once(self) -> WatchReport:
        """One tick over every network. A failing network does not stop the others; the
        failures are raised together afterwards (:class:`WatchFailed`), so the caller's loop
        logs them at its own pace (``serve``: once a minute while they repeat)."""
        report = WatchReport()
        failures: dict[str, Exception] = {}
        for network in sorted(self.chains):
            try:
                self.watch(network, report)
            except Exception as exc:  # a node down on one chain must not blind the others
                failures[network] = exc
        if failures:
            raise WatchFailed(failures, report) from next(iter(failures.values()))
        return report

    def watch(self, network: str, report: WatchReport | None = None) -> WatchReport:
        """One tick over ``network``."""
        report = report or WatchReport()
        chain = self.chains[network]
        claim = self.store.claim(network, self.owner, self.gov.clock.now(), self.lease_s)
        if claim is None:
            report.skipped.append(network)
            return report
        head = chain.head()
        if claim.cursor is None:
            self.store.advance(network, self.owner, head, self.gov.clock.now())
            report.networks[network] = head
            return report
        cursor = claim.cursor
        if head < cursor:
            # The chain is behind what was read: an embedded dev chain restarted from block 0,
            # or a lagging node behind a load balancer. Reading again from its head is safe
            # (transfers already recorded are skipped); waiting for the old cursor is not.
            log.warning("%s is at block %d, behind the %d already read", network, head, cursor)
            self.store.advance(network, self.owner, head, self.gov.clock.now())
            cursor = head
        end = min(head, cursor + self.max_blocks)
        if end > cursor:
            config = self.gov.cache.get()
            addresses = sorted({w.address for w in config.wallets.values() if w.chain == network})
            transfers = chain.outgoing(addresses, cursor + 1, end) if addresses else []
            self._reconcile(network, transfers, None, report)
            if not self.store.advance(network, self.owner, end, self.gov.clock.now()):
                log.info("lost the lease on %s; another node watches it now", network)
                return report
            cursor = end
        report.networks[network] = cursor
        waiting = self.store.awaiting(network, AWAITING_LIMIT)
        if waiting:
            self._revisit(network, waiting, report)
        return report

    def close(self) -> None:
        """Give up every lease this watcher holds (another node takes over at once)."""
        for network in self.chains:
            with contextlib.suppress(Exception):
                self.store.release(network, self.owner)

    # -- reconciling ----------------------------------------------------------------------
    def _reconcile(
        self,
        network: str,
        transfers: Sequence[ObservedTransfer],
        observed: Mapping[tuple[str, int], datetime] | None,
        report: WatchReport,
    ) -> None:
        """Reconcile new transfers (``observed`` None) or revisit awaiting ones (``observed``:
        when each was first seen)."""
        if observed is None:
            known = self.store.recorded(network, [(t.tx_id, t.index) for t in transfers])
            transfers = [t for t in transfers if (t.tx_id, t.index) not in known]
        config = self.gov.cache.get()
        for (_tx, sender), group in groupby(transfers, key=lambda t: (t.tx_id, t.sender)):
            wallet = config.find_wallet(f"{network}:{sender}")
            if wallet is None or wallet.agent_id not in config.agents:
                continue
            self._reconcile_tx(network, config, wallet, list(group), observed, report)

    def _reconcile_tx(
        self,
        network: str,
        config: OrgConfig,
        wallet: Wallet,
        transfers: list[ObservedTransfer],
        observed: Mapping[tuple[str, int], datetime] | None,
        report: WatchReport,
    ) -> None:
        now = self.gov.clock.now()
        verdicts = pair_by_tx(config, transfers, self._expected(network, wallet, transfers[0]))
        candidates = self.store.candidates(
            wallet.id, now - timedelta(seconds=LOOKBACK_S), CANDIDATE_LIMIT
        )
        taken = self.store.linked([a.id for a in candidates])
        for position, transfer in enumerate(transfers):
            seen_at = now if observed is None else observed[(transfer.tx_id, transfer.index)]
            verdict = verdicts.get(position) or (
                by_allowance(config, wallet.address, transfer, candidates)
                or by_amount(config, transfer, candidates, taken, now)
            )
            if verdict is None and may_still_be_captured(
                config, transfer, candidates, seen_at, now, self.grace_s
            ):
                verdict = Verdict(TransferStatus.AWAITING_CAPTURE)
            verdict = verdict or Verdict(TransferStatus.UNAUTHORIZED)
            if verdict.authorization is not None and verdict.status is not (
                TransferStatus.ALLOWANCE
            ):
                taken.add(verdict.authorization.id)
            record = TransferRecord(
                network=network,
                transfer=transfer,
                wallet_id=wallet.id,
                agent_id=wallet.agent_id,
                status=verdict.status,
                observed_at=seen_at,
            )
            expected = None if observed is None else TransferStatus.AWAITING_CAPTURE
            if self._apply(config, wallet, record, verdict, expected):
                report.add(record.status)

    def _expected(self, network: str, wallet: Wallet, first: ObservedTransfer) -> list[Expected]:
        """What the transaction of ``first`` was meant to do (rule 1)."""
        expected: list[Expected] = []
        link = self.store.payment_for_tx(network, first.tx_id)
        if link is not None and link.authorization_id is not None:
            auth = self.gov.store.get_authorization(link.authorization_id)
            if auth is not None:
                expected.append(Expected(auth, TransferStatus.PAYMENT))
        seen = {e.authorization.id for e in expected}
        for auth in self.store.captured_with_tx(wallet.id, first.tx_id):
            if auth.id not in seen:
                expected.append(Expected(auth, TransferStatus.MATCHED))
        linked = self.store.linked([e.authorization.id for e in expected])
        return [e for e in expected if e.authorization.id not in linked]

    def _revisit(self, network: str, waiting: list[TransferRecord], report: WatchReport) -> None:
        observed = {(r.transfer.tx_id, r.transfer.index): r.observed_at for r in waiting}
        self._reconcile(network, [r.transfer for r in waiting], observed, report)

    # -- applying a verdict ---------------------------------------------------------------
    def _apply(
        self,
        config: OrgConfig,
        wallet: Wallet,
        record: TransferRecord,
        verdict: Verdict,
        expected: TransferStatus | None,
    ) -> bool:
        now = self.gov.clock.now()
        status = verdict.status
        if status is TransferStatus.AWAITING_CAPTURE:
            return expected is None and self.store.settle(record, None)
        if status is TransferStatus.UNAUTHORIZED:
            return self.recorder.unauthorized(config, wallet, record, expected)
        if status is TransferStatus.MISMATCH:
            return self.recorder.mismatch(config, wallet, record, verdict, expected)
        auth = verdict.authorization
        assert auth is not None
        if verdict.capture and not self._capture(auth, record.transfer):
            if expected is None:  # lost a race with the integration: look again next tick
                return self.store.settle(
                    replace(record, status=TransferStatus.AWAITING_CAPTURE), None
                )
            return False
        settled = replace(
            record, authorization_id=auth.id, detail=dict(verdict.detail), resolved_at=now
        )
        return self.store.settle(settled, expected)

    def _capture(self, auth: Authorization, transfer: ObservedTransfer) -> bool:
        amount = format_amount(
            transfer.amount, MAX_DECIMALS if auth.decimals is None else auth.decimals
        )
        try:
            self.gov.capture(auth.id, amount, tx_hash=transfer.tx_id, actor=ACTOR)
        except InvalidState:
            return False
        return True
