"""CSV renderings of spend reports and audit exports, shared by the server and the CLI.

CSV is for spreadsheets and finance tools, so every money value is an exact decimal string
(never a float a spreadsheet might round on the way in). For the audit log, CSV is a *view*:
one row per event, with the hash it was sealed with, but without the previous hash, the
checkpoints and their signatures, so it cannot be verified. JSON Lines
(``treasurer audit export``) stays the verifiable format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from treasurer.wire import AuthorizationOut, SpendRowOut

SPEND_COLUMNS = ("group", "captured_usd", "pending_usd", "captured_count", "pending_count")
#: One row per spend item: what was spent (exact decimals), and why it was allowed.
SPEND_ITEM_COLUMNS = (
    "id",
    "created_at",
    "agent",
    "wallet",
    "chain",
    "asset",
    "amount",
    "captured_amount",
    "value_usd",
    "captured_usd",
    "state",
    "tier",
    "tx_hash",
    "reasons",
    "policies",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AUDIT_COLUMNS = ("seq", "id", "at", "kind", "actor", "subject", "hash", "payload")


def spend_csv(by: str, rows: Sequence[SpendRowOut]) -> str:
    """One line per group; the first column is named after the grouping (``agent`` ...).

    Captured token amounts follow as one ``captured:<asset>`` column per asset seen, in token
    units (empty where a group spent none of that asset)."""
    assets = sorted({asset for row in rows for asset in row.amounts})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([by, *SPEND_COLUMNS[1:], *(f"captured:{a}" for a in assets)])
    for row in rows:
        writer.writerow(
            [
                row.group,
                row.captured_usd,
                row.pending_usd,
                row.captured_count,
                row.pending_count,
                *(row.amounts.get(a, "") for a in assets),
            ]
        )
    return buffer.getvalue()


def spend_items_csv(items: Sequence[AuthorizationOut], *, header: bool = True) -> str:
    """One line per authorization counted as spend. ``reasons``: the decision's reason codes;
    ``policies``: ``id@version`` of every policy that decided it; both ``;``-separated.
    ``header=False`` continues a CSV across pages."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(SPEND_ITEM_COLUMNS)
    for item in items:
        decision = item.decision
        writer.writerow(
            [
                item.id,
                item.created_at.isoformat(),
                item.agent,
                item.wallet,
                item.chain or "",
                item.asset or "",
                item.amount,
                item.captured_amount or "",
                item.value_usd,
                item.captured_usd or "",
                item.state,
                item.tier,
                item.tx_hash or "",
                ";".join(reason.code for reason in decision.reasons),
                ";".join(f"{p}@{v}" for p, v in sorted(decision.policy_versions.items())),
            ]
        )
    return buffer.getvalue()


class Sink(Protocol):
    def write(self, text: str, /) -> object: ...


class AuditCsv:
    """A text sink for :meth:`~treasurer.service.audit.AuditTrail.export` that turns its JSON
    Lines into CSV: a header, then one row per event (checkpoint and frame lines dropped)."""

    def __init__(self, out: Sink) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(AUDIT_COLUMNS)

    def write(self, text: str, /) -> int:
        for line in text.splitlines():
            record = json.loads(line)
            if record.get("type") == "event":
                self._writer.writerow(_event_row(record))
        return len(text)


def _event_row(record: dict[str, object]) -> list[object]:
    at_us = record["at_us"]
    assert isinstance(at_us, int)
    at = (EPOCH + timedelta(microseconds=at_us)).isoformat()
    payload = json.dumps(record["payload"], sort_keys=True, separators=(",", ":"))
    return [
        record["seq"],
        record["id"],
        at,
        record["kind"],
        record["actor"],
        record["subject"],
        record["hash"],
        payload,
    ]
