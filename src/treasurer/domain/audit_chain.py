"""The audit hash chain: canonical encoding, event hashes, checkpoints and export lines.

Every audit event, once sealed, carries ``seq`` (1, 2, 3 … without gaps), ``prev_hash`` (the
hash of event ``seq - 1``, or :data:`GENESIS_HASH` for event 1) and ``hash``, the SHA-256 of
the canonical JSON of the event with both. Changing, removing, inserting or reordering a
sealed event therefore changes some hash that a later event (or a signed checkpoint) pins.

The encoding is specified byte for byte in ``docs/audit.md`` so that an auditor can
re-implement verification in any language; :func:`canonical_json` is that specification in
code. Pure: no I/O, no clock; signatures are checked by a function the caller passes in
(:mod:`treasurer.domain.audit_verify`), so this package needs no cryptography library.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: ``prev_hash`` of event 1: there is nothing before it.
GENESIS_HASH = "0" * 64
#: The first line of an export names its format, so a reader can refuse a file it does not know.
EXPORT_FORMAT = "treasurer.audit.export"
EXPORT_VERSION = 1
#: Signed into every checkpoint message, so a checkpoint signature can never be replayed as a
#: signature over anything else (domain separation).
CHECKPOINT_CONTEXT = "treasurer.audit.checkpoint.v1"

_HEX = frozenset("0123456789abcdef")


def canonical_json(value: object) -> bytes:
    """The one byte string a JSON value hashes as.

    Object keys sorted by code point, no whitespace (``,`` and ``:`` separators), pure ASCII
    (every character outside 0x20-0x7E, and ``"`` and ``\\``, escaped the way Python's
    ``json`` module escapes them: ``\\n``-style short escapes where JSON has one, else
    ``\\u00XX`` with lowercase hex, astral characters as UTF-16 surrogate pairs), integers in
    plain decimal. NaN and infinities are refused: they are not JSON.
    """
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_hash(text: object) -> bool:
    """A lowercase hex SHA-256 (64 characters)."""
    return isinstance(text, str) and len(text) == 64 and set(text) <= _HEX


@dataclass(frozen=True, slots=True)
class EventContent:
    """An audit event as written, before it is sealed (``payload`` is parsed JSON)."""

    id: int
    at_us: int
    kind: str
    actor: str
    subject: str
    payload: object


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """A sealed audit event: its content, its place in the chain and its hash."""

    seq: int
    id: int
    at_us: int
    kind: str
    actor: str
    subject: str
    payload: object
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """The hash the event's content and ``prev_hash`` give (equal to ``hash`` if intact)."""
        return event_hash(
            EventContent(self.id, self.at_us, self.kind, self.actor, self.subject, self.payload),
            self.seq,
            self.prev_hash,
        )


def hash_preimage(content: EventContent, seq: int, prev_hash: str) -> dict[str, object]:
    """The object whose canonical JSON is hashed: eight keys, payload embedded as JSON."""
    return {
        "seq": seq,
        "id": content.id,
        "at_us": content.at_us,
        "kind": content.kind,
        "actor": content.actor,
        "subject": content.subject,
        "payload": content.payload,
        "prev_hash": prev_hash,
    }


def event_hash(content: EventContent, seq: int, prev_hash: str) -> str:
    """SHA-256 (lowercase hex) of the canonical JSON of :func:`hash_preimage`."""
    return sha256_hex(canonical_json(hash_preimage(content, seq, prev_hash)))


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last sealed event: where the next one links."""

    seq: int
    hash: str


def link(head: ChainHead | None, events: Sequence[EventContent]) -> list[ChainEvent]:
    """Seal ``events`` in the given order after ``head`` (None: the chain is empty)."""
    seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    sealed: list[ChainEvent] = []
    for content in events:
        seq += 1
        digest = event_hash(content, seq, prev)
        sealed.append(
            ChainEvent(
                seq,
                content.id,
                content.at_us,
                content.kind,
                content.actor,
                content.subject,
                content.payload,
                prev,
                digest,
            )
        )
        prev = digest
    return sealed


# -- checkpoints --------------------------------------------------------------------------------
def key_id_of(public_key_hex: str) -> str:
    """A short, stable name of an Ed25519 public key: the first 16 bytes of the SHA-256 of
    its 32 raw bytes, in hex (32 characters)."""
    return sha256_hex(bytes.fromhex(public_key_hex))[:32]


def checkpoint_message(seq: int, chain_hash: str, at_us: int, key_id: str) -> bytes:
    """The bytes a checkpoint signs: canonical JSON of the context, seq, hash, time, key id."""
    return canonical_json(
        {
            "context": CHECKPOINT_CONTEXT,
            "seq": seq,
            "hash": chain_hash,
            "at_us": at_us,
            "key_id": key_id,
        }
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "the chain up to ``seq`` hashes to ``hash``" (Ed25519, hex fields)."""

    seq: int
    hash: str
    at_us: int
    key_id: str
    public_key: str
    signature: str

    def message(self) -> bytes:
        return checkpoint_message(self.seq, self.hash, self.at_us, self.key_id)


# -- export lines -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExportHeader:
    """The first line: what the export claims to hold (informational, not signed)."""

    first_seq: int | None
    last_seq: int | None
    since_us: int | None
    until_us: int | None
    exported_at_us: int
    #: Set when the export starts right after a retention purge: the ``seq`` of the signed
    #: anchor line that must come before the first event.
    anchor_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ExportAnchor:
    """Where a purged chain starts: the signed checkpoint of the last purged event. The first
    remaining event must link to its hash, and its signature must verify."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class ExportEnd:
    """The last line: how many events there were (catches a file cut short by accident)."""

    events: int
    checkpoints: int
    last_seq: int | None


ExportRecord = ExportHeader | ExportAnchor | ChainEvent | Checkpoint | ExportEnd


class LineError(ValueError):
    """A line of an export that is not a record of the format."""


def header_line(header: ExportHeader) -> str:
    fields: dict[str, object] = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "first_seq": header.first_seq,
        "last_seq": header.last_seq,
        "since_us": header.since_us,
        "until_us": header.until_us,
        "exported_at_us": header.exported_at_us,
    }
    if header.anchor_seq is not None:  # only after a purge: other exports stay as they were
        fields["anchor_seq"] = header.anchor_seq
    return _line(fields)


def anchor_line(anchor: ExportAnchor) -> str:
    """The anchor: the checkpoint's fields under ``"type": "anchor"``."""
    return _line(_checkpoint_fields(anchor.checkpoint) | {"type": "anchor"})


def event_line(event: ChainEvent) -> str:
    return _line(
        {"type": "event", **hash_preimage(_content(event), event.seq, event.prev_hash)}
        | {"hash": event.hash}
    )


def checkpoint_line(checkpoint: Checkpoint) -> str:
    return _line(_checkpoint_fields(checkpoint))


def _checkpoint_fields(checkpoint: Checkpoint) -> dict[str, object]:
    return {
        "type": "checkpoint",
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "at_us": checkpoint.at_us,
        "key_id": checkpoint.key_id,
        "public_key": checkpoint.public_key,
        "signature": checkpoint.signature,
    }


def end_line(end: ExportEnd) -> str:
    return _line(
        {
            "type": "end",
            "events": end.events,
            "checkpoints": end.checkpoints,
            "last_seq": end.last_seq,
        }
    )


def _line(record: Mapping[str, object]) -> str:
    return canonical_json(record).decode("ascii") + "\n"


def _content(event: ChainEvent) -> EventContent:
    return EventContent(
        event.id, event.at_us, event.kind, event.actor, event.subject, event.payload
    )


def parse_line(text: str) -> ExportRecord:
    """One line of an export as its record; :class:`LineError` says what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(f"not JSON ({exc.msg})") from None
    except RecursionError:
        raise LineError("nested too deeply") from None
    if not isinstance(data, dict):
        raise LineError("not a JSON object")
    kind = data.get("type")
    if kind == "event":
        return ChainEvent(
            seq=_int(data, "seq"),
            id=_int(data, "id"),
            at_us=_int(data, "at_us"),
            kind=_str(data, "kind"),
            actor=_str(data, "actor"),
            subject=_str(data, "subject"),
            payload=_field(data, "payload"),
            prev_hash=_hash(data, "prev_hash"),
            hash=_hash(data, "hash"),
        )
    if kind == "checkpoint":
        return _parse_checkpoint(data)
    if kind == "anchor":
        return ExportAnchor(_parse_checkpoint(data))
    if kind == "header":
        if data.get("format") != EXPORT_FORMAT or data.get("version") != EXPORT_VERSION:
            raise LineError(f"not a {EXPORT_FORMAT} version {EXPORT_VERSION} export")
        return ExportHeader(
            first_seq=_opt_int(data, "first_seq"),
            last_seq=_opt_int(data, "last_seq"),
            since_us=_opt_int(data, "since_us"),
            until_us=_opt_int(data, "until_us"),
            exported_at_us=_int(data, "exported_at_us"),
            anchor_seq=_opt_int(data, "anchor_seq"),
        )
    if kind == "end":
        return ExportEnd(
            events=_int(data, "events"),
            checkpoints=_int(data, "checkpoints"),
            last_seq=_opt_int(data, "last_seq"),
        )
    raise LineError(f"unknown record type {kind!r}")


def _parse_checkpoint(data: Mapping[str, object]) -> Checkpoint:
    return Checkpoint(
        seq=_int(data, "seq"),
        hash=_hash(data, "hash"),
        at_us=_int(data, "at_us"),
        key_id=_str(data, "key_id"),
        public_key=_hex(data, "public_key", 64),
        signature=_hex(data, "signature", 128),
    )


def _field(data: Mapping[str, object], name: str) -> object:
    if name not in data:
        raise LineError(f"missing field {name!r}")
    return data[name]


def _int(data: Mapping[str, object], name: str) -> int:
    value = _field(data, name)
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise LineError(f"{name!r} is not an integer")
    return value


def _opt_int(data: Mapping[str, object], name: str) -> int | None:
    return None if data.get(name) is None else _int(data, name)


def _str(data: Mapping[str, object], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str):
        raise LineError(f"{name!r} is not a string")
    return value


def _hash(data: Mapping[str, object], name: str) -> str:
    return _hex(data, name, 64)


def _hex(data: Mapping[str, object], name: str, length: int) -> str:
    value = _str(data, name)
    if len(value) != length or not set(value) <= _HEX:
        raise LineError(f"{name!r} is not {length} lowercase hex digits")
    return value
