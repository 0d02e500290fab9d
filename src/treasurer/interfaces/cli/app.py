"""The ``treasurer`` commands: init, serve, apply, export, check, report, price.

Commands act on a backend chosen once per invocation: the embedded database of the data
directory (``TREASURER_DATA_DIR`` / ``TREASURER_DATABASE_URL``). The backend factory is
injected by the composition root, so tests can pass their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from treasurer.domain.errors import InvalidRequest, TreasurerError
from treasurer.domain.money import format_usd
from treasurer.domain.outcome import Decision
from treasurer.domain.windows import quarter_range
from treasurer.interfaces.cli import output
from treasurer.service.admin import ApplyResult
from treasurer.service.orgfile import render_plan
from treasurer.service.ports import SpendRow


class Backend(Protocol):
    """What the CLI needs from the governance API (embedded or, later, remote)."""

    def apply(
        self,
        org_file: Any,
        *,
        source: str | None = None,
        actor: str = "admin",
        dry_run: bool = False,
    ) -> ApplyResult: ...

    def export(self) -> dict[str, object]: ...

    def check(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object,
        asset: str | None,
        recipient: str | None = None,
    ) -> Decision: ...

    def spend(
        self,
        *,
        by: str = "agent",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[SpendRow]: ...

    def set_price(self, asset: str, price_usd: object, *, actor: str = "admin") -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wiring:
    """Injected by bootstrap: how to open a backend, load/dump org files, init and serve."""

    open_backend: Callable[[], Backend]
    load_org_file: Callable[[Path], dict[str, Any]]
    dump_org_file: Callable[[dict[str, Any]], str]
    init: Callable[[bool], list[str]]
    serve: Callable[[], None]


def _run(action: Callable[[], int]) -> None:
    try:
        code = action()
    except TreasurerError as error:
        code = output.fail(error, _hint(error))
    raise typer.Exit(code)


def _hint(error: TreasurerError) -> str | None:
    return {
        "org_not_configured": "apply an org file first: treasurer apply -f org.yaml",
        "org_file_invalid": "fix the file at the path shown, then run apply again",
        "policy_invalid": "fix the field named above; see docs/policies.md for every type",
        "not_found": "list what exists with: treasurer export",
    }.get(error.code)


def build_cli(wiring: Wiring) -> typer.Typer:
    """The command tree, bound to ``wiring``."""
    cli = typer.Typer(
        name="treasurer",
        help="Governance for the money AI agents spend.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @cli.command()
    def init(
        demo: Annotated[bool, typer.Option(help="Also apply the demo organization.")] = False,
    ) -> None:
        """Create the data directory, migrate the database and write the first admin key."""
        for line in wiring.init(demo):
            output.console.print(line, highlight=False)

    @cli.command()
    def serve() -> None:
        """Run the HTTP API (default http://127.0.0.1:8420)."""
        wiring.serve()

    @cli.command()
    def apply(
        file: Annotated[Path, typer.Option("-f", "--file", help="The org file (YAML).")],
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
        dry_run: Annotated[bool, typer.Option(help="Only show the plan.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Show what an org file changes (plan), then apply it. Re-applying is a no-op."""
        _run(lambda: _apply(wiring, file, yes=yes, dry_run=dry_run, as_json=as_json))

    @cli.command()
    def export(
        out: Annotated[Path | None, typer.Option("-o", "--out", help="Write to a file.")] = None,
    ) -> None:
        """Write the current org as an org file (apply of it is a no-op)."""
        _run(lambda: _export(wiring, out))

    @cli.command()
    def check(
        agent: Annotated[str, typer.Option(help="Agent id.")],
        wallet: Annotated[str, typer.Option(help="Wallet id or chain:address.")],
        amount: Annotated[str, typer.Option(help="Amount in token units, e.g. 499.00.")],
        asset: Annotated[str, typer.Option(help="Asset id or symbol, e.g. USDC.")],
        recipient: Annotated[str | None, typer.Option(help="Destination address.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Dry run one spend: the decision, its reasons and every budget's headroom."""
        _run(
            lambda: _check(
                wiring,
                {
                    "agent": agent,
                    "wallet": wallet,
                    "amount": amount,
                    "asset": asset,
                    "recipient": recipient,
                },
                as_json,
            )
        )

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
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Spend (captured and still reserved) per group for a time range."""
        _run(lambda: _report(wiring, by, quarter, since, until, as_json))

    @cli.command("set-price")
    def set_price(
        asset: Annotated[str, typer.Argument(help="Asset id, e.g. ethereum:ETH.")],
        usd: Annotated[str, typer.Argument(help="USD per whole token, e.g. 3150.25.")],
    ) -> None:
        """Set an asset's manual USD price (it goes stale after the asset's max age)."""

        def action() -> int:
            backend = wiring.open_backend()
            try:
                backend.set_price(asset, usd)
            finally:
                backend.close()
            output.console.print(f"{asset} = ${usd}")
            return output.EXIT_OK

        _run(action)

    return cli


def _apply(wiring: Wiring, file: Path, *, yes: bool, dry_run: bool, as_json: bool) -> int:
    data = wiring.load_org_file(file)
    backend = wiring.open_backend()
    try:
        preview = backend.apply(data, source=str(file), dry_run=True)
        lines = render_plan(preview.plan, detail=True)
        if as_json:
            output.emit_json(
                {
                    "changes": [c.summary() for c in preview.plan.changes],
                    "counts": preview.plan.counts(),
                }
            )
        else:
            for line in lines:
                output.console.print(line, highlight=False)
        if dry_run or preview.plan.empty:
            return output.EXIT_OK
        if not yes and not typer.confirm("Apply this plan?", default=False):
            output.errors.print("Nothing applied.")
            return output.EXIT_CONFLICT
        result = backend.apply(data, source=str(file))
        if not as_json:
            output.console.print(f"Applied. Config version {result.config_version}.")
        return output.EXIT_OK
    finally:
        backend.close()


def _export(wiring: Wiring, out: Path | None) -> int:
    backend = wiring.open_backend()
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


def _check(wiring: Wiring, fields: dict[str, Any], as_json: bool) -> int:
    backend = wiring.open_backend()
    try:
        decision = backend.check(**fields)
    finally:
        backend.close()
    if as_json:
        output.emit_json(decision.as_dict())
    else:
        verdict = "[green]ALLOWED[/]" if decision.allowed else "[red]DENIED[/]"
        output.console.print(f"{verdict} tier={decision.tier.value}")
        for reason in decision.reasons:
            output.console.print(f"  {reason.code}: {reason.message}", highlight=False)
        output.table(
            "Budgets",
            ["scope", "window", "limit", "used", "this spend", "remaining after"],
            [
                [
                    h.scope,
                    h.window,
                    format_usd(h.limit_micros) if h.limit_micros else "-",
                    format_usd(h.used_micros),
                    format_usd(h.requested_micros),
                    format_usd(h.remaining_after_micros)
                    if h.remaining_after_micros is not None
                    else "-",
                ]
                for h in decision.headroom
            ],
        )
    return output.EXIT_OK if decision.allowed else output.EXIT_DENIED


def _parse_day(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(
            f"--{field}: {text!r} is not a date like 2026-04-01", field=field
        ) from None


def _report(
    wiring: Wiring,
    by: str,
    quarter: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> int:
    start, end = _parse_day(since, "since"), _parse_day(until, "until")
    if quarter is not None:
        try:
            first, last = quarter_range(quarter)
        except ValueError as exc:
            raise InvalidRequest(f"--quarter: {exc}", field="quarter") from None
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC)
    backend = wiring.open_backend()
    try:
        rows = backend.spend(by=by, since=start, until=end)
    finally:
        backend.close()
    if as_json:
        output.emit_json(
            [
                {
                    "group": r.group,
                    "captured_usd_micros": r.captured_usd_micros,
                    "pending_usd_micros": r.pending_usd_micros,
                    "captured_count": r.captured_count,
                    "pending_count": r.pending_count,
                }
                for r in rows
            ]
        )
        return output.EXIT_OK
    output.table(
        f"Spend by {by}",
        [by, "captured", "reserved", "captured #", "reserved #"],
        [
            [
                r.group,
                format_usd(r.captured_usd_micros),
                format_usd(r.pending_usd_micros),
                r.captured_count,
                r.pending_count,
            ]
            for r in rows
        ],
    )
    total = sum(r.captured_usd_micros for r in rows)
    output.console.print(f"Total captured: {format_usd(total)}")
    return output.EXIT_OK
