"""``webhooks``: endpoints that receive signed notifications, and their deliveries.

Server only (the notifier runs inside ``treasurer serve``): ``add`` registers an endpoint and
prints its signing secret, once; ``list``, ``remove``; ``deliveries`` shows an endpoint's
deliveries (``--state dead`` is the dead-letter queue) and ``retry`` sends a dead one again.
See docs/webhooks.md for the events, the signature and the retry schedule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.org_commands import emit_models, when
from treasurer.interfaces.cli.remote import JsonOpt, KeyFileOpt, KeyOpt, Target, UrlOpt, run_remote
from treasurer.interfaces.cli.wiring import Wiring

if TYPE_CHECKING:
    from treasurer.sdk import Client
    from treasurer.wire import WebhookDeliveryOut

WebhookArg = Annotated[str, typer.Argument(help="Webhook id (wh_…).")]


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the ``webhooks`` group to ``cli``."""
    group = typer.Typer(help="Webhook endpoints and their deliveries.", no_args_is_help=True)
    cli.add_typer(group, name="webhooks")

    @group.command("add")
    def add(
        url: Annotated[str, typer.Argument(help="Where to POST, e.g. https://example.com/hook")],
        format: Annotated[
            str, typer.Option("--format", help="json (signed event) or slack ({'text': …}).")
        ] = "json",
        event: Annotated[
            list[str] | None,
            typer.Option("--event", help="Only this event type (repeat; default: every type)."),
        ] = None,
        description: Annotated[str, typer.Option(help="A note for people.")] = "",
        as_json: JsonOpt = False,
        url_opt: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Register an endpoint; its signing secret is printed this once."""

        def action(client: Client) -> int:
            made = client.create_webhook(
                url, format=format, events=event or [], description=description
            )
            if as_json:
                emit_models(made)
                return output.EXIT_OK
            output.console.print(f"Webhook [bold]{made.id}[/] → {escape(made.url)}")
            output.console.print(
                f"Events: {', '.join(made.events) or 'all'} · format {made.format}",
                highlight=False,
            )
            output.console.print(f"Secret: {made.secret}", highlight=False, markup=False)
            output.errors.print(
                "Store the secret now: it is not shown again. Receivers verify the "
                "Treasurer-Signature header with it (docs/webhooks.md).",
                highlight=False,
            )
            return output.EXIT_OK

        run_remote(wiring, Target(url_opt, key, key_file), action)

    @group.command("list")
    def list_webhooks(
        removed: Annotated[bool, typer.Option("--all", help="Also removed endpoints.")] = False,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Webhook endpoints (URLs redacted; secrets are never shown again)."""

        def action(client: Client) -> int:
            found = client.list_webhooks(include_removed=removed)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            rows = [
                [
                    w.id,
                    escape(w.url),
                    w.format,
                    ", ".join(w.events) or "all",
                    "active" if w.active else f"removed {when(w.removed_at)}",
                ]
                for w in found
            ]
            output.table("Webhooks", ["id", "url", "format", "events", "status"], rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @group.command("remove")
    def remove(
        webhook: WebhookArg,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Stop sending to an endpoint; its pending deliveries become dead."""

        def action(client: Client) -> int:
            if not yes and not typer.confirm(f"Remove webhook {webhook}?"):
                output.errors.print("Nothing changed.")
                return output.EXIT_CONFLICT
            done = client.remove_webhook(webhook)
            output.console.print(f"Webhook {done.id} removed {when(done.removed_at)}.")
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @group.command("deliveries")
    def deliveries(
        webhook: WebhookArg,
        state: Annotated[
            str | None, typer.Option(help="pending, delivered or dead (the dead letters).")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """An endpoint's deliveries, newest event first, with their attempts."""

        def action(client: Client) -> int:
            found = client.webhook_deliveries(webhook, state=state, limit=limit)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            output.table(
                f"Deliveries of {webhook}",
                ["id", "event", "state", "attempts", "last", "next / delivered"],
                [_row(d) for d in found],
            )
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @group.command("retry")
    def retry(
        delivery: Annotated[str, typer.Argument(help="Delivery id (whd_…).")],
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Send a dead delivery again (due now, with a fresh count of attempts)."""

        def action(client: Client) -> int:
            done = client.retry_delivery(delivery)
            if as_json:
                emit_models(done)
            else:
                output.console.print(f"Delivery {done.id} is {done.state} again.")
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)


def _row(delivery: WebhookDeliveryOut) -> list[str]:
    last = "-"
    if delivery.last_status is not None:
        last = f"HTTP {delivery.last_status}"
    elif delivery.last_error:
        last = escape(delivery.last_error.split(":", 1)[0])
    moment = delivery.delivered_at or delivery.next_attempt_at
    return [
        delivery.id,
        f"{delivery.event} ({delivery.event_id})",
        delivery.state,
        str(delivery.attempts),
        last,
        when(moment),
    ]
