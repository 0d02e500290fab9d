"""The tamper-evident audit trail, on every store (SQLite file and PostgreSQL schema).

Real traffic (config apply, allowed and denied authorizations, captures, voids, freezes) is
sealed into the hash chain, exported and verified; then the export or the database itself is
tampered with, and the first broken event must be named. Concurrent writers (threads
authorizing at once while a sealer runs) must give a gapless chain with every event sealed
exactly once, and on PostgreSQL an event of a transaction that is still open must hold the
sealer back instead of being skipped.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

import treasurer
from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.migrations.v0011_audit_append_only import (
    drop_guards as drop_guard_statements,
)
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.audit_verify import VerifyReport, verify_export
from treasurer.service.audit import AuditChainBroken, AuditTrail, seal_forever
from treasurer.service.audit_ports import AuditQuery
from treasurer.service.audit_signing import Ed25519Signer, verify_ed25519

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())


@pytest.fixture
def gov(database_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    governance = treasurer.open(database_url, clock=clock)
    yield governance
    governance.close()


@pytest.fixture
def trail(gov: EmbeddedGovernance) -> AuditTrail:
    return AuditTrail(SqlAuditLog(gov.sql.db), gov.clock, SIGNER)


def traffic(gov: EmbeddedGovernance, clock: FakeClock, trail: AuditTrail) -> dict[str, str]:
    """Config apply, an allowed spend captured, a denial, a void, a freeze and its lifting;
    then sealed."""
    gov.apply(cross_wallet_org())
    clock.advance(minutes=1)
    allowed = gov.authorize(agent="agent_a", wallet="w1", amount="10", asset="USDC", recipient=SHOP)
    gov.capture(allowed.id)
    clock.advance(minutes=1)
    denied = gov.authorize(agent="agent_a", wallet="w1", amount="5000", asset="USDC")
    voided = gov.authorize(agent="agent_b", wallet="w3", amount="3", asset="USDC")
    gov.void(voided.id)
    clock.advance(minutes=1)
    gov.freeze("wallet:w2", reason="audit test")
    gov.unfreeze("wallet:w2")
    seal_all(trail)
    return {"allowed": allowed.id, "denied": denied.id, "voided": voided.id}


def export_text(trail: AuditTrail, **span: datetime) -> list[str]:
    out = io.StringIO()
    trail.export(out, **span)
    return out.getvalue().splitlines(keepends=True)


def verify(lines: list[str], trusted: str | None = SIGNER.public_key) -> VerifyReport:
    return verify_export(lines, verify_ed25519, trusted)


def seal_all(trail: AuditTrail, timeout_s: float = 60.0) -> None:
    """Seal until nothing waits. On PostgreSQL any write transaction still open on the server
    (another test's, in another schema) holds the sealer back until it ends."""
    deadline = time.monotonic() + timeout_s
    while trail.settle(0.5):
        assert time.monotonic() < deadline, "events stayed unsealed"


def chain_rows(gov: EmbeddedGovernance) -> list[tuple[int, int | None, str | None]]:
    rows = gov.sql.db.run(
        lambda tx: tx.all("SELECT id, seq, hash FROM audit_events ORDER BY id"), write=False
    )
    return [(int(r[0]), None if r[1] is None else int(r[1]), r[2]) for r in rows]


def sql(gov: EmbeddedGovernance, statement: str, params: dict[str, object]) -> int:
    return gov.sql.db.run(lambda tx: tx.execute(statement, params))


def drop_guards(gov: EmbeddedGovernance) -> None:
    """Drop the append-only triggers (migration 11), as an attacker with DDL rights could:
    without them the database refuses the tampering below outright, and these tests are about
    the chain naming tampering that got past the database."""
    for statement in drop_guard_statements(gov.sql.dialect):
        gov.sql.db.run(lambda tx, s=statement: tx.execute(s))


def event_line_index(lines: list[str], seq: int) -> int:
    return next(
        i
        for i, line in enumerate(lines)
        if json.loads(line).get("type") == "event" and json.loads(line)["seq"] == seq
    )


# -- sealing ------------------------------------------------------------------------------------
def test_every_event_is_sealed_once_in_a_gapless_chain(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """seq runs 1..n over every row, and the live chain verifies."""
    traffic(gov, clock, trail)
    seal_all(trail)
    rows = chain_rows(gov)
    assert sorted(seq for _id, seq, _hash in rows if seq is not None) == list(
        range(1, len(rows) + 1)
    )
    live = trail.verify_live(SIGNER.public_key)
    assert live.report.ok, live.report
    assert live.report.events == len(rows)
    assert live.unsealed == 0


def test_sealing_twice_changes_nothing(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """A second seal writes nothing; new events extend the chain without touching the old."""
    traffic(gov, clock, trail)
    seal_all(trail)
    before = chain_rows(gov)
    assert trail.seal() == 0
    assert chain_rows(gov) == before
    gov.authorize(agent="agent_b", wallet="w3", amount="1", asset="USDC")
    seal_all(trail)
    after = chain_rows(gov)
    assert after[: len(before)] == before
    assert after[-1][1] == len(before) + 1


def test_checkpoints_sign_the_head_once(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """A checkpoint of an unchanged head is not signed again; a moved head gets a new one."""
    traffic(gov, clock, trail)
    first = trail.checkpoint()
    assert first is not None
    assert trail.checkpoint() == first
    gov.authorize(agent="agent_b", wallet="w3", amount="1", asset="USDC")
    seal_all(trail)
    second = trail.checkpoint()
    assert second is not None and second.seq == first.seq + 1
    assert trail.log.checkpoints(1, second.seq) == [first, second]
    assert trail.verify_live(SIGNER.public_key).report.signed_through == second.seq


def test_tick_signs_a_moved_head_once_an_interval_has_passed(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """The server's background step: seal always, sign at most once per interval."""
    traffic(gov, clock, trail)
    trail.tick(checkpoint_interval_s=3600)
    first = trail.log.latest_checkpoint()
    assert first is not None
    gov.authorize(agent="agent_b", wallet="w3", amount="1", asset="USDC")
    seal_all(trail)
    trail.tick(checkpoint_interval_s=3600)
    assert trail.log.latest_checkpoint() == first
    clock.advance(hours=2)
    trail.tick(checkpoint_interval_s=3600)
    latest = trail.log.latest_checkpoint()
    assert latest is not None and latest.seq == first.seq + 1


def test_seal_forever_seals_in_the_background(gov: EmbeddedGovernance, trail: AuditTrail) -> None:
    """The loop ``treasurer serve`` runs: seal every interval until stopped."""
    gov.apply(cross_wallet_org())
    stop = threading.Event()
    worker = threading.Thread(target=seal_forever, args=(trail, stop, 0.02))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while trail.log.unsealed() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join()
    assert trail.log.unsealed() == 0
    assert trail.log.head() is not None


# -- export and verification --------------------------------------------------------------------
def test_an_untouched_export_verifies(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    traffic(gov, clock, trail)
    lines = export_text(trail)
    report = verify(lines)
    assert report.ok, report
    assert report.from_genesis
    assert report.events == len(chain_rows(gov))
    assert report.signed_through == report.last_seq
    assert json.loads(lines[-2])["type"] == "checkpoint"  # an export ends signed


def test_a_time_slice_verifies_on_its_own(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """--since/--until: the contiguous stretch of the chain over that time, anchored."""
    start = clock.now()
    traffic(gov, clock, trail)
    lines = export_text(
        trail, since=start + timedelta(minutes=1), until=start + timedelta(minutes=2)
    )
    report = verify(lines)
    assert report.ok, report
    assert not report.from_genesis
    kinds = [json.loads(line).get("kind") for line in lines[1:-1]]
    assert "authorization.captured" in kinds and "org.created" not in kinds


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_tampering_with_an_export_names_the_first_broken_event(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock, tamper: str
) -> None:
    traffic(gov, clock, trail)
    lines = export_text(trail)
    target = 5
    index = event_line_index(lines, target)
    event_id = json.loads(lines[index])["id"]
    if tamper == "edit":
        data = json.loads(lines[index])
        data["payload"]["after"] = {"id": "mallory"}
        lines[index] = json.dumps(data) + "\n"
    elif tamper == "delete":
        del lines[index]
    else:
        following = event_line_index(lines, target + 1)
        lines[index], lines[following] = lines[following], lines[index]
    report = verify(lines)
    assert not report.ok
    broken = report.first_broken
    assert broken is not None
    assert broken.seq == target
    assert broken.problem == {"edit": "altered", "delete": "removed", "swap": "reordered"}[tamper]
    if tamper != "delete":
        assert broken.id == event_id


def test_a_checkpoint_with_a_wrong_signature_is_detected(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    traffic(gov, clock, trail)
    lines = export_text(trail)
    index = max(i for i, line in enumerate(lines) if '"type":"checkpoint"' in line)
    data = json.loads(lines[index])
    data["signature"] = SIGNER.sign(b"something else").hex()
    lines[index] = json.dumps(data) + "\n"
    report = verify(lines)
    assert report.first_broken is None
    assert [p.problem for p in report.checkpoint_problems] == ["bad_signature"]


def test_an_edited_row_in_the_database_is_named(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """Someone with database access rewrites a denial as an approval: verify names it."""
    ids = traffic(gov, clock, trail)
    seal_all(trail)
    row = gov.sql.db.run(
        lambda tx: tx.one(
            "SELECT id, seq, payload FROM audit_events WHERE subject = :s AND kind = :k",
            {"s": ids["denied"], "k": "authorization.denied"},
        ),
        write=False,
    )
    assert row is not None
    payload = json.loads(row[2])
    payload["allowed"] = True
    drop_guards(gov)  # an attacker with DDL rights: the triggers would refuse the UPDATE
    sql(
        gov,
        "UPDATE audit_events SET payload = :p WHERE id = :id",
        {"p": json.dumps(payload), "id": row[0]},
    )
    report = trail.verify_live().report
    assert report.first_broken is not None
    assert (report.first_broken.problem, report.first_broken.seq, report.first_broken.id) == (
        "altered",
        int(row[1]),
        int(row[0]),
    )
    assert "seq" in report.first_broken.message


def test_a_deleted_row_in_the_database_is_named(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    traffic(gov, clock, trail)
    seal_all(trail)
    drop_guards(gov)  # an attacker with DDL rights: the triggers would refuse the DELETE
    sql(gov, "DELETE FROM audit_events WHERE seq = :seq", {"seq": 3})
    broken = trail.verify_live().report.first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("removed", 3)


def test_deleting_the_newest_events_is_caught_by_their_checkpoint(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """The last events and nothing after them to link: the checkpoint still names the end."""
    traffic(gov, clock, trail)
    checkpoint = trail.checkpoint()
    assert checkpoint is not None
    drop_guards(gov)  # an attacker with DDL rights: the triggers would refuse the DELETE
    sql(gov, "DELETE FROM audit_events WHERE seq >= :seq", {"seq": checkpoint.seq - 1})
    report = trail.verify_live().report
    assert report.first_broken is None
    assert [(p.problem, p.seq) for p in report.checkpoint_problems] == [
        ("misplaced", checkpoint.seq)
    ]


def test_a_checkpoint_never_signs_a_chain_broken_since_the_last_one(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """A rewrite in the unsigned tail (hash recomputed too) is refused, not blessed."""
    traffic(gov, clock, trail)
    first = trail.checkpoint()
    assert first is not None
    gov.authorize(agent="agent_b", wallet="w3", amount="1", asset="USDC")
    seal_all(trail)
    drop_guards(gov)  # an attacker with DDL rights: the triggers would refuse the UPDATE
    sql(
        gov,
        "UPDATE audit_events SET hash = :h WHERE seq = :seq",
        {"h": "0" * 64, "seq": first.seq + 1},
    )
    with pytest.raises(AuditChainBroken, match=f"seq {first.seq + 1}"):
        trail.checkpoint()
    assert trail.log.latest_checkpoint() == first


def test_a_forged_checkpoint_in_the_database_is_detected(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    traffic(gov, clock, trail)
    checkpoint = trail.checkpoint()
    assert checkpoint is not None
    drop_guards(gov)  # an attacker with DDL rights: the triggers would refuse the UPDATE
    sql(
        gov,
        "UPDATE audit_checkpoints SET signature = :sig WHERE seq = :seq",
        {"sig": SIGNER.sign(b"forged").hex(), "seq": checkpoint.seq},
    )
    report = trail.verify_live().report
    assert report.first_broken is None
    assert [(p.problem, p.seq) for p in report.checkpoint_problems] == [
        ("bad_signature", checkpoint.seq)
    ]


# -- the filtered list ----------------------------------------------------------------------------
def test_filters_find_what_each_event_concerns(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """Agent, wallet, department, chain and outcome reach captures and voids too (through
    the authorization they name), not only the decisions whose payload says so."""
    ids = traffic(gov, clock, trail)

    def kinds(**filters: object) -> list[tuple[str, str]]:
        return [(e.kind, e.subject) for e in trail.events(AuditQuery(**filters), 100)]  # type: ignore[arg-type]

    assert ("authorization.voided", ids["voided"]) in kinds(agent="agent_b")
    assert ("authorization.captured", ids["allowed"]) not in kinds(agent="agent_b")
    assert ("authorization.captured", ids["allowed"]) in kinds(wallet="w1", chain="base")
    assert kinds(outcome="denied") == [("authorization.denied", ids["denied"])]
    assert {k for k, _s in kinds(outcome="allowed")} == {"authorization.created"}
    assert kinds(kind="authorization.voided") == [("authorization.voided", ids["voided"])]
    assert ("freeze.set", "wallet:w2") in kinds(wallet="w2", department="ops")
    assert kinds(actor="nobody") == []
    late = clock.now()  # the freeze and its lifting happened in the last minute
    assert {k for k, _s in kinds(since=late)} == {"freeze.set", "freeze.lifted"}
    assert all(e.seq is not None for e in trail.events(AuditQuery(subject=ids["allowed"]), 10))


def test_filtered_pages_resume_after_the_cursor(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    traffic(gov, clock, trail)
    query = AuditQuery(agent="agent_a")
    every = [e.id for e in trail.events(query, 100)]
    first = [e.id for e in trail.events(query, 3)]
    rest = [e.id for e in trail.events(query, 100, after_id=first[-1])]
    assert first + rest == every and len(every) > 3


# -- concurrency --------------------------------------------------------------------------------
def test_concurrent_writers_give_a_gapless_chain_sealed_once(database_url: str) -> None:
    """48 threads authorize and capture at once while a sealer runs: afterwards the chain
    is 1..n over every row, each row sealed once, and it verifies."""
    clock = FakeClock(datetime(2026, 6, 15, 16, 0, tzinfo=UTC))
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(cross_wallet_org(agent_daily="100000.00", department_daily="100000.00"))
        trail = AuditTrail(SqlAuditLog(gov.sql.db), gov.clock, SIGNER)
        start = threading.Barrier(48)
        stop = threading.Event()

        def spend(i: int) -> None:
            start.wait()
            result = gov.authorize(
                agent="agent_a", wallet=("w1", "w2")[i % 2], amount="1.00", asset="USDC"
            )
            if i % 3 == 0:
                gov.void(result.id)
            else:
                gov.capture(result.id)

        sealer = threading.Thread(target=seal_forever, args=(trail, stop, 0.001))
        sealer.start()
        try:
            with ThreadPoolExecutor(max_workers=48) as pool:
                list(pool.map(spend, range(48)))
        finally:
            stop.set()
            sealer.join()
        seal_all(trail)
        rows = chain_rows(gov)
        seqs = [seq for _id, seq, _hash in rows]
        assert None not in seqs
        assert sorted(s for s in seqs if s is not None) == list(range(1, len(rows) + 1))
        assert len(rows) >= 1 + 48 * 2
        live = trail.verify_live(SIGNER.public_key)
        assert live.report.ok, live.report
        assert verify(export_text(trail)).ok


def test_an_open_transaction_holds_the_sealer_back(pg_url: str, clock: FakeClock) -> None:
    """PostgreSQL: an event whose transaction is still open keeps every event after it
    unsealed, even those committed since; once it commits, it is sealed before them."""
    with treasurer.open(pg_url, clock=clock) as gov:
        gov.apply(cross_wallet_org())
        trail = AuditTrail(SqlAuditLog(gov.sql.db), gov.clock)
        seal_all(trail)
        sealed_before = trail.log.head()
        assert sealed_before is not None
        with psycopg.connect(pg_url) as slow:  # a transaction that takes its time
            slow.execute(
                "INSERT INTO audit_events (at_us, kind, actor, subject, payload) "
                "VALUES (1, 'test.slow', 'test', 'slow', '{}')"
            )
            later = gov.authorize(agent="agent_a", wallet="w1", amount="1", asset="USDC")
            trail.seal()
            head = trail.log.head()
            assert head is not None and head.seq == sealed_before.seq
            assert trail.log.unsealed() >= 1  # the later, committed event waits
            slow.commit()
        seal_all(trail)
        order = {
            e.kind: e.seq for e in trail.events(AuditQuery(since=None), 1000) if e.seq is not None
        }
        assert order["test.slow"] < order["authorization.created"]
        assert trail.verify_live().report.ok
        assert later.allowed
