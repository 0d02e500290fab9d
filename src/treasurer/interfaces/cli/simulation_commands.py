"""``backtest``: replay recorded decisions against a draft org file, locally or on a server.

Nothing is written either way, so it is safe to run against production with an auditor key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.core_commands import parse_range
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
from treasurer.interfaces.cli.wiring import Wiring
from treasurer.wire import BacktestOut


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the commands to ``cli``."""

    @cli.command()
    def backtest(
        file: Annotated[Path, typer.Option("-f", "--file", help="The draft org file (YAML).")],
        quarter: Annotated[
            str | None, typer.Option(help="A calendar quarter, e.g. 2026Q2 (UTC).")
        ] = None,
        since: Annotated[str | None, typer.Option(help="Start date (YYYY-MM-DD, UTC).")] = None,
        until: Annotated[str | None, typer.Option(help="End date, exclusive (YYYY-MM-DD).")] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Which recorded decisions a draft org file would have changed. Writes nothing."""
        target = Target(url, key, key_file)

        def action() -> int:
            if quarter is not None and (since is not None or until is not None):
                raise InvalidRequest(
                    "--quarter: give either --quarter or --since/--until", field="quarter"
                )
            start, end = parse_range(quarter, since, until)
            if start is None or end is None:
                name = "since" if start is None else "until"
                raise InvalidRequest(
                    f"--{name}: required (or give --quarter, e.g. 2026Q2)", field=name
                )
            data = wiring.load_org_file(file)
            backend = open_backend(wiring, target)
            try:
                report = backend.backtest(data, since=start, until=end)
            finally:
                backend.close()
            _show(report, as_json)
            return output.EXIT_OK

        run(wiring, target, action)


def _show(report: BacktestOut, as_json: bool) -> None:
    if as_json:
        output.emit_json(report.model_dump(mode="json"))
        return
    output.console.print(
        f"Replayed {report.replayed} decisions from {report.since:%Y-%m-%d %H:%M} to "
        f"{report.until:%Y-%m-%d %H:%M} (UTC offset as given): {report.changed} would change.",
        highlight=False,
    )
    output.table(
        "Changes by kind",
        ["change", "count", "USD"],
        [[kind, count, usd(report.usd.get(kind))] for kind, count in report.counts.items()],
    )
    output.table(
        "Changed decisions",
        ["authorization", "at", "agent", "wallet", "amount", "USD", "before", "after"],
        [
            [
                c.authorization,
                f"{c.at:%Y-%m-%d %H:%M}",
                c.agent,
                c.wallet,
                f"{c.amount} {c.asset or ''}".strip(),
                usd(c.value_usd),
                _side(c.before.allowed, c.before.tier, c.before.codes),
                _side(c.after.allowed, c.after.tier, c.after.codes),
            ]
            for c in report.changes
        ],
    )
    if report.truncated:
        output.errors.print(f"Listed {len(report.changes)} of {report.changed}; use --json.")


def _side(allowed: bool, tier: str, codes: list[str]) -> str:
    verdict = "allowed" if allowed else "denied"
    return f"{verdict} ({tier})" + (f" {', '.join(codes)}" if codes else "")
