"""The ``treasurer`` command tree.

Commands act on the local database of the data directory (``TREASURER_DATA_DIR`` /
``TREASURER_DATABASE_URL``) or, with ``--url`` / ``TREASURER_URL``, on a server
(:mod:`treasurer.interfaces.cli.remote`). Everything concrete (the database, YAML, the HTTP
client) is injected by the composition root through :class:`Wiring`, so tests can pass their
own and this package never imports an adapter.

- local or remote: ``apply``, ``export``, ``check``, ``report``, ``set-price``
  (:mod:`~treasurer.interfaces.cli.core_commands`), ``backtest``
  (:mod:`~treasurer.interfaces.cli.simulation_commands`)
- server only: ``agents``, ``policies``, ``approvers``
  (:mod:`~treasurer.interfaces.cli.org_commands`), ``wallets``
  (:mod:`~treasurer.interfaces.cli.wallet_commands`), ``freeze``, ``unfreeze``, ``sessions``
  (:mod:`~treasurer.interfaces.cli.ops_commands`), ``pay``, ``payments``
  (:mod:`~treasurer.interfaces.cli.pay_commands`), ``approve``
  (:mod:`~treasurer.interfaces.cli.approve_commands`)
- local only: ``init``, ``serve``, ``vault export``
  (:mod:`~treasurer.interfaces.cli.vault_commands`)
"""

from __future__ import annotations

from typing import Annotated

import typer

from treasurer.interfaces.cli import (
    approve_commands,
    audit_commands,
    core_commands,
    ops_commands,
    org_commands,
    output,
    pay_commands,
    simulation_commands,
    vault_commands,
    wallet_commands,
    webhook_commands,
)
from treasurer.interfaces.cli.wiring import Backend, Embedded, Wiring

__all__ = ["Backend", "Embedded", "Wiring", "build_cli"]


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

    core_commands.register(cli, wiring)
    simulation_commands.register(cli, wiring)
    pay_commands.register(cli, wiring)
    approve_commands.register(cli, wiring)
    org_commands.register(cli, wiring)
    wallet_commands.register(cli, wiring)
    ops_commands.register(cli, wiring)
    vault_commands.register(cli, wiring)
    audit_commands.register(cli, wiring)
    webhook_commands.register(cli, wiring)
    return cli
