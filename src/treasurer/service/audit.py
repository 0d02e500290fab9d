"""The tamper-evident audit trail: seal, checkpoint, export, verify (:class:`AuditTrail`).

Events are written by the store, in the transaction of the change they record, exactly as
before the chain existed; nothing on the hot path waits for a hash. :meth:`AuditTrail.seal`
links them afterwards (see ``docs/audit.md`` for why that stays correct with many concurrent
writers), and runs on demand (before every export and verification) and in the background of
``treasurer serve`` (:func:`seal_forever`). Checkpoints sign the head of the chain with the
deployment's Ed25519 key, so an attacker who rewrites the chain and recomputes every hash is
still caught.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from treasurer.domain.audit_chain import (
    ChainEvent,
    Checkpoint,
    ExportAnchor,
    ExportEnd,
    ExportHeader,
    anchor_line,
    checkpoint_line,
    checkpoint_message,
    end_line,
    event_line,
    header_line,
)
from treasurer.domain.audit_verify import ChainVerifier, VerifyReport
from treasurer.domain.errors import TreasurerError
from treasurer.service.audit_ports import AuditEntry, AuditLog, AuditQuery, CheckpointSigner
from treasurer.service.audit_signing import verify_ed25519
from treasurer.service.ports import Clock

#: Events sealed per transaction: short enough not to hold SQLite's one writer for long.
SEAL_BATCH = 500
#: Events read per query when exporting or verifying.
READ_PAGE = 1000
#: How long an export or a verification waits for events that open transactions hold back,
#: and how often it looks again.
SETTLE_TIMEOUT_S = 5.0
SETTLE_POLL_S = 0.05
#: How often ``treasurer serve`` seals, and how often it signs a checkpoint of a moved head.
SEAL_INTERVAL_S = 1.0
CHECKPOINT_INTERVAL_S = 3600.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_SEQ = 2**62
_logger = logging.getLogger("treasurer.audit")


class TextSink(Protocol):
    """Where an export goes (an open text file, ``sys.stdout``, ``io.StringIO``)."""

    def write(self, text: str, /) -> object: ...


class SigningKeyMissing(TreasurerError):
    """A checkpoint was asked for, but this deployment was given no signing key."""

    code = "audit_signing_key_missing"


class AuditChainBroken(TreasurerError):
    """The chain no longer verifies, so the sealer will not sign a checkpoint over it."""

    code = "audit_chain_broken"


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote."""

    events: int
    checkpoints: int
    first_seq: int | None
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class LiveVerification:
    """The verdict on the database's chain, and how many events still wait for the sealer
    (on PostgreSQL: events of transactions that were still open)."""

    report: VerifyReport
    unsealed: int


class AuditTrail:
    """Sealing, checkpoints, export and verification over one :class:`AuditLog`."""

    def __init__(self, log: AuditLog, clock: Clock, signer: CheckpointSigner | None = None) -> None:
        self.log = log
        self.clock = clock
        self.signer = signer

    # -- sealing --------------------------------------------------------------------------------
    def seal(self) -> int:
        """Seal every event committed so far that can be sealed; return how many were.

        Bounded by what was waiting when it started, so a steady stream of new events cannot
        keep one call running. Idempotent: sealed events are never sealed again.
        """
        waiting = self.log.unsealed()
        total = 0
        while total < waiting:
            want = min(SEAL_BATCH, waiting - total)
            done = self.log.seal(want)
            total += done
            if done < want:  # the rest is not sealable yet (open transactions) or gone
                break
        return total

    def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> int:
        """Seal, waiting up to ``timeout_s`` for the events committed before the call whose
        sealing an open transaction holds back (PostgreSQL); returns how many are still
        waiting (0 on SQLite, and usually within milliseconds on PostgreSQL).

        The wait is on the database, not on the injected clock, so it uses the monotonic
        clock: a test's frozen clock must not make it spin forever.
        """
        through = self.log.last_id()
        deadline = time.monotonic() + timeout_s
        while True:
            self.seal()
            waiting = self.log.unsealed(through)
            if waiting == 0 or time.monotonic() >= deadline:
                return waiting
            time.sleep(SETTLE_POLL_S)

    def checkpoint(self, signer: CheckpointSigner | None = None) -> Checkpoint | None:
        """Seal, then sign the head of the chain (None when the chain is empty). A head that
        already has a checkpoint is not signed twice."""
        key = signer or self.signer
        if key is None:
            raise SigningKeyMissing(
                "no audit signing key: checkpoints need the deployment's Ed25519 key"
            )
        self.seal()
        head = self.log.head()
        if head is None:
            return None
        latest = self.log.latest_checkpoint()
        if latest is not None and latest.seq == head.seq:
            return latest
        self._verify_since(latest, head.seq)
        at_us = _micros(self.clock.now())
        message = checkpoint_message(head.seq, head.hash, at_us, key.key_id)
        made = Checkpoint(
            head.seq, head.hash, at_us, key.key_id, key.public_key, key.sign(message).hex()
        )
        if self.log.add_checkpoint(made):
            return made
        return self.log.checkpoints(head.seq, head.seq)[0]  # another node signed it first

    def _verify_since(self, latest: Checkpoint | None, head_seq: int) -> None:
        """Refuse to sign a chain that is broken since the last checkpoint: a signature must
        never vouch for a rewrite that happened in the unsigned tail."""
        anchor = self.log.anchor()
        if anchor is not None and (latest is None or latest.seq <= anchor.purge.upto_seq):
            self.verify_range(head_seq)  # nothing signed since the purge: from its anchor
            return
        start = latest.seq if latest is not None else 1
        verifier = ChainVerifier(verify_ed25519, expect_first_seq=start)
        for item in self._walk((start, head_seq)):
            if isinstance(item, ChainEvent):
                verifier.event(item)
            else:
                verifier.checkpoint(item)
        _refuse_broken(verifier.finish())

    def verify_range(self, last_seq: int, purpose: str = "signed") -> None:
        """Verify the chain from its start (event 1, or the purge anchor) to ``last_seq``;
        raise :class:`AuditChainBroken` when it does not hold (before signing over it, or
        purging it: ``purpose`` says which, for the message)."""
        verifier, first = self._start_verifier(None)
        span = (first, last_seq) if last_seq >= first else None
        for item in self._walk(span):
            if isinstance(item, ChainEvent):
                verifier.event(item)
            else:
                verifier.checkpoint(item)
        _refuse_broken(verifier.finish(), purpose)

    def _start_verifier(self, trusted_key: str | None) -> tuple[ChainVerifier, int]:
        """A verifier primed with where the live chain starts, and that first ``seq``: event
        1 from the genesis hash, or after a purge the event after its signed anchor."""
        anchor = self.log.anchor()
        if anchor is None:
            return ChainVerifier(verify_ed25519, trusted_key, expect_first_seq=1), 1
        verifier = ChainVerifier(verify_ed25519, trusted_key)
        if anchor.checkpoint is None:
            verifier.anchor_missing(anchor.purge.upto_seq, anchor.purge.upto_hash)
        else:
            verifier.anchor(anchor.checkpoint)
        return verifier, anchor.purge.upto_seq + 1

    def tick(self, checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> int:
        """One background step: seal, and sign a checkpoint when the last one is older than
        ``checkpoint_interval_s`` and the chain has moved since. Returns events sealed."""
        sealed = self.seal()
        if self.signer is None:
            return sealed
        head, latest = self.log.head(), self.log.latest_checkpoint()
        if head is None or (latest is not None and latest.seq == head.seq):
            return sealed
        age_s = (_micros(self.clock.now()) - (latest.at_us if latest else 0)) / 1e6
        if latest is None or age_s >= checkpoint_interval_s:
            self.checkpoint()
        return sealed

    # -- reading --------------------------------------------------------------------------------
    def events(self, query: AuditQuery, limit: int, after_id: int = 0) -> list[AuditEntry]:
        """The event list; filters that only sealed events answer are sealed for first."""
        if query.sealed_filters():
            self.seal()
        return self.log.events(query, limit, after_id)

    def export(
        self, out: TextSink, since: datetime | None = None, until: datetime | None = None
    ) -> ExportSummary:
        """Write the chain (or the contiguous slice covering [since, until)) to ``out`` as JSON
        Lines: a header, every event with its checkpoints right after it, an end line.

        Settles first (events of transactions still open are waited for, briefly); with a
        signing key, also signs the head, so a whole export ends with a signed checkpoint.
        """
        self.settle()
        if self.signer is not None:
            self.checkpoint()
        span = self._span(since, until)
        first, last = span if span is not None else (None, None)
        anchor = self._export_anchor(first, whole=since is None and until is None)
        header = ExportHeader(
            first,
            last,
            _opt_micros(since),
            _opt_micros(until),
            self._now_us(),
            anchor.checkpoint.seq if anchor is not None else None,
        )
        out.write(header_line(header))
        if anchor is not None:
            out.write(anchor_line(anchor))
        events = checkpoints = 0
        written_last: int | None = None
        for item in self._walk(span):
            if isinstance(item, ChainEvent):
                out.write(event_line(item))
                events, written_last = events + 1, item.seq
            else:
                out.write(checkpoint_line(item))
                checkpoints += 1
        out.write(end_line(ExportEnd(events, checkpoints, written_last)))
        return ExportSummary(events, checkpoints, first, last)

    def verify_live(self, trusted_key: str | None = None) -> LiveVerification:
        """Settle, then verify the database's whole chain, with its checkpoints: from event 1,
        or, after a retention purge, from the purge's signed anchor."""
        self.settle()
        head = self.log.head()
        verifier, first = self._start_verifier(trusted_key)
        span = (first, head.seq) if head is not None and head.seq >= first else None
        for item in self._walk(span, tail=True, tail_from=first - 1):
            if isinstance(item, ChainEvent):
                verifier.event(item)
            else:
                verifier.checkpoint(item)
        return LiveVerification(verifier.finish(), self.log.unsealed())

    def _span(self, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
        if since is None and until is None:
            head, anchor = self.log.head(), self.log.anchor()
            first = anchor.purge.upto_seq + 1 if anchor is not None else 1
            return (first, head.seq) if head is not None and head.seq >= first else None
        return self.log.seq_range(since, until)

    def _export_anchor(self, first_seq: int | None, *, whole: bool) -> ExportAnchor | None:
        """The purge anchor, when the export starts right after it (a whole export after a
        purge always does), so that an offline verify starts the chain there."""
        anchor = self.log.anchor()
        if anchor is None or anchor.checkpoint is None:
            return None
        if (first_seq is None and whole) or first_seq == anchor.purge.upto_seq + 1:
            return ExportAnchor(anchor.checkpoint)
        return None

    def _walk(
        self, span: tuple[int, int] | None, *, tail: bool = False, tail_from: int = 0
    ) -> Iterator[ChainEvent | Checkpoint]:
        """Events of ``span`` in ``seq`` order, each checkpoint right after the event with its
        ``seq`` (before the next event when that one is missing). ``tail`` adds checkpoints
        past the chain's end (and past ``tail_from``, the purge anchor), so a checkpoint of
        deleted trailing events is still seen."""
        last = tail_from
        if span is not None:
            first, last = span
            after = first - 1
            while after < last:
                page = self.log.chain(after, last, READ_PAGE)
                upto = page[-1].seq if len(page) == READ_PAGE else last
                yield from _merge(page, self.log.checkpoints(after + 1, upto))
                after = upto
        if tail:
            # Checkpoints past the last event mean trailing events were deleted, unless the
            # chain grew (and a checkpoint was signed) while this walk ran: read the head again.
            now = self.log.head()
            yield from self.log.checkpoints(max(last, now.seq if now else 0) + 1, _MAX_SEQ)

    def _now_us(self) -> int:
        return _micros(self.clock.now())


def _merge(
    events: list[ChainEvent], checkpoints: list[Checkpoint]
) -> Iterator[ChainEvent | Checkpoint]:
    pending = iter(checkpoints)
    upcoming = next(pending, None)
    for event in events:
        while upcoming is not None and upcoming.seq < event.seq:
            yield upcoming
            upcoming = next(pending, None)
        yield event
        while upcoming is not None and upcoming.seq == event.seq:
            yield upcoming
            upcoming = next(pending, None)
    while upcoming is not None:
        yield upcoming
        upcoming = next(pending, None)


def _refuse_broken(report: VerifyReport, purpose: str = "signed") -> None:
    if not report.ok:
        problem = report.first_broken or report.checkpoint_problems[0]
        raise AuditChainBroken(
            f"the audit chain is broken, so it was not {purpose}: {problem.message}; "
            "run GET /v1/audit/verify for the whole report"
        )


def audit_of(owner: object) -> AuditTrail | None:
    """The audit trail an object offers as ``.audit`` (the embedded governance, once the
    composition root attached one); None when it offers none."""
    trail = getattr(owner, "audit", None)
    return trail if isinstance(trail, AuditTrail) else None


def seal_forever(
    trail: AuditTrail,
    stop: threading.Event,
    interval_s: float = SEAL_INTERVAL_S,
    checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
) -> None:
    """Seal every ``interval_s`` (and sign a checkpoint every ``checkpoint_interval_s`` when
    the trail has a signer) until ``stop`` is set; for a background thread of the server.
    A failed round is logged and retried on the next tick."""
    while not stop.wait(interval_s):
        try:
            trail.tick(checkpoint_interval_s)
        except Exception:
            _logger.exception("audit sealing failed")


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _opt_micros(moment: datetime | None) -> int | None:
    return None if moment is None else _micros(moment)
