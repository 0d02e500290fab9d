"""The pure verifier after a retention purge: a chain that starts at a signed anchor.

A purged chain is events ``n+1 …`` whose first ``prev_hash`` is the hash of the last purged
event ``n``, vouched for by a checkpoint over ``n`` (the anchor). It verifies exactly when the
anchor's signature holds and the first event links to it; a forged, misplaced, foreign or
missing anchor breaks it at the start.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from treasurer.domain.audit_chain import (
    ChainEvent,
    Checkpoint,
    EventContent,
    ExportAnchor,
    ExportEnd,
    ExportHeader,
    anchor_line,
    checkpoint_message,
    end_line,
    event_line,
    header_line,
    link,
    parse_line,
)
from treasurer.domain.audit_verify import ChainVerifier, VerifyReport, verify_export
from treasurer.service.audit_signing import Ed25519Signer, verify_ed25519

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
OTHER = Ed25519Signer(Ed25519PrivateKey.generate())
PURGED = 5


def chain(count: int = 9) -> list[ChainEvent]:
    contents = [
        EventContent(i + 1, 1_781_524_800_000_000 + i, "k", "actor", f"s{i}", {"i": i})
        for i in range(count)
    ]
    return link(None, contents)


def sign(seq: int, chain_hash: str, signer: Ed25519Signer = SIGNER) -> Checkpoint:
    message = checkpoint_message(seq, chain_hash, 1, signer.key_id)
    return Checkpoint(
        seq, chain_hash, 1, signer.key_id, signer.public_key, signer.sign(message).hex()
    )


def export(anchor: Checkpoint | None, events: list[ChainEvent], announce: int | None) -> list[str]:
    header = ExportHeader(events[0].seq, events[-1].seq, None, None, 0, announce)
    lines = [header_line(header)]
    if anchor is not None:
        lines.append(anchor_line(ExportAnchor(anchor)))
    lines += [event_line(e) for e in events]
    lines.append(end_line(ExportEnd(len(events), 0, events[-1].seq)))
    return lines


def verify(lines: list[str], trusted: str | None = None) -> VerifyReport:
    return verify_export(lines, verify_ed25519, trusted)


def test_a_purged_chain_verifies_from_its_anchor() -> None:
    events = chain()
    anchor = sign(PURGED, events[PURGED - 1].hash)
    report = verify(export(anchor, events[PURGED:], PURGED), trusted=SIGNER.public_key)
    assert report.ok, report
    assert (report.anchor_seq, report.first_seq, report.from_genesis) == (PURGED, PURGED + 1, False)
    assert report.signed_through == PURGED  # the anchor vouches for the start
    assert report.unsigned_events == len(events) - PURGED


def test_the_anchor_line_round_trips() -> None:
    anchor = sign(PURGED, chain()[PURGED - 1].hash)
    assert parse_line(anchor_line(ExportAnchor(anchor))) == ExportAnchor(anchor)


def test_a_forged_anchor_breaks_the_chain_at_its_start() -> None:
    events = chain()
    good = sign(PURGED, events[PURGED - 1].hash)
    rest = events[PURGED:]
    tampered = Checkpoint(
        PURGED - 1, good.hash, good.at_us, good.key_id, good.public_key, good.signature
    )
    for anchor in (tampered, sign(PURGED, events[PURGED - 1].hash, OTHER)):
        report = verify(export(anchor, rest, anchor.seq), trusted=SIGNER.public_key)
        assert report.first_broken is not None and report.first_broken.problem == "bad_anchor"
    relinked = sign(PURGED, events[PURGED - 2].hash)  # signed, but over another hash
    broken = verify(export(relinked, rest, PURGED)).first_broken
    assert broken is not None and (broken.problem, broken.seq) == ("unlinked", PURGED + 1)


def test_a_missing_first_event_after_the_anchor_is_removed() -> None:
    events = chain()
    anchor = sign(PURGED, events[PURGED - 1].hash)
    broken = verify(export(anchor, events[PURGED + 1 :], PURGED)).first_broken
    assert broken is not None and (broken.problem, broken.seq) == ("removed", PURGED + 1)


def test_an_announced_anchor_must_be_there_and_come_first() -> None:
    events = chain()
    anchor = sign(PURGED, events[PURGED - 1].hash)
    missing = verify(export(None, events[PURGED:], PURGED)).first_broken
    assert missing is not None and missing.problem == "bad_anchor"
    lines = export(anchor, events[PURGED:], PURGED)
    late = [lines[0], lines[2], lines[1], *lines[3:]]
    broken = verify(late).first_broken
    assert broken is not None and broken.problem == "bad_anchor"


def test_the_live_verifier_names_a_purge_without_its_checkpoint() -> None:
    events = chain()
    verifier = ChainVerifier(verify_ed25519)
    verifier.anchor_missing(PURGED, events[PURGED - 1].hash)
    for event in events[PURGED:]:
        verifier.event(event)
    broken = verifier.finish().first_broken
    assert broken is not None and (broken.problem, broken.seq) == ("bad_anchor", PURGED)
