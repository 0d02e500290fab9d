"""``SqlAuditLog``: the :class:`~treasurer.service.audit_ports.AuditLog` over SQLite or
PostgreSQL, sharing the store's :class:`~treasurer.adapters.sql.db.Database`.

**Sealing.** One transaction per batch: take the sealer lock, read the head, read the next
sealable events in ``(xact, id)`` order, hash them (:func:`~treasurer.domain.audit_chain.link`),
write ``seq``, ``prev_hash``, ``hash`` and the index terms. The lock makes sealers take turns;
the sealable condition makes the order final:

- PostgreSQL: an event is sealable once its inserting transaction (``xact``) is older than
  every transaction still open (``xact < pg_snapshot_xmin(pg_current_snapshot())``, read in
  the same statement as the rows, so from the same snapshot). Any event not yet visible then
  belongs to a transaction that is open or not yet started, whose id is at least that xmin,
  so it sorts after every event sealed now. Sealers take ``pg_advisory_xact_lock``.
- SQLite: one writer commits at a time and the sealer runs as a write, so every committed
  event is sealable and ids are assigned in commit order (``xact`` is 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from treasurer.adapters.sql import audit_purge_store as purges
from treasurer.adapters.sql.codec import from_us_required, to_us
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Row, Tx, is_retryable
from treasurer.domain.audit_chain import ChainEvent, ChainHead, Checkpoint, EventContent, link
from treasurer.domain.errors import StoreUnavailable
from treasurer.service.audit_index import IndexTerms, Owner, derive, references
from treasurer.service.audit_ports import (
    AuditEntry,
    AuditQuery,
    PurgeAnchor,
    PurgeRecord,
    PurgeSpan,
)
from treasurer.service.ports import AuditRecord

T = TypeVar("T")

#: ``pg_advisory_xact_lock`` key of the sealer (the migration runner uses 7_420_001).
SEAL_LOCK_ID = purges.SEAL_LOCK_ID
#: Rows older than every open transaction, or (restored from another cluster) newer than any
#: transaction id this cluster has handed out, which no open transaction can precede.
_SEALABLE = {
    "postgresql": " AND (xact < pg_snapshot_xmin(pg_current_snapshot())"
    " OR xact >= pg_snapshot_xmax(pg_current_snapshot()))",
    "sqlite": "",
}
_COLUMNS = {
    "kind": "kind",
    "actor": "actor",
    "subject": "subject",
    "agent": "agent_id",
    "department": "department_id",
    "wallet": "wallet_id",
    "chain": "chain",
    "outcome": "outcome",
}
_SEAL = (
    "UPDATE audit_events SET seq = :seq, prev_hash = :prev_hash, hash = :hash, "
    "agent_id = :agent, department_id = :department, wallet_id = :wallet, chain = :chain, "
    "outcome = :outcome WHERE id = :id AND seq IS NULL"
)
_CHECKPOINT_COLUMNS = "seq, hash, at_us, key_id, public_key, signature"


class SqlAuditLog:
    """The chained audit log in the ``audit_events`` and ``audit_checkpoints`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect

    def _run(self, work: Callable[[Tx], T], *, write: bool = False) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    # -- sealing --------------------------------------------------------------------------------
    def seal(self, max_events: int) -> int:
        return self._run(lambda tx: self._seal(tx, max_events), write=True)

    def _seal(self, tx: Tx, limit: int) -> int:
        if self.dialect == "postgresql":
            tx.one("SELECT pg_advisory_xact_lock(:key)", {"key": SEAL_LOCK_ID})
        head = _head(tx)
        rows = tx.all(
            "SELECT id, at_us, kind, actor, subject, payload FROM audit_events "
            f"WHERE seq IS NULL{_SEALABLE[self.dialect]} ORDER BY xact, id LIMIT :limit",
            {"limit": limit},
        )
        if not rows:
            return 0
        contents = [
            EventContent(int(r[0]), int(r[1]), r[2], r[3], r[4], _payload(r[5])) for r in rows
        ]
        sealed = link(head, contents)
        terms = _index_terms(tx, contents)
        tx.executemany(
            _SEAL,
            [
                {
                    "id": event.id,
                    "seq": event.seq,
                    "prev_hash": event.prev_hash,
                    "hash": event.hash,
                    "agent": term.agent,
                    "department": term.department,
                    "wallet": term.wallet,
                    "chain": term.chain,
                    "outcome": term.outcome,
                }
                for event, term in zip(sealed, terms, strict=True)
            ],
        )
        return len(sealed)

    def unsealed(self, through_id: int | None = None) -> int:
        bound = "" if through_id is None else " AND id <= :through"
        row = self._run(
            lambda tx: tx.one(
                f"SELECT count(*) FROM audit_events WHERE seq IS NULL{bound}",
                {"through": through_id},
            )
        )
        return int(row[0]) if row else 0

    def last_id(self) -> int:
        row = self._run(lambda tx: tx.one("SELECT max(id) FROM audit_events"))
        return int(row[0]) if row and row[0] is not None else 0

    def head(self) -> ChainHead | None:
        return self._run(_head)

    # -- the chain ------------------------------------------------------------------------------
    def chain(self, after_seq: int, last_seq: int, limit: int) -> list[ChainEvent]:
        rows = self._run(
            lambda tx: tx.all(
                "SELECT seq, id, at_us, kind, actor, subject, payload, prev_hash, hash "
                "FROM audit_events WHERE seq > :after AND seq <= :last ORDER BY seq "
                "LIMIT :limit",
                {"after": after_seq, "last": last_seq, "limit": limit},
            )
        )
        return [
            ChainEvent(
                seq=int(r[0]),
                id=int(r[1]),
                at_us=int(r[2]),
                kind=r[3],
                actor=r[4],
                subject=r[5],
                payload=_payload(r[6]),
                prev_hash=r[7] or "",
                hash=r[8] or "",
            )
            for r in rows
        ]

    def seq_range(self, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
        where, params = _time_range(since, until)
        row = self._run(
            lambda tx: tx.one(
                "SELECT min(seq), max(seq) FROM audit_events "
                f"WHERE seq IS NOT NULL{''.join(' AND ' + w for w in where)}",
                params,
            )
        )
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoints(self, first_seq: int, last_seq: int) -> list[Checkpoint]:
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints "
                "WHERE seq >= :first AND seq <= :last ORDER BY seq",
                {"first": first_seq, "last": last_seq},
            )
        )
        return [_checkpoint(r) for r in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self._run(
            lambda tx: tx.one(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            )
        )
        return _checkpoint(row) if row is not None else None

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        params = {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "at_us": checkpoint.at_us,
            "key_id": checkpoint.key_id,
            "public_key": checkpoint.public_key,
            "signature": checkpoint.signature,
        }
        written = self._run(
            lambda tx: tx.execute(
                f"INSERT INTO audit_checkpoints ({_CHECKPOINT_COLUMNS}) VALUES "
                "(:seq, :hash, :at_us, :key_id, :public_key, :signature) "
                "ON CONFLICT (seq) DO NOTHING",
                params,
            ),
            write=True,
        )
        return written == 1

    # -- the list -------------------------------------------------------------------------------
    def events(self, query: AuditQuery, limit: int, after_id: int) -> list[AuditEntry]:
        """One indexed query: each equality filter has a partial index on (column, id)."""
        where, params = _time_range(query.since, query.until)
        where.append("id > :after")
        params.update({"after": after_id, "limit": limit})
        filters = query.sealed_filters()
        if filters:
            where.append("seq IS NOT NULL")  # matches the partial indexes' predicate
        for name, value in filters.items():
            where.append(f"{_COLUMNS[name]} = :f_{name}")
            params[f"f_{name}"] = value
        rows = self._run(
            lambda tx: tx.all(
                "SELECT id, at_us, kind, actor, subject, payload, seq, hash, prev_hash "
                "FROM audit_events "
                f"WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit",
                params,
            )
        )
        return [
            AuditEntry(
                id=int(r[0]),
                at=from_us_required(r[1]),
                kind=r[2],
                actor=r[3],
                subject=r[4],
                payload=_payload(r[5]),
                seq=None if r[6] is None else int(r[6]),
                hash=r[7],
                prev_hash=r[8],
            )
            for r in rows
        ]

    # -- retention ------------------------------------------------------------------------------
    def anchor(self) -> PurgeAnchor | None:
        return self._run(purges.anchor)

    def purge_span(self, cutoff_us: int) -> PurgeSpan | None:
        return self._run(lambda tx: purges.purge_span(tx, cutoff_us))

    def purge(self, purge: PurgeRecord, checkpoint: Checkpoint, event: AuditRecord) -> Checkpoint:
        return self._run(
            lambda tx: purges.purge(tx, self.dialect, purge, checkpoint, event), write=True
        )


def _head(tx: Tx) -> ChainHead | None:
    """The last sealed event; when a purge deleted every sealed event, the purge's anchor
    (the next event must link to it, not start a new chain at seq 1)."""
    row = tx.one(
        "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    )
    if row is not None:
        return ChainHead(int(row[0]), row[1] or "")
    purged = purges.latest_purge(tx)
    return ChainHead(purged.upto_seq, purged.upto_hash) if purged is not None else None


def _payload(text: str) -> object:
    """The stored payload as JSON; text that no longer parses is kept as the string itself,
    so its hash is still computed (and, for a sealed event, no longer matches)."""
    try:
        value: object = json.loads(text)
    except (TypeError, ValueError):
        return text
    return value


def _checkpoint(row: Row) -> Checkpoint:
    return Checkpoint(int(row[0]), row[1], int(row[2]), row[3], row[4], row[5])


def _time_range(
    since: datetime | None, until: datetime | None
) -> tuple[list[str], dict[str, object]]:
    where: list[str] = []
    params: dict[str, object] = {}
    if since is not None:
        where.append("at_us >= :since")
        params["since"] = to_us(since)
    if until is not None:
        where.append("at_us < :until")
        params["until"] = to_us(until)
    return where, params


# -- index terms ----------------------------------------------------------------------------------
def _index_terms(tx: Tx, contents: Sequence[EventContent]) -> list[IndexTerms]:
    """The five index terms of each event (:mod:`treasurer.service.audit_index`), with the
    authorizations, payments, wallets and agents the events name looked up in four queries."""
    refs = [references(c.actor, c.subject, c.payload) for c in contents]
    owners = _owners(tx, {r.record for r in refs if r.record})
    wallet_ids = {r.wallet for r in refs if r.wallet}
    wallet_ids |= {o.wallet for o in owners.values() if o.wallet}
    wallets = {
        r[0]: (r[1], r[2])
        for r in _select_in(tx, "SELECT id, agent_id, chain FROM wallets", "id", wallet_ids)
    }
    agent_ids = {r.agent for r in refs if r.agent} | {o.agent for o in owners.values() if o.agent}
    agent_ids |= {agent for agent, _chain in wallets.values() if agent}
    departments = {
        r[0]: r[1] for r in _select_in(tx, "SELECT id, department_id FROM agents", "id", agent_ids)
    }
    return [
        derive(ref, c.payload, owners.get(ref.record or ""), wallets, departments)
        for ref, c in zip(refs, contents, strict=True)
    ]


def _owners(tx: Tx, records: set[str | None]) -> dict[str, Owner]:
    ids = {r for r in records if r}
    found = {
        r[0]: Owner(r[1], r[2], r[3], r[4])
        for r in _select_in(
            tx,
            "SELECT id, agent_id, wallet_id, department_id, chain FROM authorizations",
            "id",
            ids,
        )
    }
    rest = ids - found.keys()
    for r in _select_in(tx, "SELECT id, agent_id, wallet_id, chain FROM payments", "id", rest):
        found[r[0]] = Owner(r[1], r[2], None, r[3])
    return found


def _select_in(tx: Tx, select: str, column: str, values: Iterable[str | None]) -> list[Row]:
    wanted = sorted({v for v in values if v})
    if not wanted:
        return []
    names = {f"v{i}": value for i, value in enumerate(wanted)}
    placeholders = ", ".join(":" + name for name in names)
    return tx.all(f"{select} WHERE {column} IN ({placeholders})", names)
