"""``agents``, ``wallets``, ``policies`` and ``approvers``: the org as the server sees it.

(The ``wallets`` commands live in :mod:`~treasurer.interfaces.cli.wallet_commands`.)

These exist only in the HTTP API (they read credentials and live state), so they always talk
to a server: ``--url``, or the local one ``treasurer serve`` runs. Tables for people,
``--json`` (the API's own JSON) for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import BaseModel

from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.remote import JsonOpt, KeyFileOpt, KeyOpt, Target, UrlOpt, run_remote
from treasurer.interfaces.cli.wiring import Wiring

if TYPE_CHECKING:
    from treasurer.sdk import Client

AgentArg = Annotated[str, typer.Argument(help="Agent id.")]
PolicyArg = Annotated[str, typer.Argument(help="Policy id.")]


def emit_models(models: Sequence[BaseModel] | BaseModel) -> None:
    """The API's JSON for one model or a list of them."""
    if isinstance(models, BaseModel):
        output.emit_json(models.model_dump(mode="json"))
    else:
        output.emit_json([m.model_dump(mode="json") for m in models])


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def when(moment: datetime | None, default: str = "-") -> str:
    """A timestamp for a table, to the minute, in UTC."""
    return default if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the command groups to ``cli``."""
    groups = {
        "agents": (_agents, "Agents: list, show, decommission."),
        "policies": (_policies, "Policies and their versions."),
        "approvers": (_approvers, "People (or keys) who may approve payments."),
    }
    for name, (add_commands, help_text) in groups.items():
        group = typer.Typer(help=help_text, no_args_is_help=True)
        add_commands(group, wiring)
        cli.add_typer(group, name=name)


def _agents(agents: typer.Typer, wiring: Wiring) -> None:

    @agents.command("list")
    def list_agents(
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Every agent this key may see, with its department and status."""

        def action(client: Client) -> int:
            found = client.list_agents()
            if as_json:
                emit_models(found)
            else:
                rows = [[a.id, a.name, a.department or "-", a.status] for a in found]
                output.table("Agents", ["id", "name", "department", "status"], rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @agents.command("show")
    def show_agent(
        agent: AgentArg,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """One agent with its wallets and sessions."""

        def action(client: Client) -> int:
            found = client.get_agent(agent)
            owned = [w for w in client.list_wallets() if w.agent == agent]
            sessions = client.list_sessions(agent)
            if as_json:
                output.emit_json(
                    {
                        **found.model_dump(mode="json"),
                        "wallets": [w.model_dump(mode="json") for w in owned],
                        "sessions": [s.model_dump(mode="json") for s in sessions],
                    }
                )
                return output.EXIT_OK
            output.console.print(
                f"[bold]{found.id}[/] {found.name} · department {found.department or '-'} · "
                f"{found.status}"
            )
            output.table(
                "Wallets",
                ["id", "chain", "address", "vendor", "frozen"],
                [[w.id, w.chain, w.address, w.vendor, _yes(w.frozen)] for w in owned],
            )
            output.table(
                "Sessions",
                ["id", "name", "expires", "active"],
                [[s.id, s.name, when(s.expires_at), "yes" if s.active else "no"] for s in sessions],
            )
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @agents.command("decommission")
    def decommission(
        agent: AgentArg,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Stop an agent for good, in one step: sessions revoked, every wallet frozen, queued
        payments cancelled and open authorizations voided. Idempotent."""

        def action(client: Client) -> int:
            if not yes and not typer.confirm(f"Decommission {agent}? This cannot be undone."):
                output.errors.print("Nothing changed.")
                return output.EXIT_CONFLICT
            done = client.decommission(agent)
            output.console.print(
                f"{done.agent} is {done.status}; {done.sessions_revoked} session(s) revoked, "
                f"{done.wallets_frozen} wallet(s) frozen, {done.payments_cancelled} queued "
                f"payment(s) cancelled, {done.authorizations_voided} open authorization(s) "
                f"voided; {done.payments_in_flight} payment(s) already sent confirm as usual."
            )
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)


def _policies(policies: typer.Typer, wiring: Wiring) -> None:
    @policies.command("list")
    def list_policies(
        scope: Annotated[str | None, typer.Option(help="Only policies attached here.")] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Policies in force, with their scope, mode and version."""

        def action(client: Client) -> int:
            found = client.list_policies(scope=scope)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            rows = [[p.id, p.type, p.scope, p.mode, p.version, p.description] for p in found]
            output.table(
                "Policies", ["id", "type", "scope", "mode", "version", "description"], rows
            )
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @policies.command("show")
    def show_policy(
        policy: PolicyArg,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """One policy with its parameters."""

        def action(client: Client) -> int:
            found = client.get_policy(policy)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            output.console.print(
                f"[bold]{found.id}[/] v{found.version} · {found.type} on {found.scope} · "
                f"{found.mode}"
            )
            if found.description:
                output.console.print(found.description, highlight=False)
            output.console.print_json(json.dumps(found.params))
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @policies.command("history")
    def policy_history(
        policy: PolicyArg,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Every version of a policy, oldest first, and when each was in force."""

        def action(client: Client) -> int:
            versions = client.policy_history(policy)
            if as_json:
                emit_models(versions)
                return output.EXIT_OK
            rows = [
                [v.version, v.type, v.scope, v.mode, when(v.created_at), when(v.retired_at, "now")]
                for v in versions
            ]
            columns = ["version", "type", "scope", "mode", "from", "until"]
            output.table(f"History of {policy}", columns, rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)


def _approvers(approvers: typer.Typer, wiring: Wiring) -> None:
    @approvers.command("list")
    def list_approvers(
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Current approvers with their key kind and groups."""

        def action(client: Client) -> int:
            found = client.list_approvers()
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            rows = [[a.id, a.name, a.kind, ", ".join(a.groups), a.public_key] for a in found]
            output.table("Approvers", ["id", "name", "kind", "groups", "public key"], rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @approvers.command("add")
    def add_approver(
        approver: Annotated[str, typer.Argument(help="Approver id, e.g. alice.")],
        name: Annotated[str, typer.Option(help="Display name.")],
        kind: Annotated[str, typer.Option(help="ed25519 or evm.")],
        public_key: Annotated[str, typer.Option(help="Ed25519 key (hex/base64) or EVM address.")],
        group: Annotated[list[str] | None, typer.Option(help="A group; repeat for more.")] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Register an approver who can sign payment approvals."""

        def action(client: Client) -> int:
            added = client.add_approver(
                approver, name=name, kind=kind, public_key=public_key, groups=group or []
            )
            if as_json:
                emit_models(added)
            else:
                output.console.print(f"Approver {added.id} added ({added.kind}).")
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)
