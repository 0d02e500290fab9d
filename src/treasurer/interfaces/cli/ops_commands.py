"""``freeze``/``unfreeze`` (the kill switch) and ``sessions`` (agent tokens), via the server.

A session token is printed once, when it is created or rotated: the server keeps only its
hash. ``--json`` prints it too, for scripts that hand it to an agent's secret store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.org_commands import emit_models, when
from treasurer.interfaces.cli.remote import JsonOpt, KeyFileOpt, KeyOpt, Target, UrlOpt, run_remote
from treasurer.interfaces.cli.wiring import Wiring
from treasurer.wire import SessionCreated

if TYPE_CHECKING:
    from treasurer.sdk import Client

ScopeArg = Annotated[str, typer.Argument(help="org, department:<id>, agent:<id> or wallet:<id>.")]
AgentArg = Annotated[str, typer.Argument(help="Agent id.")]
SessionArg = Annotated[str, typer.Argument(help="Session id (see: treasurer agents show).")]
TtlOpt = Annotated[
    int | None, typer.Option("--ttl-s", help="Lifetime in seconds (default 24 hours).")
]


def _show_token(created: SessionCreated, as_json: bool) -> None:
    if as_json:
        emit_models(created)
        return
    output.console.print(
        f"Session {created.id} for {created.agent}, valid until {when(created.expires_at)}. "
        "The token is shown once; store it now:",
        highlight=False,
    )
    output.console.out(created.token, highlight=False)


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add ``freeze``, ``unfreeze`` and the ``sessions`` group to ``cli``."""

    @cli.command()
    def freeze(
        scope: ScopeArg,
        reason: Annotated[str, typer.Option(help="Why; kept in the audit log.")] = "",
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Stop every spend in a scope from the next decision on. Idempotent."""

        def action(client: Client) -> int:
            done = client.freeze(scope, reason=reason)
            state = "frozen" if done.changed else "already frozen"
            output.console.print(f"{done.scope} is {state}.", highlight=False)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @cli.command()
    def unfreeze(
        scope: ScopeArg, url: UrlOpt = None, key: KeyOpt = None, key_file: KeyFileOpt = None
    ) -> None:
        """Lift a freeze. Idempotent."""

        def action(client: Client) -> int:
            done = client.unfreeze(scope)
            state = "no longer frozen" if done.changed else "not frozen"
            output.console.print(f"{done.scope} is {state}.", highlight=False)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    sessions = typer.Typer(help="Agent session tokens.", no_args_is_help=True)
    cli.add_typer(sessions, name="sessions")

    @sessions.command("create")
    def create(
        agent: AgentArg,
        name: Annotated[str, typer.Option(help="A label, e.g. the host.")] = "default",
        ttl_s: TtlOpt = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """A new session token for an agent."""

        def action(client: Client) -> int:
            _show_token(client.create_session(agent, name=name, ttl_s=ttl_s), as_json)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @sessions.command("rotate")
    def rotate(
        agent: AgentArg,
        session: SessionArg,
        ttl_s: TtlOpt = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Replace a session's token; the old token fails from the next request on."""

        def action(client: Client) -> int:
            _show_token(client.rotate_session(agent, session, ttl_s=ttl_s), as_json)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @sessions.command("revoke")
    def revoke(
        agent: AgentArg,
        session: SessionArg,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Revoke a session; its token fails from the next request on."""

        def action(client: Client) -> int:
            done = client.revoke_session(agent, session)
            output.console.print(f"Session {done.id} of {done.agent} is revoked.")
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @sessions.command("list")
    def list_sessions(
        agent: AgentArg,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """An agent's sessions, active or not (never their tokens)."""

        def action(client: Client) -> int:
            found = client.list_sessions(agent)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            rows = [
                [s.id, s.name, when(s.created_at), when(s.expires_at), "yes" if s.active else "no"]
                for s in found
            ]
            columns = ["id", "name", "created", "expires", "active"]
            output.table(f"Sessions of {agent}", columns, rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)
