"""Verifying an audit chain: name the first broken event and every bad checkpoint.

One streaming pass, constant memory (an export of millions of events is read line by line).
The verifier checks, in order of the chain:

- each event's ``seq`` is the one expected (a gap means events were removed; a ``seq`` that
  goes back or repeats means events were moved or inserted);
- each event's content hashes to its ``hash`` (else it was altered);
- each event's ``prev_hash`` is the ``hash`` of the event before it (else the one before was
  altered and its hash recomputed, or this one was inserted or moved);
- each checkpoint is signed by its key (and by the trusted key, when one is given) and
  matches the hash of the event with its ``seq``;
- after a retention purge, the chain starts at a signed *anchor* (the checkpoint of the last
  purged event): its signature must verify like any checkpoint's, and the first remaining
  event must be the next ``seq`` and link to the anchored hash. An anchor that does not
  verify breaks the chain (``bad_anchor``): without it, nothing says where the chain began.

Anyone can recompute SHA-256, so an attacker who rewrites the whole chain after an event
passes the first three checks; only a signed checkpoint, whose key the attacker lacks, catches
that, which is why :attr:`VerifyReport.signed_through` says how far signatures vouch for.

Pure: signature checks are a function passed in (``verify_signature(public_key_hex, message,
signature_hex) -> bool``), so the domain needs no cryptography library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from treasurer.domain.audit_chain import (
    GENESIS_HASH,
    ChainEvent,
    Checkpoint,
    ExportAnchor,
    ExportEnd,
    ExportHeader,
    LineError,
    key_id_of,
    parse_line,
)

VerifySignature = Callable[[str, bytes, str], bool]
#: Checkpoint problems kept in a report (everything has a limit); the count is exact.
MAX_CHECKPOINT_PROBLEMS = 100


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: what (``problem``), where (``seq``, ``id``, ``line``), and in words.

    ``problem`` is one of ``altered``, ``removed``, ``inserted``, ``reordered``, ``unlinked``,
    ``malformed``, ``truncated``, ``bad_anchor`` (events) or ``bad_signature``,
    ``untrusted_key``, ``hash_mismatch``, ``misplaced`` (checkpoints).
    """

    problem: str
    message: str
    seq: int | None = None
    id: int | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict on a chain; ``ok`` when no event is broken and every checkpoint holds."""

    events: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    from_genesis: bool
    checkpoints: int
    signed_through: int | None
    first_broken: Finding | None
    checkpoint_problems: tuple[Finding, ...]
    checkpoint_problem_count: int
    key_ids: tuple[str, ...]
    #: The ``seq`` of the purge anchor the chain starts after (None: no purge anchor).
    anchor_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken is None and self.checkpoint_problem_count == 0

    @property
    def unsigned_events(self) -> int:
        """Events after the last good checkpoint: chained, but vouched for by no signature."""
        if self.last_seq is None:
            return 0
        start = (
            self.signed_through if self.signed_through is not None else (self.first_seq or 1) - 1
        )
        return max(0, self.last_seq - start)


@dataclass(slots=True)
class _Seen:
    seq: int
    id: int
    hash: str
    line: int | None


@dataclass(slots=True)
class _Missing:
    """A gap found at ``after``; if ``seq`` turns up later, it was moved, not removed."""

    seq: int
    found: _Seen
    after: _Seen | None
    next_only: bool = True


@dataclass(slots=True)
class ChainVerifier:
    """Feed events and checkpoints in file (or ``seq``) order, then :meth:`finish`."""

    verify_signature: VerifySignature
    trusted_key: str | None = None
    expect_first_seq: int | None = None
    #: The anchor ``seq`` an export's header announces (an anchor line must then come first).
    expect_anchor: int | None = None
    _anchor_seq: int | None = None
    _anchor_hash: str = GENESIS_HASH
    _count: int = 0
    _first_seq: int | None = None
    _next_seq: int = 1
    _prev_hash: str = GENESIS_HASH
    _prev: _Seen | None = None
    _broken: Finding | None = None
    _missing: _Missing | None = None
    _checkpoints: int = 0
    _signed_through: int | None = None
    _problems: list[Finding] = field(default_factory=list)
    _problem_count: int = 0
    _keys: set[str] = field(default_factory=set)

    # -- events ---------------------------------------------------------------------------------
    def event(self, event: ChainEvent, line: int | None = None) -> None:
        """Check one event against everything before it."""
        self._count += 1
        if self._first_seq is None:
            self._start(event)
        self._resolve_missing(event, line)
        if self._broken is None:
            self._broken = self._check(event, line)
        self._prev = _Seen(event.seq, event.id, event.hash, line)
        self._next_seq, self._prev_hash = event.seq + 1, event.hash

    def _start(self, event: ChainEvent) -> None:
        self._first_seq = event.seq
        if self._anchor_seq is not None:
            self._next_seq, self._prev_hash = self._anchor_seq + 1, self._anchor_hash
            return
        self._note_missing_anchor()
        self._next_seq = self.expect_first_seq or event.seq
        # Event 1 links to the genesis hash; a slice that starts later is anchored at its
        # first event's prev_hash, which only an earlier export or a checkpoint can confirm.
        self._prev_hash = GENESIS_HASH if self._next_seq == 1 else event.prev_hash

    def _check(self, event: ChainEvent, line: int | None) -> Finding | None:
        where = _where(event.seq, event.id, line)
        prev = self._prev
        if event.seq > self._next_seq:
            self._missing = _Missing(self._next_seq, _Seen(event.seq, event.id, "", line), prev)
            gap = _span(self._next_seq, event.seq - 1)
            after = f"after {_name(prev)}" if prev is not None else "at the start"
            return Finding(
                "removed",
                f"event {gap} is missing: {where} comes {after}",
                seq=self._next_seq,
                line=line,
            )
        if event.seq < self._next_seq:
            if prev is not None and event.seq == prev.seq:
                return Finding(
                    "inserted",
                    f"seq {event.seq} appears twice, {_name(prev)} then {where}: one of them "
                    "was inserted",
                    seq=event.seq,
                    id=event.id,
                    line=line,
                )
            return Finding(
                "reordered",
                f"{where} is out of order: it comes after {_name(prev)}",
                seq=event.seq,
                id=event.id,
                line=line,
            )
        if event.computed_hash() != event.hash:
            return Finding(
                "altered",
                f"{where} was altered: its content does not match its hash",
                seq=event.seq,
                id=event.id,
                line=line,
            )
        if event.prev_hash != self._prev_hash:
            before = _name(prev) if prev is not None else self._origin()
            return Finding(
                "unlinked",
                f"{where} does not link to {before}: its prev_hash is not that hash (the "
                "event before it was altered and its hash recomputed, or this one was "
                "inserted or moved)",
                seq=event.seq,
                id=event.id,
                line=line,
            )
        return None

    def _resolve_missing(self, event: ChainEvent, line: int | None) -> None:
        """A "removed" event that turns up after all was moved: say so instead."""
        missing = self._missing
        if missing is None or self._broken is None:
            return
        if event.seq != missing.seq:
            missing.next_only = False
            return
        found = missing.found
        if missing.next_only:
            message = (
                f"{_where(event.seq, event.id, line)} is out of order: "
                f"{_where(found.seq, found.id, found.line)} comes before it"
            )
        else:
            after = _name(missing.after) if missing.after is not None else "the start"
            message = (
                f"{_where(event.seq, event.id, line)} was moved: it belongs right after {after}"
            )
        self._broken = Finding("reordered", message, seq=event.seq, id=event.id, line=line)
        self._missing = None

    def _origin(self) -> str:
        if self._anchor_seq is not None:
            return f"the purge anchor (the signed hash of purged event seq {self._anchor_seq})"
        return "the genesis hash"

    # -- the purge anchor -----------------------------------------------------------------------
    def anchor(self, checkpoint: Checkpoint, line: int | None = None) -> None:
        """The signed start of a purged chain; it must come before the first event."""
        if self._first_seq is not None or self._anchor_seq is not None:
            self._break(Finding("malformed", "an anchor after the chain began", line=line))
            return
        self._anchor_seq, self._anchor_hash = checkpoint.seq, checkpoint.hash
        problem = self._signature_problem(checkpoint)
        if problem is None and self.expect_anchor not in (None, checkpoint.seq):
            problem = ("bad_anchor", f"the header announces the anchor at seq {self.expect_anchor}")
        if problem is not None:
            self._break(
                Finding(
                    "bad_anchor",
                    f"the purge anchor does not hold, so nothing vouches for where the chain "
                    f"starts: {problem[1]}",
                    seq=checkpoint.seq,
                    line=line,
                )
            )
            return
        self._keys.add(checkpoint.key_id)
        if self._broken is None:
            self._signed_through = checkpoint.seq

    def anchor_missing(self, seq: int, chain_hash: str) -> None:
        """A purge is recorded at ``seq`` but its signed checkpoint is gone."""
        self._anchor_seq, self._anchor_hash = seq, chain_hash
        self._break(
            Finding(
                "bad_anchor",
                f"the chain was purged up to seq {seq}, but the checkpoint that anchors it is "
                "missing",
                seq=seq,
            )
        )

    def _note_missing_anchor(self) -> None:
        if self.expect_anchor is not None and self._anchor_seq is None:
            self._break(
                Finding(
                    "bad_anchor",
                    f"the header announces a purge anchor at seq {self.expect_anchor}, but no "
                    "anchor line comes before the first event",
                    seq=self.expect_anchor,
                )
            )

    def _break(self, finding: Finding) -> None:
        if self._broken is None:
            self._broken = finding

    def malformed(self, line: int, reason: str) -> None:
        """A line that is not a record: the chain is broken there."""
        if self._broken is None:
            self._broken = Finding("malformed", f"line {line} is not valid: {reason}", line=line)

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, checkpoint: Checkpoint, line: int | None = None) -> None:
        """Check a checkpoint's signature and that it matches the event it follows."""
        self._checkpoints += 1
        problem = self._signature_problem(checkpoint) or self._match_problem(checkpoint)
        if problem is not None:
            self._problem_count += 1
            if len(self._problems) < MAX_CHECKPOINT_PROBLEMS:
                self._problems.append(
                    Finding(problem[0], problem[1], seq=checkpoint.seq, line=line)
                )
            return
        self._keys.add(checkpoint.key_id)
        if self._broken is None:
            self._signed_through = checkpoint.seq

    def _signature_problem(self, cp: Checkpoint) -> tuple[str, str] | None:
        label = f"checkpoint at seq {cp.seq}"
        if key_id_of(cp.public_key) != cp.key_id:
            return "bad_signature", f"{label}: key id {cp.key_id} is not its public key's id"
        if self.trusted_key is not None and cp.public_key != self.trusted_key.lower():
            return (
                "untrusted_key",
                f"{label} is signed by key {cp.key_id}, not by the trusted public key "
                f"{key_id_of(self.trusted_key.lower())}",
            )
        if not self.verify_signature(cp.public_key, cp.message(), cp.signature):
            return "bad_signature", f"{label}: the signature does not verify (key {cp.key_id})"
        return None

    def _match_problem(self, cp: Checkpoint) -> tuple[str, str] | None:
        prev = self._prev
        label = f"checkpoint at seq {cp.seq}"
        if prev is None or prev.seq != cp.seq:
            return "misplaced", f"{label} does not follow event seq {cp.seq}"
        if prev.hash != cp.hash:
            since = self._signed_through or (self._first_seq or 1) - 1
            return (
                "hash_mismatch",
                f"{label} signed hash {cp.hash[:16]}…, but the chain has {prev.hash[:16]}… "
                f"there: events in seq {since + 1}..{cp.seq} were altered and rehashed",
            )
        return None

    # -- verdict --------------------------------------------------------------------------------
    def finish(self, end: ExportEnd | None = None, *, require_end: bool = False) -> VerifyReport:
        """The report; ``end`` is the export's last line, compared with what was read."""
        if self._first_seq is None:
            self._note_missing_anchor()
        if self._broken is None:
            self._broken = self._end_problem(end, require_end)
        return VerifyReport(
            events=self._count,
            first_seq=self._first_seq,
            last_seq=self._prev.seq if self._prev is not None else None,
            head_hash=self._prev.hash if self._prev is not None else None,
            from_genesis=self._first_seq == 1,
            checkpoints=self._checkpoints,
            signed_through=self._signed_through,
            first_broken=self._broken,
            checkpoint_problems=tuple(self._problems),
            checkpoint_problem_count=self._problem_count,
            key_ids=tuple(sorted(self._keys)),
            anchor_seq=self._anchor_seq,
        )

    def _end_problem(self, end: ExportEnd | None, require_end: bool) -> Finding | None:
        last = self._prev.seq if self._prev is not None else None
        if end is None:
            if require_end:
                return Finding("truncated", "the export has no end line: it was cut short")
            return None
        if end.events != self._count or end.last_seq != last:
            return Finding(
                "truncated",
                f"the end line promises {end.events} events up to seq {end.last_seq}, "
                f"but the file holds {self._count} up to seq {last}: events were removed",
                seq=(last or 0) + 1,
            )
        return None


def verify_export(
    lines: Iterable[str], verify_signature: VerifySignature, trusted_key: str | None = None
) -> VerifyReport:
    """Verify an export (JSON Lines: header, events with checkpoints after them, end)."""
    verifier: ChainVerifier | None = None
    end: ExportEnd | None = None
    records = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        records += 1
        try:
            record = parse_line(text)
        except LineError as exc:
            verifier = verifier or ChainVerifier(verify_signature, trusted_key)
            verifier.malformed(number, str(exc))
            continue
        if isinstance(record, ExportHeader):
            if verifier is not None:
                verifier.malformed(number, "a header after the first line")
                continue
            verifier = ChainVerifier(
                verify_signature, trusted_key, record.first_seq, expect_anchor=record.anchor_seq
            )
            continue
        verifier = verifier or _headless(number, verify_signature, trusted_key)
        if end is not None:
            verifier.malformed(number, "a record after the end line")
        elif isinstance(record, ChainEvent):
            verifier.event(record, number)
        elif isinstance(record, Checkpoint):
            verifier.checkpoint(record, number)
        elif isinstance(record, ExportAnchor):
            verifier.anchor(record.checkpoint, number)
        else:
            end = record
    verifier = verifier or ChainVerifier(verify_signature, trusted_key)
    if records == 0:
        verifier.malformed(1, "the file is empty")
    return verifier.finish(end, require_end=True)


def _headless(line: int, verify: VerifySignature, trusted_key: str | None) -> ChainVerifier:
    verifier = ChainVerifier(verify, trusted_key)
    verifier.malformed(line, "the first line is not the export header")
    return verifier


def _where(seq: int, event_id: int, line: int | None) -> str:
    at = f", line {line}" if line is not None else ""
    return f"event seq {seq} (id {event_id}{at})"


def _name(seen: _Seen | None) -> str:
    if seen is None:
        return "nothing"
    return _where(seen.seq, seen.id, seen.line)


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"
