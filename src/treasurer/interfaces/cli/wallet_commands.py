"""``wallets``: list, register (external or custodial) and read on-chain balances, via a server.

``wallets create --custodial`` has the server's vault create the key: the private key never
leaves the server, and the command prints only the new address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.org_commands import emit_models
from treasurer.interfaces.cli.remote import JsonOpt, KeyFileOpt, KeyOpt, Target, UrlOpt, run_remote
from treasurer.interfaces.cli.wiring import Wiring

if TYPE_CHECKING:
    from treasurer.sdk import Client

WalletArg = Annotated[str, typer.Argument(help="Wallet id.")]


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add the ``wallets`` group to ``cli``."""
    wallets = typer.Typer(help="Wallets of the agents, and their balances.", no_args_is_help=True)
    cli.add_typer(wallets, name="wallets")

    @wallets.command("list")
    def list_wallets(
        agent: Annotated[str | None, typer.Option(help="Only this agent's wallets.")] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Wallets this key may see (an agent session: its own)."""

        def action(client: Client) -> int:
            found = [w for w in client.list_wallets() if agent in (None, w.agent)]
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            columns = ["id", "agent", "chain", "address", "custody", "vendor", "status", "frozen"]
            rows = [
                [w.id, w.agent, w.chain, w.address, w.custody, w.vendor, w.status, _yes(w.frozen)]
                for w in found
            ]
            output.table("Wallets", columns, rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @wallets.command("create")
    def create(
        agent: Annotated[str, typer.Option(help="The agent that owns the wallet.")],
        chain: Annotated[str, typer.Option(help="Network, e.g. evm-local, base, solana-local.")],
        custodial: Annotated[
            bool, typer.Option("--custodial", help="Treasurer holds the key (in its vault).")
        ] = False,
        address: Annotated[
            str | None,
            typer.Option(help="The wallet's address (an external wallet; or a vault key)."),
        ] = None,
        vendor: Annotated[
            str | None, typer.Option(help="Who holds an external wallet's key, e.g. privy.")
        ] = None,
        wallet_id: Annotated[
            str | None, typer.Option("--id", help="Wallet id (default: <agent>-<chain>).")
        ] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Register a wallet: --custodial (the vault creates the key) or --address (external)."""

        def action(client: Client) -> int:
            if not custodial and address is None:
                raise InvalidRequest(
                    "--address: give the external wallet's address, or pass --custodial to "
                    "have Treasurer create and hold the key",
                    field="address",
                )
            created = client.create_wallet(
                wallet_id or f"{agent}-{chain}",
                agent=agent,
                chain=chain,
                address=address,
                custody="local" if custodial else "external",
                vendor=vendor,
            )
            if as_json:
                emit_models(created)
            else:
                held = "key held by Treasurer" if created.custody == "local" else created.vendor
                output.console.print(
                    f"Wallet {created.id} for {created.agent} on {created.chain}: "
                    f"{created.address} ({held})",
                    highlight=False,
                )
            return output.EXIT_OK

        hints = {
            "conflict": "a wallet with that id (or address) exists; choose another with --id",
        }
        run_remote(wiring, Target(url, key, key_file), action, hints)

    @wallets.command("balance")
    def balance(
        wallet: WalletArg,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """What a wallet holds on its chain now, for each of the org's assets there."""

        def action(client: Client) -> int:
            found = client.wallet_balance(wallet)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            rows = [
                [b.asset, b.symbol, b.amount, b.base_units, b.token or "native", b.error]
                for b in found.balances
            ]
            output.table(
                f"Balances of {found.wallet} ({found.chain}:{found.address})",
                ["asset", "symbol", "amount", "base units", "token", "error"],
                rows,
            )
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)
