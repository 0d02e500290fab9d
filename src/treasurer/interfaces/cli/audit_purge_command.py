"""``treasurer audit purge``: the retention job, on the local database or a server.

Why a command and not a timer: deleting evidence is a deliberate act an operator schedules
(cron, after archiving an export), and it is audited (``audit.purged``). It deletes sealed
events older than ``settings.audit_retention_days`` (``--before`` purges less, never more),
after signing the checkpoint that anchors what remains; ``--dry-run`` only reports. Locally it
needs the deployment's audit signing key (the data directory's ``audit-signing.pem``), like
``export``; with ``--url`` the server signs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from treasurer.domain.errors import TreasurerError
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.org_commands import emit_models
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
from treasurer.service.audit import audit_of
from treasurer.service.audit_purge import purge_audit, retention_days_of
from treasurer.service.governance import GovernanceCore

if TYPE_CHECKING:
    from datetime import datetime

    from treasurer.wire_audit import AuditPurgeOut

#: Who a local purge is recorded as (a server records the admin key's actor).
LOCAL_ACTOR = "admin"


def register_purge(audit: typer.Typer, wiring: Wiring, parse_time: object) -> None:
    """Add ``purge`` to the ``audit`` group (``parse_time(text, name)`` reads ``--before``)."""
    assert callable(parse_time)

    @audit.command("purge")
    def purge(
        before: Annotated[
            str | None,
            typer.Option(
                help="Purge only events before this ISO 8601 time (UTC if no zone); it may not "
                "be later than the retention allows."
            ),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Report what would be purged; change nothing.")
        ] = False,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Delete sealed audit events older than the org's retention (audit_retention_days).

        Signs a checkpoint over the last purged event first, in the same transaction, so the
        remaining chain (and every later export) still verifies from that anchor."""
        target = Target(url, key, key_file)

        def action() -> int:
            cutoff = parse_time(before, "before")
            result = _purge(wiring, target, cutoff, dry_run)
            if as_json:
                emit_models(result)
            else:
                _print(result)
            return output.EXIT_OK

        run(wiring, target, action)


def _purge(wiring: Wiring, target: Target, before: datetime | None, dry_run: bool) -> AuditPurgeOut:
    if target.url is not None:
        client = connect(wiring, target)
        try:
            return client.purge_audit(before=before, dry_run=dry_run)
        finally:
            client.close()
    # Local: the HTTP view module is imported only here (it loads FastAPI), like embedded.py.
    from treasurer.interfaces.http.routes_audit_purge import audit_purge_out  # noqa: PLC0415

    backend = wiring.open_backend()
    try:
        trail = audit_of(backend)
        if trail is None or not isinstance(backend, GovernanceCore):
            raise TreasurerError(
                "this installation has no audit trail wired to its database",
                code="audit_not_configured",
            )
        result = purge_audit(
            trail,
            retention_days_of(backend),
            actor=LOCAL_ACTOR,
            before=before,
            dry_run=dry_run,
        )
    finally:
        backend.close()
    return audit_purge_out(result)


def _print(result: AuditPurgeOut) -> None:
    say = output.console.print
    limit = f"cutoff {result.cutoff.isoformat()} (retention {result.retention_days} days)"
    if result.count == 0:
        say(f"Nothing to purge: no sealed event before the {limit}.", highlight=False)
        return
    span = f"seq {result.first_seq}..{result.upto_seq}"
    noun = "event" if result.count == 1 else "events"
    if result.dry_run:
        say(f"Would purge {result.count} {noun} ({span}), {limit}.", highlight=False)
        return
    say(f"Purged {result.count} {noun} ({span}), {limit}.", highlight=False)
    say(
        f"The chain now starts after the signed checkpoint at seq {result.checkpoint_seq} "
        f"(purge {result.id}); exports carry it as their anchor.",
        highlight=False,
    )
