"""``apply``, ``export``, ``check``, ``report`` and ``set-price``: local or against a server.

Each command opens a :class:`~treasurer.interfaces.cli.wiring.Backend` (the server with
``--url``, else the local database) and prints its wire-shaped answer, so both ways print the
same tables and the same ``--json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from treasurer.domain.errors import InvalidRequest
from treasurer.domain.windows import quarter_range
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.output import usd
from treasurer.interfaces.cli.remote import (
    JsonOpt,
    KeyFileOpt,
    KeyOpt,
    Target,
    UrlOpt,
    open_backend,
    run,
)
from treasurer.interfaces.cli.spend_items_report import check_format, show_itemized
from treasurer.interfaces.cli.wiring import Wiring
from treasurer.interfaces.csv_text import spend_csv
from treasurer.wire import DecisionOut, PlanOut, SpendRowOut


def plan_lines(plan: PlanOut) -> list[str]:
    """The server's plan lines, each update followed by its fields as ``old -> new``."""
    lines: list[str] = []
    for change, line in zip(plan.changes, plan.summary, strict=False):
        lines.append(line)
        if change.action == "update":
            before, after = change.before or {}, change.after or {}
            lines.extend(
                f"    {name}: {_compact(before.get(name))} -> {_compact(after.get(name))}"
                for name in change.fields
            )
    lines.extend(plan.summary[len(plan.changes) :])
    return lines


def _compact(value: object) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


_SIGN = {"create": "+", "update": "~", "delete": "-"}


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the commands to ``cli``."""

    @cli.command()
    def apply(
        file: Annotated[Path, typer.Option("-f", "--file", help="The org file (YAML).")],
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
        dry_run: Annotated[bool, typer.Option(help="Only show the plan.")] = False,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Show what an org file changes (plan), then apply it. Re-applying is a no-op."""
        target = Target(url, key, key_file)
        run(wiring, target, lambda: _apply(wiring, target, file, yes, dry_run, as_json))

    @cli.command()
    def export(
        out: Annotated[Path | None, typer.Option("-o", "--out", help="Write to a file.")] = None,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Write the current org as an org file (apply of it is a no-op)."""
        target = Target(url, key, key_file)
        run(wiring, target, lambda: _export(wiring, target, out))

    @cli.command()
    def check(
        agent: Annotated[str, typer.Option(help="Agent id.")],
        wallet: Annotated[str, typer.Option(help="Wallet id or chain:address.")],
        amount: Annotated[str, typer.Option(help="Amount in token units, e.g. 499.00.")],
        asset: Annotated[str, typer.Option(help="Asset id or symbol, e.g. USDC.")],
        recipient: Annotated[str | None, typer.Option(help="Destination address.")] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Dry run one spend: the decision, its reasons and every budget's headroom.
        Exits 1 when the spend would be denied."""
        target = Target(url, key, key_file)

        def action() -> int:
            backend = open_backend(wiring, target)
            try:
                decision = backend.check(
                    agent=agent, wallet=wallet, amount=amount, asset=asset, recipient=recipient
                )
            finally:
                backend.close()
            show_decision(decision, as_json)
            return output.EXIT_OK if decision.allowed else output.EXIT_DENIED

        run(wiring, target, action)

    @cli.command()
    def report(
        by: Annotated[
            str, typer.Option(help="org|department|agent|wallet|chain|asset|vendor")
        ] = "agent",
        quarter: Annotated[
            str | None, typer.Option(help="A calendar quarter, e.g. 2026Q2.")
        ] = None,
        since: Annotated[str | None, typer.Option(help="Start date (YYYY-MM-DD, UTC).")] = None,
        until: Annotated[str | None, typer.Option(help="End date, exclusive (YYYY-MM-DD).")] = None,
        itemized: Annotated[
            bool,
            typer.Option(
                "--itemized",
                help="Every spend of the range, one per line, with why it was allowed; "
                "then the totals.",
            ),
        ] = False,
        as_json: JsonOpt = False,
        fmt: Annotated[
            str, typer.Option("--format", help="table|json|csv (csv: exact decimal USD).")
        ] = "table",
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Spend (captured and still reserved) per group for a time range; with --itemized,
        each spend and the decision that allowed it."""
        target = Target(url, key, key_file)

        def action() -> int:
            check_format(fmt)
            start, end = parse_range(quarter, since, until)
            backend = open_backend(wiring, target)
            try:
                if itemized:
                    return show_itemized(backend, start, end, "json" if as_json else fmt)
                rows = backend.spend(by=by, since=start, until=end)
            finally:
                backend.close()
            if fmt == "csv":
                output.console.out(spend_csv(by, rows), end="", highlight=False)
                return output.EXIT_OK
            _show_spend(by, rows, as_json or fmt == "json")
            return output.EXIT_OK

        run(wiring, target, action)

    @cli.command("set-price")
    def set_price(
        asset: Annotated[str, typer.Argument(help="Asset id, e.g. ethereum:ETH.")],
        price: Annotated[str, typer.Argument(help="USD per whole token, e.g. 3150.25.")],
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Set an asset's manual USD price (it goes stale after the asset's max age)."""
        target = Target(url, key, key_file)

        def action() -> int:
            backend = open_backend(wiring, target)
            try:
                quote = backend.set_price(asset, price)
            finally:
                backend.close()
            output.console.print(f"{quote.asset} = {usd(quote.price_usd)}", highlight=False)
            return output.EXIT_OK

        run(wiring, target, action)


def _apply(
    wiring: Wiring, target: Target, file: Path, yes: bool, dry_run: bool, as_json: bool
) -> int:
    data = wiring.load_org_file(file)
    backend = open_backend(wiring, target)
    try:
        preview = backend.apply(data, source=str(file), dry_run=True)
        if not as_json:
            for line in plan_lines(preview):
                output.console.print(line, highlight=False)
        empty = not preview.changes
        if not (dry_run or empty) and not yes and not typer.confirm("Apply this plan?"):
            output.errors.print("Nothing applied.")
            return output.EXIT_CONFLICT
        result = preview if dry_run or empty else backend.apply(data, source=str(file))
    finally:
        backend.close()
    if as_json:
        output.emit_json(
            {
                "changes": [f"{_SIGN[c.action]} {c.kind} {c.id}" for c in preview.changes],
                "counts": preview.counts,
                "applied": result.applied,
                "config_version": result.config_version,
            }
        )
    elif result.applied:
        output.console.print(f"Applied. Config version {result.config_version}.")
    return output.EXIT_OK


def _export(wiring: Wiring, target: Target, out: Path | None) -> int:
    backend = open_backend(wiring, target)
    try:
        text = wiring.dump_org_file(backend.export())
    finally:
        backend.close()
    if out is None:
        output.console.out(text, highlight=False)
    else:
        out.write_text(text, encoding="utf-8")
        output.errors.print(f"Wrote {out}")
    return output.EXIT_OK


def show_decision(decision: DecisionOut, as_json: bool) -> None:
    if as_json:
        output.emit_json(decision.model_dump(mode="json"))
        return
    verdict = "[green]ALLOWED[/]" if decision.allowed else "[red]DENIED[/]"
    output.console.print(f"{verdict} tier={decision.tier}")
    for reason in decision.reasons:
        output.console.print(f"  {reason.code}: {reason.message}", highlight=False)
    output.table(
        "Budgets",
        ["scope", "window", "limit", "used", "this spend", "remaining after"],
        [
            [
                b.scope,
                b.window,
                *map(usd, (b.limit_usd, b.used_usd, b.requested_usd)),
                usd(b.remaining_usd),
            ]
            for b in decision.budgets
        ],
    )


def _parse_day(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(
            f"--{field}: {text!r} is not a date like 2026-04-01", field=field
        ) from None


def parse_range(
    quarter: str | None, since: str | None, until: str | None
) -> tuple[datetime | None, datetime | None]:
    """The report's [start, end) in UTC, from ``--quarter`` or ``--since``/``--until``."""
    if quarter is None:
        return _parse_day(since, "since"), _parse_day(until, "until")
    try:
        first, last = quarter_range(quarter)
    except ValueError as exc:
        raise InvalidRequest(f"--quarter: {exc}", field="quarter") from None
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC),
    )


def _show_spend(by: str, rows: list[SpendRowOut], as_json: bool) -> None:
    if as_json:
        output.emit_json([row.model_dump(mode="json") for row in rows])
        return
    output.table(
        f"Spend by {by}",
        [by, "captured", "reserved", "captured #", "reserved #"],
        [
            [r.group, usd(r.captured_usd), usd(r.pending_usd), r.captured_count, r.pending_count]
            for r in rows
        ],
    )
    total = sum((Decimal(r.captured_usd) for r in rows), Decimal(0))
    output.console.print(f"Total captured: {usd(str(total))}")
