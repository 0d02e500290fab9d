"""What goes on the wire: the body of each format, the signature, the retry schedule.

**Bodies.** ``json`` (the default) is ``{"id", "type", "created_at", "data"}``, where ``id`` is
``evt_<audit seq>``, the same for every endpoint and every retry, so a receiver dedupes on it.
``slack`` is ``{"text": "..."}``, the shape Slack (and Mattermost, Discord's ``/slack``
endpoint, ...) incoming webhooks accept, with the notice's one-line summary. A body is rendered
once, when the delivery is created, and sent byte for byte on every attempt.

**Signature.** ``Treasurer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>``. Signing the timestamp with the body lets a receiver refuse replays of an
old delivery (compare ``t`` with its own clock); comparing in constant time stops timing
attacks. The format leaves room for a ``v2`` scheme next to ``v1`` during a rotation.

**Backoff.** Attempt *n* (from 1) failed → wait ``base * 2^(n-1)``, capped, then scaled by a
random factor in [0.5, 1.0] ("equal jitter"), so receivers coming back after an outage are not
hit by every sender at the same instant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from treasurer.service.notify_events import Notice

FORMATS = ("json", "slack")
SIGNATURE_HEADER = "Treasurer-Signature"
EVENT_HEADER = "Treasurer-Event"
DELIVERY_HEADER = "Treasurer-Delivery"
USER_AGENT = "Treasurer-Webhooks/1"


def event_id(seq: int) -> str:
    """The stable id of a notification: the audit event's place in the chain."""
    return f"evt_{seq}"


def render(notice: Notice, seq: int, at: datetime, fmt: str) -> str:
    """The body of one delivery, as the exact text that is signed and sent."""
    if fmt == "slack":
        return json.dumps({"text": notice.summary}, ensure_ascii=False, separators=(",", ":"))
    if fmt != "json":
        raise ValueError(f"unknown webhook format {fmt!r}")
    body = {
        "id": event_id(seq),
        "type": notice.type,
        "created_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": notice.data,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Treasurer-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: int | None = None, tolerance_s: int = 300
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` (what a receiver runs; see the docs).

    With ``now`` (unix seconds), a timestamp further than ``tolerance_s`` from it fails too.
    """
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if now is not None and abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


def headers(event_type: str, delivery_id: str, signed: str) -> Mapping[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: signed,
    }


@dataclass(frozen=True, slots=True)
class Backoff:
    """The retry schedule: ``base_s`` doubling per failed attempt up to ``cap_s``; a delivery
    that failed ``max_attempts`` times is dead (an admin may retry it)."""

    base_s: float = 5.0
    cap_s: float = 3600.0
    max_attempts: int = 12

    def delay_s(self, attempts: int, rand: float) -> float:
        """Seconds to wait after the ``attempts``-th failure; ``rand`` in [0, 1)."""
        raw = min(self.cap_s, self.base_s * float(2 ** max(0, attempts - 1)))
        return raw * (0.5 + rand / 2)
