"""``vault export``: print one custodial private key, for an operator leaving Treasurer.

Local only: it reads the vault of this machine's data directory with the configured
passphrase, and never talks to a server (no API route can reveal a key). Whoever holds the
printed key can move the wallet's funds on every chain with none of Treasurer's policies,
budgets or freezes in the way, so the command says so loudly and goes on only after
``--i-understand`` or the address typed back.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.remote import Target, run
from treasurer.interfaces.cli.wiring import Wiring

WARNING = (
    "WARNING: this prints the private key of {address} in plain text.\n"
    "Anyone who sees it can move everything this wallet holds, on every chain, with none of "
    "Treasurer's policies, budgets, approvals or freezes in the way. Do not paste it into "
    "chats, tickets or a shell history; clear the terminal when done. The key stays in the "
    "vault: to stop Treasurer using it, freeze or remove the wallet."
)

_HINTS = {
    "not_found": "this data directory's vault has no key for that address; see the custodial "
    "wallets' addresses with: treasurer wallets list",
    "vault_passphrase_wrong": "use the passphrase the vault was created with "
    "(TREASURER_VAULT_PASSPHRASE or the passphrase file in the data directory)",
}


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the ``vault`` group to ``cli``."""
    vault = typer.Typer(help="The local key vault of custodial wallets.", no_args_is_help=True)
    cli.add_typer(vault, name="vault")

    @vault.command("export")
    def export(
        address: Annotated[str, typer.Argument(help="The wallet address whose key to print.")],
        understood: Annotated[
            bool,
            typer.Option(
                "--i-understand",
                help="Skip the typed confirmation: you know the key bypasses every control.",
            ),
        ] = False,
    ) -> None:
        """Print a custodial private key (operator only, local; asks for confirmation)."""

        def action() -> int:
            if wiring.export_key is None:
                raise InvalidRequest(
                    "vault export: this treasurer command has no vault to read (Wiring."
                    "export_key is not set); run the installed `treasurer` on the machine "
                    "whose data directory holds the vault",
                    field="export_key",
                    code="vault_not_configured",
                )
            output.errors.print(WARNING.format(address=address), style="bold red", highlight=False)
            if not understood and not _confirmed(address):
                output.errors.print("Nothing exported.", highlight=False)
                return output.EXIT_CONFLICT
            secret = wiring.export_key(address)
            sys.stdout.write(secret + "\n")
            sys.stdout.flush()
            return output.EXIT_OK

        run(wiring, Target(), action, _HINTS)


def _confirmed(address: str) -> bool:
    """The operator typed the address back (no terminal to ask on counts as no)."""
    try:
        typed = typer.prompt(
            "Type the address to print its key", default="", show_default=False, err=True
        )
    except typer.Abort:
        return False
    return str(typed).strip() == address
