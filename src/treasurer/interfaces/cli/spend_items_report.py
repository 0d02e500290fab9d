"""``treasurer report --itemized``: the auditor's question in one command.

Every authorization the spend totals count (captured, or still reserving), read page by page
from the local database or a server, each with the decision that allowed it, and then the
totals, summed here from the items in exact decimals. They equal what ``treasurer report``
shows for the same range, because the items are exactly the rows those totals sum.

CSV goes to stdout one page at a time (only the rows, so the file opens as a clean table);
its totals go to stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.output import usd
from treasurer.interfaces.cli.wiring import Backend
from treasurer.interfaces.csv_text import spend_items_csv
from treasurer.wire import AuthorizationOut

#: Items per request (the API's largest page).
PAGE_SIZE = 500
ITEM_TABLE_COLUMNS = (
    "created",
    "id",
    "agent",
    "wallet",
    "amount",
    "USD",
    "state",
    "tier",
    "reasons",
    "policies",
)


@dataclass
class Totals:
    """Running sums over the items, as the spend report counts them."""

    captured_usd: Decimal = field(default=Decimal(0))
    reserved_usd: Decimal = field(default=Decimal(0))
    captured_count: int = 0
    reserved_count: int = 0

    def add(self, item: AuthorizationOut) -> None:
        if item.state == "captured":
            self.captured_usd += Decimal(item.captured_usd or "0")
            self.captured_count += 1
        else:
            self.reserved_usd += Decimal(item.value_usd)
            self.reserved_count += 1

    def as_json(self) -> dict[str, object]:
        return {
            "captured_usd": str(self.captured_usd),
            "reserved_usd": str(self.reserved_usd),
            "captured_count": self.captured_count,
            "reserved_count": self.reserved_count,
        }

    def lines(self) -> list[str]:
        return [
            f"Total captured: {usd(str(self.captured_usd))} ({self.captured_count} spends)",
            f"Total reserved: {usd(str(self.reserved_usd))} ({self.reserved_count} spends)",
        ]


def check_format(fmt: str) -> None:
    """The report formats (before opening the database or calling a server)."""
    if fmt not in ("table", "json", "csv"):
        raise InvalidRequest(f"--format: {fmt!r} must be table, json or csv", field="format")


def pages(
    backend: Backend, since: datetime | None, until: datetime | None
) -> Iterator[list[AuthorizationOut]]:
    """Every page of spend items, following the cursor to the end."""
    after: str | None = None
    while True:
        items, after = backend.spend_items(since=since, until=until, limit=PAGE_SIZE, after=after)
        yield items
        if after is None:
            return


def show_itemized(
    backend: Backend, since: datetime | None, until: datetime | None, fmt: str
) -> int:
    """Print every item in ``fmt`` (table, json or csv), then the totals."""
    check_format(fmt)
    totals = Totals()
    if fmt == "csv":
        for number, page in enumerate(pages(backend, since, until)):
            output.console.out(spend_items_csv(page, header=number == 0), end="", highlight=False)
            for item in page:
                totals.add(item)
        for line in totals.lines():
            output.errors.print(line, highlight=False)
        return output.EXIT_OK
    items = [item for page in pages(backend, since, until) for item in page]
    for item in items:
        totals.add(item)
    if fmt == "json":
        output.emit_json(
            {
                "since": None if since is None else since.isoformat(),
                "until": None if until is None else until.isoformat(),
                "items": [item.model_dump(mode="json") for item in items],
                "totals": totals.as_json(),
            }
        )
        return output.EXIT_OK
    output.table("Spend items", ITEM_TABLE_COLUMNS, [_row(item) for item in items])
    for line in totals.lines():
        output.console.print(line, highlight=False)
    return output.EXIT_OK


def _row(item: AuthorizationOut) -> list[str]:
    captured = item.state == "captured"
    decision = item.decision
    return [
        item.created_at.isoformat(),
        item.id,
        item.agent,
        item.wallet,
        f"{item.captured_amount if captured else item.amount} {item.asset or ''}".strip(),
        usd(item.captured_usd if captured else item.value_usd),
        item.state,
        item.tier,
        ", ".join(reason.code for reason in decision.reasons) or "-",
        ", ".join(f"{p}@{v}" for p, v in sorted(decision.policy_versions.items())) or "-",
    ]
