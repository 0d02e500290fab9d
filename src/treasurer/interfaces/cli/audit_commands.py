"""``audit export`` and ``audit verify``: the tamper-evident audit trail on the command line
(``audit purge``, the retention job, is in :mod:`.audit_purge_command`).

``export`` reads the local database (the data directory's, or ``TREASURER_DATABASE_URL``):
it seals what is waiting, signs the head when the deployment has a signing key, and writes
JSON Lines. ``verify FILE`` needs no database and no server, only the file and, to pin the
deployment's key, ``--public-key``: an auditor runs it on their own machine. Without a file,
``verify`` checks the live chain, of the local database or of ``--url``'s server
(``GET /v1/audit/verify``). It exits 0 when the chain is intact and 1 (the answer is no) when
it is not, naming the first broken event.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from io import TextIOWrapper
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from treasurer.domain.audit_verify import Finding, VerifyReport, verify_export
from treasurer.domain.errors import InvalidRequest, TreasurerError
from treasurer.interfaces.audit_views import report_of
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.audit_purge_command import register_purge
from treasurer.interfaces.cli.remote import (
    JsonOpt,
    KeyFileOpt,
    KeyOpt,
    Target,
    UrlOpt,
    connect,
    run,
)
from treasurer.interfaces.cli.wiring import Wiring
from treasurer.interfaces.csv_text import AuditCsv
from treasurer.service.audit import AuditTrail, ExportSummary, audit_of
from treasurer.service.audit_signing import public_key_from_text, verify_ed25519

TimeOpt = Annotated[
    str | None,
    typer.Option(
        help="ISO 8601 time, e.g. 2026-04-01 or 2026-04-01T09:00:00+02:00 (UTC if no zone)."
    ),
]
#: Checkpoint problems printed (the count is always given).
SHOWN_PROBLEMS = 10


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the ``audit`` group to ``cli``."""
    audit = typer.Typer(
        help="The tamper-evident audit trail: export, verify, purge.", no_args_is_help=True
    )
    cli.add_typer(audit, name="audit")
    register_purge(audit, wiring, _time)

    @audit.command("export")
    def export(
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Write the export here (default: standard output)."),
        ] = None,
        since: TimeOpt = None,
        until: TimeOpt = None,
        fmt: Annotated[
            str,
            typer.Option(
                "--format",
                help="jsonl (verifiable, the default) or csv (one row per event, for "
                "spreadsheets; it cannot be verified).",
            ),
        ] = "jsonl",
    ) -> None:
        """Export the hash-chained audit log (JSON Lines) with its signed checkpoints.

        With --since/--until, the contiguous stretch of the chain holding every event in
        [since, until): it verifies on its own, anchored at its first event. --format csv
        writes one row per event (seq, id, at, kind, actor, subject, hash, payload JSON)
        instead: handy in a spreadsheet, but only JSON Lines can be verified."""

        def action() -> int:
            if fmt not in ("jsonl", "csv"):
                raise InvalidRequest(f"--format: {fmt!r} must be jsonl or csv", field="format")
            start, end = _time(since, "since"), _time(until, "until")
            return _export(wiring, out, start, end, csv=fmt == "csv")

        run(wiring, Target(), action)

    @audit.command("verify")
    def verify(
        file: Annotated[
            Path | None,
            typer.Argument(
                help="An export made by `treasurer audit export`. Without it: the live chain "
                "of the local database, or of --url's server."
            ),
        ] = None,
        public_key: Annotated[
            str | None,
            typer.Option(
                "--public-key",
                help="The deployment's public key: a PEM file (e.g. audit-signing.pub) or 64 "
                "hex digits. Every checkpoint must be signed by it.",
            ),
        ] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Verify an export offline, or the live chain; name the first event altered, removed,
        inserted or reordered, and every checkpoint that does not hold. Exit 1 when not
        intact."""
        target = Target(url, key, key_file)
        if file is None:
            run(wiring, target, lambda: _verify_live(wiring, target, public_key, as_json))
        if url is not None:
            run(wiring, target, _file_and_url)
        run(wiring, target, lambda: _verify(file, public_key, as_json))


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"--{name}: {text!r} is not an ISO 8601 time like 2026-04-01 or 2026-04-01T09:00:00Z",
            field=name,
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _trail(backend: object) -> AuditTrail:
    trail = audit_of(backend)
    if trail is None:
        raise TreasurerError(
            "this installation has no audit trail wired to its database",
            code="audit_not_configured",
        )
    return trail


def _export(
    wiring: Wiring,
    out: Path | None,
    since: datetime | None,
    until: datetime | None,
    *,
    csv: bool = False,
) -> int:
    backend = wiring.open_backend()
    try:
        trail = _trail(backend)
        if out is None:
            summary = trail.export(AuditCsv(sys.stdout) if csv else sys.stdout, since, until)
            sys.stdout.flush()
        else:
            with _create(out) as handle:
                summary = trail.export(AuditCsv(handle) if csv else handle, since, until)
    finally:
        backend.close()
    output.errors.print(_export_line(summary, out), highlight=False)
    if summary.checkpoints == 0 and summary.events:
        output.errors.print(
            "No signed checkpoint covers it: the deployment signs one every hour when it has "
            "an audit signing key (treasurer serve).",
            highlight=False,
        )
    return output.EXIT_OK


def _create(path: Path) -> TextIOWrapper:
    """Open ``path`` for writing, owner-only (0600): an export holds every decision's detail."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidRequest(f"--out: cannot write {path} ({exc.strerror})", field="out") from None
    return os.fdopen(fd, "w", encoding="utf-8")


def _export_line(summary: ExportSummary, out: Path | None) -> str:
    where = f" to {out}" if out is not None else ""
    span = f", seq {summary.first_seq}..{summary.last_seq}" if summary.first_seq is not None else ""
    return (
        f"Exported {_count(summary.events, 'event')}{span} and "
        f"{_count(summary.checkpoints, 'checkpoint')}{where}."
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _file_and_url() -> int:
    raise InvalidRequest(
        "--url: a FILE is verified offline; drop FILE to verify the server's live chain",
        field="url",
    )


def _verify_live(wiring: Wiring, target: Target, public_key: str | None, as_json: bool) -> int:
    """The live chain, checked where it is stored: the server (``--url``) or this database.
    Both seal what is waiting first, then recompute every hash and check every checkpoint."""
    trusted = _trusted_key(public_key) if public_key is not None else None
    if target.url is not None:
        client = connect(wiring, target)
        try:
            verdict = client.verify_audit(public_key=trusted)
        finally:
            client.close()
        report, unsealed, source = report_of(verdict), verdict.unsealed_events, target.url
    else:
        backend = wiring.open_backend()
        try:
            live = _trail(backend).verify_live(trusted)
        finally:
            backend.close()
        report, unsealed, source = live.report, live.unsealed, "the local audit log"
    if as_json:
        output.emit_json(
            {
                "ok": report.ok,
                "unsigned_events": report.unsigned_events,
                "unsealed_events": unsealed,
                "trusted_key": trusted,
                **asdict(report),
            }
        )
    else:
        _print_report(report, source, pinned=trusted is not None)
        if unsealed:
            output.console.print(
                f"{_count(unsealed, 'event')} of transactions still open are not sealed yet.",
                highlight=False,
            )
    return output.EXIT_OK if report.ok else output.EXIT_DENIED


def _verify(file: Path, public_key: str | None, as_json: bool) -> int:
    trusted = _trusted_key(public_key) if public_key is not None else None
    try:
        handle = file.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InvalidRequest(f"cannot read {file} ({exc.strerror})", field="file") from None
    with handle:
        report = verify_export(handle, verify_ed25519, trusted)
    if as_json:
        output.emit_json(
            {
                "ok": report.ok,
                "unsigned_events": report.unsigned_events,
                "trusted_key": trusted,
                **asdict(report),
            }
        )
    else:
        _print_report(report, str(file), pinned=trusted is not None)
    return output.EXIT_OK if report.ok else output.EXIT_DENIED


def _trusted_key(given: str) -> str:
    """``--public-key``: a key file when one exists at that path, else the key itself."""
    path = Path(given)
    if not path.is_file():
        return public_key_from_text(given)
    try:
        return public_key_from_text(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidRequest(
            f"--public-key: cannot read {path} ({reason})", field="public_key"
        ) from None


def _print_report(report: VerifyReport, source: str, *, pinned: bool) -> None:
    say = output.console.print
    span = f"seq {report.first_seq}..{report.last_seq}" if report.first_seq is not None else "none"
    origin = (
        "from genesis"
        if report.from_genesis
        else f"from the signed purge anchor at seq {report.anchor_seq}"
        if report.anchor_seq is not None
        else f"anchored before seq {report.first_seq}"
    )
    name, events = escape(source), _count(report.events, "event")
    if report.ok:
        say(f"[bold green]intact[/] {name}: {events} ({span}, {origin}).")
    else:
        say(f"[bold red]NOT INTACT[/] {name}: {events} read ({span}).")
    if report.first_broken is not None:
        say(f"First broken event: {_finding(report.first_broken)}", highlight=False)
    keys = ", ".join(report.key_ids) or "none"
    trust = "the pinned --public-key" if pinned else "the keys in the file (not pinned)"
    say(
        f"Checkpoints: {report.checkpoints} ({report.checkpoint_problem_count} bad), signed by "
        f"{escape(keys)}, checked against {trust}.",
        highlight=False,
    )
    for finding in report.checkpoint_problems[:SHOWN_PROBLEMS]:
        say(f"  checkpoint problem: {_finding(finding)}", highlight=False)
    if report.checkpoint_problem_count > SHOWN_PROBLEMS:
        say(f"  … and {report.checkpoint_problem_count - SHOWN_PROBLEMS} more", highlight=False)
    if report.signed_through is not None:
        say(f"Signatures vouch for the chain up to seq {report.signed_through}.", highlight=False)
    if report.ok and report.unsigned_events:
        say(
            f"[yellow]{_count(report.unsigned_events, 'event')} after the last good checkpoint[/]: "
            "chained, but no signature vouches for them.",
        )
    if not pinned and report.checkpoints:
        say("Pass --public-key to require the deployment's own key.", highlight=False)


def _finding(finding: Finding) -> str:
    return escape(f"[{finding.problem}] {finding.message}")
