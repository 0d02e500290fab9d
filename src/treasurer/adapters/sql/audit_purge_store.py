"""The SQL of a retention purge: find what may go, then anchor, record and delete it at once.

Why one transaction: the chain must never be left without its anchor. The signed checkpoint
at ``upto_seq``, the ``audit_purges`` record, the ``audit.purged`` event and the deletes
commit together or not at all. The record goes in before the deletes because the append-only
triggers (migration 11) allow a delete only at or below the highest recorded ``upto_seq``.

Only a *prefix* of the chain is ever purged (every event up to ``upto_seq``, all of them older
than the cutoff), so what remains is still one contiguous chain whose first event links to the
anchored hash. On PostgreSQL the purge takes the sealer's advisory lock, so no seal runs
between reading the head and deleting it.
"""

from __future__ import annotations

from treasurer.adapters.sql.codec import from_us_required
from treasurer.adapters.sql.config_store import write_audit
from treasurer.adapters.sql.db import Row, Tx
from treasurer.domain.audit_chain import Checkpoint
from treasurer.domain.errors import Conflict
from treasurer.service.audit_ports import PurgeAnchor, PurgeRecord, PurgeSpan
from treasurer.service.ports import AuditRecord

#: ``pg_advisory_xact_lock`` key of the sealer, which a purge takes too (the migration runner
#: uses 7_420_001).
SEAL_LOCK_ID = 7_420_002
_PURGE_COLUMNS = "id, at_us, actor, upto_seq, upto_hash, count, cutoff_us"
_CHECKPOINT_COLUMNS = "seq, hash, at_us, key_id, public_key, signature"


class PurgeConflict(Conflict):
    """Another purge (or a change to the chain) got there between planning and purging."""

    code = "audit_purge_conflict"


def latest_purge(tx: Tx) -> PurgeRecord | None:
    row = tx.one(f"SELECT {_PURGE_COLUMNS} FROM audit_purges ORDER BY upto_seq DESC LIMIT 1")
    return _purge(row) if row is not None else None


def anchor(tx: Tx) -> PurgeAnchor | None:
    purge = latest_purge(tx)
    if purge is None:
        return None
    row = tx.one(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq = :seq",
        {"seq": purge.upto_seq},
    )
    return PurgeAnchor(purge, _checkpoint(row) if row is not None else None)


def purge_span(tx: Tx, cutoff_us: int) -> PurgeSpan | None:
    """Events from the anchor on, up to (not including) the first one at or after the cutoff,
    read along the ``seq`` index: the scan is as long as the purge."""
    last = latest_purge(tx)
    start = last.upto_seq if last is not None else 0
    young = tx.one(
        "SELECT seq FROM audit_events WHERE seq IS NOT NULL AND seq > :start "
        "AND at_us >= :cutoff ORDER BY seq LIMIT 1",
        {"start": start, "cutoff": cutoff_us},
    )
    if young is not None:
        upto = int(young[0]) - 1
    else:
        head = tx.one("SELECT max(seq) FROM audit_events")
        upto = int(head[0]) if head is not None and head[0] is not None else 0
    if upto <= start:
        return None
    row = tx.one(
        "SELECT hash, (SELECT count(*) FROM audit_events WHERE seq > :start AND seq <= :upto) "
        "FROM audit_events WHERE seq = :upto",
        {"start": start, "upto": upto},
    )
    if row is None or not row[0]:
        raise PurgeConflict(f"event seq {upto} is missing: the chain is broken, verify it")
    return PurgeSpan(start + 1, upto, row[0], int(row[1]))


def purge(
    tx: Tx, dialect: str, record: PurgeRecord, checkpoint: Checkpoint, event: AuditRecord
) -> Checkpoint:
    """Anchor, record and delete (see the module docstring); returns the anchor checkpoint."""
    if dialect == "postgresql":
        tx.one("SELECT pg_advisory_xact_lock(:key)", {"key": SEAL_LOCK_ID})
    last = latest_purge(tx)
    if last is not None and last.upto_seq >= record.upto_seq:
        raise PurgeConflict(f"the chain was already purged up to seq {last.upto_seq}")
    current = tx.one("SELECT hash FROM audit_events WHERE seq = :seq", {"seq": record.upto_seq})
    if current is None or current[0] != record.upto_hash:
        raise PurgeConflict(f"event seq {record.upto_seq} changed or vanished since it was read")
    tx.execute(
        f"INSERT INTO audit_checkpoints ({_CHECKPOINT_COLUMNS}) VALUES "
        "(:seq, :hash, :at_us, :key_id, :public_key, :signature) ON CONFLICT (seq) DO NOTHING",
        {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "at_us": checkpoint.at_us,
            "key_id": checkpoint.key_id,
            "public_key": checkpoint.public_key,
            "signature": checkpoint.signature,
        },
    )
    stored = tx.one(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq = :seq",
        {"seq": record.upto_seq},
    )
    anchor_checkpoint = _checkpoint(stored) if stored is not None else checkpoint
    if anchor_checkpoint.hash != record.upto_hash:
        raise PurgeConflict(
            f"the checkpoint at seq {record.upto_seq} signs another hash: the chain is broken"
        )
    tx.execute(
        f"INSERT INTO audit_purges ({_PURGE_COLUMNS}, checkpoint_seq) VALUES (:id, :at_us, "
        ":actor, :upto_seq, :upto_hash, :count, :cutoff_us, :checkpoint_seq)",
        {
            "id": record.id,
            "at_us": record.at_us,
            "actor": record.actor,
            "upto_seq": record.upto_seq,
            "upto_hash": record.upto_hash,
            "count": record.count,
            "cutoff_us": record.cutoff_us,
            "checkpoint_seq": record.checkpoint_seq,
        },
    )
    write_audit(tx, event, from_us_required(record.at_us))
    tx.execute("DELETE FROM audit_checkpoints WHERE seq < :seq", {"seq": record.upto_seq})
    deleted = tx.execute(
        "DELETE FROM audit_events WHERE seq IS NOT NULL AND seq <= :seq", {"seq": record.upto_seq}
    )
    if deleted != record.count:
        raise PurgeConflict(
            f"{deleted} events up to seq {record.upto_seq}, not the {record.count} counted: "
            "the chain changed since it was read"
        )
    return anchor_checkpoint


def _purge(row: Row) -> PurgeRecord:
    return PurgeRecord(
        id=row[0],
        at_us=int(row[1]),
        actor=row[2],
        upto_seq=int(row[3]),
        upto_hash=row[4],
        count=int(row[5]),
        cutoff_us=int(row[6]),
    )


def _checkpoint(row: Row) -> Checkpoint:
    return Checkpoint(int(row[0]), row[1], int(row[2]), row[3], row[4], row[5])
