"""Retention purge and the append-only guards, on every store (SQLite file, PostgreSQL schema).

A purge deletes the oldest sealed events (older than ``settings.audit_retention_days``) after
signing a checkpoint over the last of them; the remaining chain must still verify live and
offline from that anchor, still name an edited, deleted or reordered remaining event, and
refuse a forged anchor. The database itself (migration 11) refuses UPDATE and DELETE of sealed
events and checkpoints, except the purge's own deletes.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

import treasurer
from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.migrations.v0011_audit_append_only import drop_guards
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.audit_chain import checkpoint_message
from treasurer.domain.audit_verify import VerifyReport, verify_export
from treasurer.service.audit import AuditChainBroken, AuditTrail, SigningKeyMissing
from treasurer.service.audit_purge import (
    PURGED_KIND,
    PurgeBeyondRetention,
    PurgeResult,
    purge_audit,
    retention_days_of,
)
from treasurer.service.audit_signing import Ed25519Signer, verify_ed25519

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
RETENTION_DAYS = 30


@pytest.fixture
def gov(database_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    governance = treasurer.open(database_url, clock=clock)
    yield governance
    governance.close()


@pytest.fixture
def trail(gov: EmbeddedGovernance) -> AuditTrail:
    return AuditTrail(SqlAuditLog(gov.sql.db), gov.clock, SIGNER)


def seal_all(trail: AuditTrail, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while trail.settle(0.5):
        assert time.monotonic() < deadline, "events stayed unsealed"


def old_and_new(gov: EmbeddedGovernance, clock: FakeClock, trail: AuditTrail) -> int:
    """Events 40 days old (config, spends), then recent ones; returns the last old seq."""
    org = cross_wallet_org()
    org["settings"] = {"audit_retention_days": RETENTION_DAYS}
    gov.apply(org)
    allowed = gov.authorize(agent="agent_a", wallet="w1", amount="10", asset="USDC")
    gov.capture(allowed.id)
    gov.authorize(agent="agent_a", wallet="w1", amount="5000", asset="USDC")
    seal_all(trail)
    head = trail.log.head()
    assert head is not None
    clock.advance(days=40)
    for amount in ("1", "2", "3"):
        done = gov.authorize(agent="agent_b", wallet="w3", amount=amount, asset="USDC")
        gov.void(done.id)
    seal_all(trail)
    return head.seq


def purge(trail: AuditTrail, **options: object) -> PurgeResult:
    result = purge_audit(trail, RETENTION_DAYS, actor="admin:ops", **options)  # type: ignore[arg-type]
    seal_all(trail)
    return result


def export_lines(trail: AuditTrail) -> list[str]:
    out = io.StringIO()
    trail.export(out)
    return out.getvalue().splitlines(keepends=True)


def verify(lines: list[str], trusted: str | None = SIGNER.public_key) -> VerifyReport:
    return verify_export(lines, verify_ed25519, trusted)


def sql(gov: EmbeddedGovernance, statement: str, params: dict[str, object] | None = None) -> int:
    return gov.sql.db.run(lambda tx: tx.execute(statement, params or {}))


def without_guards(gov: EmbeddedGovernance) -> None:
    """An attacker with DDL rights drops the append-only triggers before tampering."""
    for statement in drop_guards(gov.sql.dialect):
        sql(gov, statement)


def first_event_index(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "event")


# -- the purge ----------------------------------------------------------------------------------
def test_a_purge_deletes_the_old_prefix_and_the_chain_still_verifies(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    last_old = old_and_new(gov, clock, trail)
    head = trail.log.head()
    assert head is not None
    result = purge(trail)
    assert (result.count, result.first_seq, result.upto_seq) == (last_old, 1, last_old)
    assert result.checkpoint_seq == last_old and result.id is not None
    assert result.retention_days == retention_days_of(gov) == RETENTION_DAYS
    live = trail.verify_live(SIGNER.public_key)
    assert live.report.ok, live.report
    assert live.report.anchor_seq == last_old
    assert live.report.first_seq == last_old + 1
    assert live.report.last_seq == head.seq + 1  # the audit.purged event, sealed after
    rows = gov.sql.db.run(lambda tx: tx.all("SELECT min(seq), count(*) FROM audit_events"))
    assert (int(rows[0][0]), int(rows[0][1])) == (last_old + 1, head.seq + 1 - last_old)
    recorded = gov.sql.db.run(
        lambda tx: tx.one(
            "SELECT actor, upto_seq, upto_hash, count, checkpoint_seq FROM audit_purges"
        )
    )
    assert recorded is not None
    assert tuple(recorded) == ("admin:ops", last_old, result.upto_hash, last_old, last_old)
    [event] = [e for e in gov.store.audit_events(1000) if e["kind"] == PURGED_KIND]
    assert event["actor"] == "admin:ops"
    payload = event["payload"]
    assert isinstance(payload, dict)
    assert (payload["count"], payload["upto_seq"]) == (last_old, last_old)


def test_an_export_after_a_purge_carries_the_anchor_and_verifies_offline(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    last_old = old_and_new(gov, clock, trail)
    purge(trail)
    lines = export_lines(trail)
    header, anchor = json.loads(lines[0]), json.loads(lines[1])
    assert header["anchor_seq"] == last_old and header["first_seq"] == last_old + 1
    assert anchor["type"] == "anchor" and anchor["seq"] == last_old
    assert json.loads(lines[2])["prev_hash"] == anchor["hash"]
    report = verify(lines)
    assert report.ok, report
    assert (report.anchor_seq, report.first_seq, report.from_genesis) == (
        last_old,
        last_old + 1,
        False,
    )
    assert report.signed_through == report.last_seq


def test_new_events_after_a_purge_extend_the_chain_and_a_second_purge_moves_the_anchor(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    old_and_new(gov, clock, trail)
    first = purge(trail)
    clock.advance(days=40)  # now everything is old, the first purge's event too
    second = purge(trail)
    assert first.upto_seq is not None and second.first_seq == first.upto_seq + 1
    head = trail.log.head()
    assert second.upto_seq is not None and head is not None
    assert head.seq == second.upto_seq + 1  # only the second purge's own event remains
    gov.authorize(agent="agent_b", wallet="w3", amount="1", asset="USDC")
    seal_all(trail)
    live = trail.verify_live(SIGNER.public_key)
    assert live.report.ok, live.report
    assert live.report.anchor_seq == second.upto_seq
    assert verify(export_lines(trail)).ok
    purges = gov.sql.db.run(lambda tx: tx.all("SELECT upto_seq FROM audit_purges ORDER BY 1"))
    assert [int(r[0]) for r in purges] == [first.upto_seq, second.upto_seq]


def test_purging_every_event_keeps_the_numbering(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """With every sealed event gone, the next one still links to the anchor (no new seq 1)."""
    old_and_new(gov, clock, trail)
    clock.advance(days=40)
    result = purge_audit(trail, RETENTION_DAYS, actor="admin:ops")
    head = trail.log.head()
    assert head is not None and result.upto_seq == head.seq  # nothing sealed remains
    seal_all(trail)  # seals the audit.purged event after the anchor
    new_head = trail.log.head()
    assert new_head is not None and new_head.seq == result.upto_seq + 1
    assert trail.verify_live(SIGNER.public_key).report.ok
    assert verify(export_lines(trail)).ok


def test_a_dry_run_changes_nothing(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    last_old = old_and_new(gov, clock, trail)
    before = trail.log.head()
    planned = purge(trail, dry_run=True)
    assert (planned.dry_run, planned.count, planned.upto_seq, planned.id) == (
        True,
        last_old,
        last_old,
        None,
    )
    assert trail.log.head() == before
    assert trail.log.anchor() is None
    assert trail.verify_live().report.first_seq == 1


def test_before_may_purge_less_but_never_more_than_retention_allows(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    old_and_new(gov, clock, trail)
    with pytest.raises(PurgeBeyondRetention) as refused:
        purge(trail, before=clock.now() - timedelta(days=RETENTION_DAYS - 1))
    assert refused.value.code == "audit_purge_beyond_retention"
    nothing = purge(trail, before=clock.now() - timedelta(days=400))
    assert (nothing.count, nothing.upto_seq, nothing.id) == (0, None, None)
    assert trail.log.anchor() is None


def test_only_a_prefix_of_old_events_goes(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """Nothing is purged past the first event younger than the cutoff."""
    old_and_new(gov, clock, trail)
    clock.advance(days=10)  # the recent events are now 10 days old: inside retention
    result = purge(trail)
    live = trail.verify_live(SIGNER.public_key).report
    assert live.ok and live.first_seq == (result.upto_seq or 0) + 1
    young = gov.sql.db.run(
        lambda tx: tx.one(
            "SELECT min(at_us) FROM audit_events WHERE kind <> :k", {"k": PURGED_KIND}
        )
    )
    cutoff_us = int(result.cutoff.timestamp()) * 1_000_000
    assert young is not None and int(young[0]) >= cutoff_us


def test_a_purge_needs_the_signing_key(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    old_and_new(gov, clock, trail)
    unsigned = AuditTrail(trail.log, gov.clock)
    with pytest.raises(SigningKeyMissing):
        purge_audit(unsigned, RETENTION_DAYS, actor="admin:ops")
    assert purge_audit(unsigned, RETENTION_DAYS, actor="admin:ops", dry_run=True).count > 0


def test_a_purge_refuses_to_destroy_a_broken_chain(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """Purging tampered events would hide the tampering: refused, nothing deleted."""
    old_and_new(gov, clock, trail)
    without_guards(gov)
    sql(gov, "UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 2")
    with pytest.raises(AuditChainBroken, match="seq 2"):
        purge_audit(trail, RETENTION_DAYS, actor="admin:ops")
    assert trail.log.anchor() is None


# -- verification after a purge -----------------------------------------------------------------
@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_tampering_after_a_purge_is_still_named(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock, tamper: str
) -> None:
    last_old = old_and_new(gov, clock, trail)
    purge(trail)
    lines = export_lines(trail)
    index = first_event_index(lines) + 1  # the second remaining event
    target = json.loads(lines[index])["seq"]
    assert target == last_old + 2
    if tamper == "edit":
        data = json.loads(lines[index])
        data["actor"] = "admin:mallory"
        lines[index] = json.dumps(data) + "\n"
    elif tamper == "delete":
        del lines[index]
    else:
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == (
        {"edit": "altered", "delete": "removed", "swap": "reordered"}[tamper],
        target,
    )


def test_deleting_the_first_remaining_event_in_the_database_is_named(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    last_old = old_and_new(gov, clock, trail)
    purge(trail)
    without_guards(gov)
    sql(gov, "DELETE FROM audit_events WHERE seq = :seq", {"seq": last_old + 1})
    broken = trail.verify_live().report.first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("removed", last_old + 1)


def test_editing_a_remaining_event_in_the_database_is_named(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    last_old = old_and_new(gov, clock, trail)
    purge(trail)
    without_guards(gov)
    sql(gov, "UPDATE audit_events SET subject = 'x' WHERE seq = :seq", {"seq": last_old + 1})
    broken = trail.verify_live().report.first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("altered", last_old + 1)


def test_a_forged_anchor_in_an_export_is_detected(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    old_and_new(gov, clock, trail)
    purge(trail)
    lines = export_lines(trail)
    anchor = json.loads(lines[1])

    def with_anchor(**changes: object) -> list[str]:
        return [lines[0], json.dumps(anchor | changes) + "\n", *lines[2:]]

    # A bad signature (e.g. the hash or seq changed after signing).
    forged = verify(with_anchor(hash="ab" * 32)).first_broken
    assert forged is not None and forged.problem == "bad_anchor"
    assert "signature" in forged.message
    # A validly signed anchor over another hash: the first event does not link to it.
    other_hash = "cd" * 32
    message = checkpoint_message(anchor["seq"], other_hash, anchor["at_us"], SIGNER.key_id)
    signed = with_anchor(hash=other_hash, signature=SIGNER.sign(message).hex())
    unlinked = verify(signed).first_broken
    assert unlinked is not None
    assert (unlinked.problem, unlinked.seq) == ("unlinked", anchor["seq"] + 1)
    assert "purge anchor" in unlinked.message
    # Signed by another key than the pinned one.
    mallory = Ed25519Signer(Ed25519PrivateKey.generate())
    message = checkpoint_message(anchor["seq"], anchor["hash"], anchor["at_us"], mallory.key_id)
    foreign = with_anchor(
        key_id=mallory.key_id,
        public_key=mallory.public_key,
        signature=mallory.sign(message).hex(),
    )
    untrusted = verify(foreign).first_broken
    assert untrusted is not None and untrusted.problem == "bad_anchor"
    assert verify(foreign, trusted=None).ok  # unpinned, any valid signature holds
    # The anchor line removed while the header still announces it.
    missing = verify([lines[0], *lines[2:]]).first_broken
    assert missing is not None and missing.problem == "bad_anchor"


def test_a_forged_or_missing_anchor_in_the_database_is_detected(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    result = old_and_new(gov, clock, trail)
    purge(trail)
    without_guards(gov)
    sql(
        gov,
        "UPDATE audit_checkpoints SET signature = :sig WHERE seq = :seq",
        {"sig": SIGNER.sign(b"forged").hex(), "seq": result},
    )
    forged = trail.verify_live().report.first_broken
    assert forged is not None and (forged.problem, forged.seq) == ("bad_anchor", result)
    sql(gov, "DELETE FROM audit_checkpoints WHERE seq = :seq", {"seq": result})
    missing = trail.verify_live().report.first_broken
    assert missing is not None and (missing.problem, missing.seq) == ("bad_anchor", result)
    assert "missing" in missing.message


def test_hiding_a_purge_record_breaks_the_chain(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """Without its record the purged prefix reads as removed events."""
    purge_upto = old_and_new(gov, clock, trail)
    purge(trail)
    without_guards(gov)
    sql(gov, "DELETE FROM audit_purges")
    broken = trail.verify_live().report.first_broken
    assert broken is not None and (broken.problem, broken.seq) == ("removed", 1)
    assert purge_upto > 1


# -- the append-only guards ---------------------------------------------------------------------
def test_the_database_refuses_to_change_or_delete_sealed_rows(
    gov: EmbeddedGovernance, trail: AuditTrail, clock: FakeClock
) -> None:
    """Plain write access is not enough: UPDATE and DELETE of sealed events, checkpoints and
    purge records fail in the database; sealing (which fills in unsealed rows) still works."""
    old_and_new(gov, clock, trail)
    checkpoint = trail.checkpoint()
    assert checkpoint is not None
    refused = [
        ("UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 2", {}),
        ("UPDATE audit_events SET hash = :h WHERE seq = 2", {"h": "0" * 64}),
        ("DELETE FROM audit_events WHERE seq = 2", {}),
        ("UPDATE audit_checkpoints SET signature = 'x' WHERE seq = :s", {"s": checkpoint.seq}),
        ("DELETE FROM audit_checkpoints WHERE seq = :s", {"s": checkpoint.seq}),
    ]
    for statement, params in refused:
        with pytest.raises(Exception, match="append-only"):
            sql(gov, statement, params)
    # An unsealed event may be sealed, but not rewritten or deleted before it is.
    gov.authorize(agent="agent_b", wallet="w3", amount="1", asset="USDC")
    with pytest.raises(Exception, match="append-only"):
        sql(gov, "UPDATE audit_events SET payload = '{}' WHERE seq IS NULL")
    with pytest.raises(Exception, match="append-only"):
        sql(gov, "DELETE FROM audit_events WHERE seq IS NULL")
    seal_all(trail)
    assert trail.verify_live(SIGNER.public_key).report.ok
    purge(trail)
    with pytest.raises(Exception, match="append-only"):
        sql(gov, "DELETE FROM audit_purges")
    with pytest.raises(Exception, match="append-only"):
        sql(gov, "UPDATE audit_purges SET count = 0")
    anchor = trail.log.anchor()
    assert anchor is not None
    with pytest.raises(Exception, match="append-only"):  # the anchor is kept, too
        sql(gov, "DELETE FROM audit_checkpoints WHERE seq = :s", {"s": anchor.purge.upto_seq})
    assert trail.verify_live(SIGNER.public_key).report.ok
