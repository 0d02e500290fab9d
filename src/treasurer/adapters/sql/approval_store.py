"""``SqlApprovalStore``: approval nonces and ballots in SQL, on the main store's database.

A vote is one transaction: the nonce is spent with a guarded ``UPDATE … WHERE used_us IS
NULL``, the ballot inserted under its (authorization, voter) primary key, and the audit event
written. A refusal raises inside the transaction, so it rolls back whole: a vote refused for
a duplicate voter does not burn the nonce it came with.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from treasurer.adapters.sql.codec import dumps, from_us_required, loads, to_us
from treasurer.adapters.sql.config_store import write_audit
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable
from treasurer.domain.approvals import Ballot, Vote, Voter, VoterKind
from treasurer.domain.errors import StoreUnavailable
from treasurer.service.approval_ports import CastResult, IssuedNonce
from treasurer.service.ports import AuditRecord

T = TypeVar("T")


class _Refused(Exception):
    """Raised inside a vote's transaction to roll it back with a reason."""

    def __init__(self, result: CastResult) -> None:
        super().__init__(result.value)
        self.result = result


class SqlApprovalStore:
    """The :class:`~treasurer.service.approval_ports.ApprovalStore` over one database."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def _run(self, work: Callable[[Tx], T], *, write: bool = True) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    def issue_nonce(self, issued: IssuedNonce, now: datetime) -> None:
        self._run(
            lambda tx: tx.execute(
                "INSERT INTO approval_nonces (nonce, authorization_id, approver_id, created_us, "
                "expires_us, used_us) VALUES (:n, :a, :p, :c, :e, NULL)",
                {
                    "n": issued.nonce,
                    "a": issued.authorization_id,
                    "p": issued.approver_id,
                    "c": to_us(now),
                    "e": to_us(issued.expires_at),
                },
            )
        )

    def cast(
        self,
        authorization_id: str,
        ballot: Ballot,
        nonce: str | None,
        audit: AuditRecord,
        now: datetime,
    ) -> CastResult:
        def work(tx: Tx) -> CastResult:
            if nonce is not None:
                _spend_nonce(tx, nonce, authorization_id, ballot.voter.id, now)
            inserted = tx.execute(
                "INSERT INTO approval_ballots (authorization_id, voter, voter_kind, voter_id, "
                "groups, vote, at_us) VALUES (:a, :v, :k, :i, :g, :vote, :at) "
                "ON CONFLICT (authorization_id, voter) DO NOTHING",
                {
                    "a": authorization_id,
                    "v": ballot.voter.handle,
                    "k": ballot.voter.kind.value,
                    "i": ballot.voter.id,
                    "g": dumps(list(ballot.voter.groups)),
                    "vote": ballot.vote.value,
                    "at": to_us(ballot.at),
                },
            )
            if inserted != 1:
                raise _Refused(CastResult.ALREADY_VOTED)
            write_audit(tx, audit, now)
            return CastResult.RECORDED

        try:
            return self._run(work)
        except _Refused as refused:
            return refused.result

    def ballots(self, authorization_id: str) -> list[Ballot]:
        rows = self._run(
            lambda tx: tx.all(
                "SELECT voter_kind, voter_id, groups, vote, at_us FROM approval_ballots "
                "WHERE authorization_id = :a ORDER BY at_us, voter",
                {"a": authorization_id},
            ),
            write=False,
        )
        return [
            Ballot(
                Voter(VoterKind(r[0]), str(r[1]), tuple(loads(r[2]))),
                Vote(r[3]),
                from_us_required(r[4]),
            )
            for r in rows
        ]


def _spend_nonce(
    tx: Tx, nonce: str, authorization_id: str, approver_id: str, now: datetime
) -> None:
    row = tx.one(
        "SELECT authorization_id, approver_id, expires_us, used_us FROM approval_nonces "
        "WHERE nonce = :n",
        {"n": nonce},
    )
    if row is None or row[0] != authorization_id or row[1] != approver_id:
        raise _Refused(CastResult.NONCE_UNKNOWN)
    if row[3] is not None:
        raise _Refused(CastResult.NONCE_USED)
    now_us = to_us(now)
    assert now_us is not None
    if int(row[2]) <= now_us:
        raise _Refused(CastResult.NONCE_EXPIRED)
    spent = tx.execute(
        "UPDATE approval_nonces SET used_us = :now WHERE nonce = :n AND used_us IS NULL",
        {"now": now_us, "n": nonce},
    )
    if spent != 1:
        raise _Refused(CastResult.NONCE_USED)  # a concurrent replay won the race
