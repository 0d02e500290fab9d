"""The pure audit-chain verifier: canonical encoding, hashing, and naming the first break.

Exports are built here from :func:`link` and the line writers, signed with a throwaway
Ed25519 key, then tampered with the way an attacker (or an accident) would: edit, delete,
swap, insert, truncate, rehash, forge a checkpoint. The verifier must name the first broken
event by seq and id, and every checkpoint that does not hold.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from treasurer.domain.audit_chain import (
    GENESIS_HASH,
    ChainEvent,
    ChainHead,
    Checkpoint,
    EventContent,
    ExportEnd,
    ExportHeader,
    canonical_json,
    checkpoint_line,
    checkpoint_message,
    end_line,
    event_hash,
    event_line,
    hash_preimage,
    header_line,
    key_id_of,
    link,
)
from treasurer.domain.audit_verify import ChainVerifier, VerifyReport, verify_export
from treasurer.service.audit_signing import Ed25519Signer, public_key_from_text, verify_ed25519

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
OTHER = Ed25519Signer(Ed25519PrivateKey.generate())


def contents(count: int, start_id: int = 1) -> list[EventContent]:
    return [
        EventContent(
            id=start_id + i,
            at_us=1_781_524_800_000_000 + i,
            kind="authorization.created" if i % 2 else "authorization.denied",
            actor=f"agent:agent_{i % 3}",
            subject=f"auth_{i:04d}",
            payload={"allowed": bool(i % 2), "amount": str(i), "note": "café ✓"},
        )
        for i in range(count)
    ]


def sign(event: ChainEvent, signer: Ed25519Signer = SIGNER) -> Checkpoint:
    at_us = event.at_us + 1
    message = checkpoint_message(event.seq, event.hash, at_us, signer.key_id)
    return Checkpoint(
        event.seq, event.hash, at_us, signer.key_id, signer.public_key, signer.sign(message).hex()
    )


def export_lines(
    events: list[ChainEvent], every: int = 5, signer: Ed25519Signer = SIGNER
) -> list[str]:
    """A whole export: header, events with a checkpoint after every ``every``-th and the last."""
    first = events[0].seq if events else None
    last = events[-1].seq if events else None
    lines = [header_line(ExportHeader(first, last, None, None, 0))]
    checkpoints = 0
    for event in events:
        lines.append(event_line(event))
        if event.seq % every == 0 or event is events[-1]:
            lines.append(checkpoint_line(sign(event, signer)))
            checkpoints += 1
    lines.append(end_line(ExportEnd(len(events), checkpoints, last)))
    return lines


def verify(lines: list[str], trusted: str | None = None) -> VerifyReport:
    return verify_export(lines, verify_ed25519, trusted)


def event_at(lines: list[str], seq: int) -> int:
    """The index of the line of event ``seq``."""
    for index, line in enumerate(lines):
        data = json.loads(line)
        if data["type"] == "event" and data["seq"] == seq:
            return index
    raise AssertionError(seq)


def edit(line: str, **changes: object) -> str:
    data = json.loads(line)
    data.update(changes)
    return json.dumps(data) + "\n"


CHAIN = link(None, contents(12))


# -- encoding ---------------------------------------------------------------------------------
def test_canonical_json_is_sorted_compact_ascii() -> None:
    """Keys sorted, no spaces, non-ASCII escaped with lowercase hex, integers exact."""
    value = {"b": [1, True, None], "a": 'é\n"', "c": 2**70, "ä": {"z": 1, "y": 2.5}}
    assert canonical_json(value) == (
        b'{"a":"\\u00e9\\n\\"","b":[1,true,null],"c":1180591620717411303424,'
        b'"\\u00e4":{"y":2.5,"z":1}}'
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_event_hash_test_vectors() -> None:
    """The worked examples of docs/audit.md: an auditor's own implementation must agree."""
    first = EventContent(
        id=7,
        at_us=1781524800000000,
        kind="authorization.denied",
        actor="agent:procurement_bot",
        subject="auth_01",
        payload={"allowed": False, "request": {"amount": "5000", "wallet": "w1"}},
    )
    assert canonical_json(hash_preimage(first, 1, GENESIS_HASH)) == (
        b'{"actor":"agent:procurement_bot","at_us":1781524800000000,"id":7,'
        b'"kind":"authorization.denied","payload":{"allowed":false,"request":'
        b'{"amount":"5000","wallet":"w1"}},"prev_hash":"' + GENESIS_HASH.encode() + b'",'
        b'"seq":1,"subject":"auth_01"}'
    )
    first_hash = event_hash(first, 1, GENESIS_HASH)
    assert first_hash == "24116a1f39efc383302d484984c9e9586e64d76b1b5402de5ea4cee865eab4a4"
    second = EventContent(
        id=9,
        at_us=1781524801000000,
        kind="authorization.captured",
        actor="agent:procurement_bot",
        subject="auth_02",
        payload={"usd_micros": 25000000, "tx_hash": None, "note": "café"},
    )
    assert b'"payload":{"note":"caf\\u00e9","tx_hash":null' in canonical_json(
        hash_preimage(second, 2, first_hash)
    )
    second_hash = event_hash(second, 2, first_hash)
    assert second_hash == "e927a90afebd2870368f6b3c69699100e3c8c4937d1dfe3db3104eb2dc9df86a"
    assert checkpoint_message(2, second_hash, 1781524802000000, "0" * 32) == (
        b'{"at_us":1781524802000000,"context":"treasurer.audit.checkpoint.v1","hash":"'
        + second_hash.encode()
        + b'","key_id":"00000000000000000000000000000000","seq":2}'
    )


def test_link_chains_each_event_to_the_one_before() -> None:
    """seq 1..n, event 1 on the genesis hash, each prev_hash the previous hash."""
    assert [e.seq for e in CHAIN] == list(range(1, 13))
    assert CHAIN[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(CHAIN):
        assert after.prev_hash == before.hash
    assert all(e.computed_hash() == e.hash for e in CHAIN)
    more = link(None, contents(14))
    resumed = link(head_of(CHAIN[-1]), contents(14)[12:])
    assert [e.hash for e in resumed] == [e.hash for e in more[12:]]


def head_of(event: ChainEvent) -> ChainHead:
    return ChainHead(event.seq, event.hash)


def test_public_keys_parse_from_pem_and_hex() -> None:
    """--public-key takes the .pub PEM file or the 64 hex digits the export carries."""
    pem = SIGNER.public_key_pem().decode()
    assert public_key_from_text(pem) == SIGNER.public_key
    assert public_key_from_text(SIGNER.public_key.upper()) == SIGNER.public_key
    assert key_id_of(SIGNER.public_key) == SIGNER.key_id


# -- intact exports ---------------------------------------------------------------------------
def test_an_untouched_export_verifies() -> None:
    """Every event and checkpoint holds; signatures vouch for the whole chain."""
    report = verify(export_lines(CHAIN), SIGNER.public_key)
    assert report.ok, report
    assert (report.events, report.first_seq, report.last_seq) == (12, 1, 12)
    assert report.from_genesis
    assert report.checkpoints == 3
    assert report.signed_through == 12
    assert report.unsigned_events == 0
    assert report.head_hash == CHAIN[-1].hash


def test_an_empty_export_verifies() -> None:
    assert verify(export_lines([])).ok


def test_a_slice_is_anchored_at_its_first_event() -> None:
    """An export of seq 5..9 verifies on its own; its start is anchored, not genesis."""
    report = verify(export_lines(CHAIN[4:9]))
    assert report.ok, report
    assert not report.from_genesis
    assert (report.first_seq, report.last_seq) == (5, 9)


# -- tampering with events ---------------------------------------------------------------------
def test_an_edited_payload_is_named() -> None:
    lines = export_lines(CHAIN)
    index = event_at(lines, 7)
    lines[index] = edit(lines[index], payload={"allowed": True, "amount": "0"})
    report = verify(lines)
    assert not report.ok
    assert report.first_broken is not None
    assert (report.first_broken.problem, report.first_broken.seq) == ("altered", 7)
    assert report.first_broken.id == CHAIN[6].id
    assert "seq 7" in report.first_broken.message


def test_a_deleted_event_is_named() -> None:
    lines = export_lines(CHAIN)
    del lines[event_at(lines, 4)]
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("removed", 4)
    assert "seq 5" in broken.message and "seq 3" in broken.message


def test_two_swapped_events_are_named() -> None:
    lines = export_lines(CHAIN)
    a, b = event_at(lines, 8), event_at(lines, 9)
    lines[a], lines[b] = lines[b], lines[a]
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq, broken.id) == ("reordered", 8, CHAIN[7].id)


def test_an_event_moved_far_is_named() -> None:
    lines = export_lines(CHAIN)
    moved = lines.pop(event_at(lines, 3))
    lines.insert(event_at(lines, 10), moved)
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("reordered", 3)
    assert "moved" in broken.message


def test_an_inserted_duplicate_is_named() -> None:
    """A forged event that copies a seq and links correctly still collides with the real one."""
    lines = export_lines(CHAIN)
    index = event_at(lines, 6)
    fake = replace(CHAIN[5], id=999, payload={"forged": True})
    fake = replace(fake, hash=fake.computed_hash())
    lines.insert(index, event_line(fake))
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("inserted", 6)
    assert "id 999" in broken.message


def test_a_forged_event_with_its_hash_recomputed_breaks_the_next_link() -> None:
    lines = export_lines(CHAIN)
    index = event_at(lines, 5)
    forged = replace(CHAIN[4], payload={"allowed": True})
    lines[index] = event_line(replace(forged, hash=forged.computed_hash()))
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("unlinked", 6)
    assert "seq 5" in broken.message


def test_a_rewritten_tail_is_caught_by_its_checkpoint() -> None:
    """Rewrite event 7 and rehash every event after it: the chain is self-consistent, but the
    checkpoint at seq 10 signed the old hash, and the attacker cannot sign the new one."""
    forged = link(
        head_of(CHAIN[5]), [replace(_content(CHAIN[6]), payload={}), *map(_content, CHAIN[7:])]
    )
    lines = export_lines(CHAIN)
    for event in forged:
        lines[event_at(lines, event.seq)] = event_line(event)
    report = verify(lines, SIGNER.public_key)
    assert report.first_broken is None
    assert not report.ok
    first = report.checkpoint_problems[0]
    assert (first.problem, first.seq) == ("hash_mismatch", 10)
    assert "6..10" in first.message  # after the last good checkpoint (seq 5)
    assert report.signed_through == 5


def _content(event: ChainEvent) -> EventContent:
    return EventContent(
        event.id, event.at_us, event.kind, event.actor, event.subject, event.payload
    )


def test_a_cut_short_export_is_named() -> None:
    lines = export_lines(CHAIN)[:-4]
    broken = verify(lines).first_broken
    assert broken is not None and broken.problem == "truncated"


def test_removing_the_last_events_and_fixing_the_end_line_leaves_them_unsigned() -> None:
    """Without the trailing checkpoint, nothing proves the tail existed, and the report says
    that the events after the last checkpoint are vouched for by no signature."""
    lines = export_lines(CHAIN, every=4)
    keep = lines[: event_at(lines, 10) + 1]
    keep.append(end_line(ExportEnd(10, 2, 10)))
    report = verify(keep)
    assert report.ok
    assert report.signed_through == 8
    assert report.unsigned_events == 2


def test_a_malformed_line_is_named() -> None:
    lines = export_lines(CHAIN)
    lines[event_at(lines, 2)] = "{not json\n"
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.line) == ("malformed", 3)


def test_a_missing_first_event_of_a_whole_export_is_named() -> None:
    """The header says seq 1; an export that starts at seq 2 lost its first event."""
    lines = export_lines(CHAIN)
    del lines[event_at(lines, 1)]
    broken = verify(lines).first_broken
    assert broken is not None
    assert (broken.problem, broken.seq) == ("removed", 1)


# -- tampering with checkpoints ----------------------------------------------------------------
def test_a_checkpoint_with_a_wrong_signature_is_named() -> None:
    lines = export_lines(CHAIN)
    index = next(i for i, line in enumerate(lines) if '"checkpoint"' in line)
    signature = json.loads(lines[index])["signature"]
    flipped = ("00" if signature[:2] != "00" else "11") + signature[2:]
    lines[index] = edit(lines[index], signature=flipped)
    report = verify(lines)
    assert report.first_broken is None
    assert [(p.problem, p.seq) for p in report.checkpoint_problems] == [("bad_signature", 5)]
    assert not report.ok


def test_a_checkpoint_by_another_key_fails_when_the_key_is_pinned() -> None:
    lines = export_lines(CHAIN, signer=OTHER)
    assert verify(lines).ok
    report = verify(lines, SIGNER.public_key)
    assert not report.ok
    assert {p.problem for p in report.checkpoint_problems} == {"untrusted_key"}


def test_a_checkpoint_moved_away_from_its_event_is_named() -> None:
    lines = export_lines(CHAIN)
    index = next(i for i, line in enumerate(lines) if '"checkpoint"' in line)
    lines.insert(index - 1, lines.pop(index))
    report = verify(lines)
    assert [(p.problem, p.seq) for p in report.checkpoint_problems] == [("misplaced", 5)]


# -- properties --------------------------------------------------------------------------------
@st.composite
def tampered(draw: st.DrawFn) -> tuple[list[ChainEvent], str, int]:
    """A chain of 2-30 events and one tampering: edit, delete or swap with the next."""
    count = draw(st.integers(2, 30))
    chain = link(None, contents(count, start_id=draw(st.integers(1, 10_000))))
    op = draw(st.sampled_from(["edit", "delete", "swap"]))
    seq = draw(st.integers(1, count - 1 if op == "swap" else count))
    return chain, op, seq


@given(tampered())
def test_any_single_tampering_is_named_at_its_seq(case: tuple[list[ChainEvent], str, int]) -> None:
    """Whatever is edited, deleted or swapped, the first broken event is that seq."""
    chain, op, seq = case
    lines = export_lines(chain, every=1000)
    index = event_at(lines, seq)
    if op == "edit":
        lines[index] = edit(lines[index], actor="admin:mallory")
    elif op == "delete":
        del lines[index]
    else:
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    broken = verify(lines).first_broken
    assert broken is not None
    expected = {"edit": "altered", "delete": "removed", "swap": "reordered"}[op]
    if op == "delete" and seq == len(chain):
        expected = "truncated"  # the last event: only the end line (and checkpoint) knew it
    assert broken.problem == expected
    assert broken.seq == seq


@given(st.integers(0, 40), st.integers(1, 7))
def test_untouched_chains_of_any_length_verify(count: int, every: int) -> None:
    report = verify(export_lines(link(None, contents(count)), every=every))
    assert report.ok
    assert report.events == count


def test_the_streaming_verifier_reads_events_without_an_export() -> None:
    """verify_live feeds the same verifier from the database."""
    verifier = ChainVerifier(verify_ed25519, expect_first_seq=1)
    for event in CHAIN:
        verifier.event(event)
        if event.seq == 12:
            verifier.checkpoint(sign(event))
    report = verifier.finish()
    assert report.ok and report.signed_through == 12
