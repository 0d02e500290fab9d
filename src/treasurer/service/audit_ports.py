"""The ports of the audit trail: the chained log (:class:`AuditLog`) and a checkpoint signer.

The log lives in the same database as everything else: events are inserted by the store in
the transaction of the change they record (unchanged), and :meth:`AuditLog.seal` links them
into the hash chain afterwards. Kept apart from :class:`~treasurer.service.ports.Store` so the
hot path's port does not grow, and so a store without a chain is still a store.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from treasurer.domain.audit_chain import ChainEvent, ChainHead, Checkpoint
from treasurer.service.ports import AuditRecord

#: Filters answered by an index over sealed events only (the sealer derives the last five).
SEALED_FILTERS = ("kind", "actor", "subject", "agent", "department", "wallet", "chain", "outcome")


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the event list; every one given must match (``None``: any).

    ``since``/``until`` bound ``at`` as [since, until). ``agent``, ``department``, ``wallet``,
    ``chain`` and ``outcome`` (``allowed`` or ``denied``, for decisions) are derived from the
    event when it is sealed (see :mod:`treasurer.service.audit_index`).
    """

    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    actor: str | None = None
    subject: str | None = None
    agent: str | None = None
    department: str | None = None
    wallet: str | None = None
    chain: str | None = None
    outcome: str | None = None

    def sealed_filters(self) -> dict[str, str]:
        """The filters given that only sealed events can answer (by their index)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: values[name] for name in SEALED_FILTERS if values[name] is not None}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event of the list; ``seq``, ``hash`` and ``prev_hash`` are None until it is sealed.

    They are its place in the hash chain, carried so a listed event can be matched with the
    same event in an export (and checked against the chain) without another query.
    """

    id: int
    at: datetime
    kind: str
    actor: str
    subject: str
    payload: object
    seq: int | None
    hash: str | None
    prev_hash: str | None = None


@dataclass(frozen=True, slots=True)
class PurgeSpan:
    """What a purge would delete: the events after the current anchor up to ``upto_seq``."""

    first_seq: int
    upto_seq: int
    upto_hash: str
    count: int


@dataclass(frozen=True, slots=True)
class PurgeRecord:
    """One purge, as ``audit_purges`` records it (``checkpoint_seq`` is ``upto_seq``: the
    signed checkpoint there anchors the remaining chain)."""

    id: str
    at_us: int
    actor: str
    upto_seq: int
    upto_hash: str
    count: int
    cutoff_us: int

    @property
    def checkpoint_seq(self) -> int:
        return self.upto_seq


@dataclass(frozen=True, slots=True)
class PurgeAnchor:
    """The latest purge and its signed checkpoint (None if that row is gone: tampering)."""

    purge: PurgeRecord
    checkpoint: Checkpoint | None


class AuditLog(Protocol):
    """The chained audit log of one database.

    :meth:`seal` must be safe to call from many processes at once: one sealer runs at a time
    (the adapter takes a lock), each event is sealed once, and an event is sealed only when no
    transaction that could still commit an event ordered before it is open.
    """

    def seal(self, max_events: int) -> int:
        """Seal at most ``max_events`` sealable events in one transaction; return how many."""
        ...

    def unsealed(self, through_id: int | None = None) -> int:
        """How many committed events (with ``id <= through_id``) are not sealed yet."""
        ...

    def last_id(self) -> int:
        """The highest event id committed so far (0: none)."""
        ...

    def head(self) -> ChainHead | None:
        """The last sealed event (None: nothing sealed)."""
        ...

    def chain(self, after_seq: int, last_seq: int, limit: int) -> list[ChainEvent]:
        """Sealed events with ``after_seq < seq <= last_seq``, in ``seq`` order, at most
        ``limit``. A payload that is no longer JSON comes back as its raw text."""
        ...

    def seq_range(self, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
        """The smallest contiguous ``seq`` range holding every sealed event with ``at`` in
        [since, until); None when there is none."""
        ...

    def checkpoints(self, first_seq: int, last_seq: int) -> list[Checkpoint]:
        """Checkpoints with ``first_seq <= seq <= last_seq``, in ``seq`` order."""
        ...

    def latest_checkpoint(self) -> Checkpoint | None: ...

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store ``checkpoint``; False when one already exists at its ``seq``."""
        ...

    def events(self, query: AuditQuery, limit: int, after_id: int) -> list[AuditEntry]:
        """Events matching ``query`` with ``id > after_id``, in id order, at most ``limit``
        (an indexed query). Filters of :meth:`AuditQuery.sealed_filters` see sealed events
        only."""
        ...

    # -- retention --------------------------------------------------------------------------
    def anchor(self) -> PurgeAnchor | None:
        """Where the chain starts after the latest purge (None: nothing was ever purged)."""
        ...

    def purge_span(self, cutoff_us: int) -> PurgeSpan | None:
        """The longest prefix of the remaining chain whose events all happened before
        ``cutoff_us`` (None: none)."""
        ...

    def purge(self, purge: PurgeRecord, checkpoint: Checkpoint, event: AuditRecord) -> Checkpoint:
        """In one transaction: store ``checkpoint`` (kept if one exists at its seq, which
        must then match), record ``purge``, write ``event`` (``audit.purged``), delete the
        checkpoints below ``purge.upto_seq`` and the events up to it. Returns the anchor
        checkpoint. Raises :class:`~treasurer.domain.errors.Conflict` (``audit_purge_conflict``)
        when another purge got there first or the event at ``upto_seq`` changed."""
        ...


class CheckpointSigner(Protocol):
    """Signs checkpoints (Ed25519). ``public_key`` is the 32-byte raw key in lowercase hex;
    ``key_id`` is :func:`~treasurer.domain.audit_chain.key_id_of` of it."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> str: ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        ...
