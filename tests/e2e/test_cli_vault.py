"""``treasurer vault export``: local only, loud, and only after an explicit confirmation.

The wiring's ``export_key`` reads a real vault here (the file vault, with the passphrase typed
again), so the key printed is the one that signs: it is checked against the address.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from solders.keypair import Keypair
from typer.testing import CliRunner, Result

from treasurer.adapters.vault import FileVault
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.service.chain_ports import ChainFamily

PASSPHRASE = "correct horse battery staple"


def _unused(*_args: object) -> object:
    raise AssertionError("vault export must not touch the database or a server")


def wiring(export_key: Callable[[str], str] | None) -> Wiring:
    return Wiring(
        open_backend=_unused,  # type: ignore[arg-type]
        load_org_file=_unused,  # type: ignore[arg-type]
        dump_org_file=_unused,  # type: ignore[arg-type]
        init=_unused,  # type: ignore[arg-type]
        serve=_unused,  # type: ignore[arg-type]
        connect=_unused,  # type: ignore[arg-type]
        export_key=export_key,
    )


@pytest.fixture
def vault(tmp_path: Path) -> FileVault:
    return FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)


def export(vault: FileVault, *args: str, typed: str | None = None) -> Result:
    def export_key(address: str) -> str:
        return vault.export_private_key(address, PASSPHRASE)

    cli = build_cli(wiring(export_key))
    return CliRunner().invoke(cli, ["vault", "export", *args], input=typed)


def test_the_key_is_printed_only_after_the_address_is_typed_back(vault: FileVault) -> None:
    address = vault.create_key(ChainFamily.EVM)
    refused = export(vault, address, typed="yes\n")
    assert refused.exit_code == 4 and "Nothing exported" in refused.stderr
    assert "0x" not in refused.stdout and "WARNING" in refused.stderr
    no_terminal = export(vault, address)  # nothing to read the confirmation from
    assert no_terminal.exit_code == 4 and no_terminal.stdout.strip() == ""
    confirmed = export(vault, address, typed=f"{address}\n")
    assert confirmed.exit_code == 0, confirmed.output
    key = confirmed.stdout.splitlines()[-1]  # CliRunner echoes the typed input before it
    assert Account.from_key(key).address == address
    assert "bypass" not in confirmed.stdout  # the warning goes to stderr, the key alone to stdout


def test_i_understand_skips_the_prompt_but_not_the_warning(vault: FileVault) -> None:
    address = vault.create_key(ChainFamily.SOLANA)
    done = export(vault, address, "--i-understand")
    assert done.exit_code == 0, done.output
    assert "WARNING" in done.stderr and "policies" in done.stderr
    assert str(Keypair.from_base58_string(done.stdout.strip()).pubkey()) == address


def test_an_unknown_address_and_a_missing_vault_are_clear_errors(vault: FileVault) -> None:
    unknown = export(vault, "0x" + "7" * 40, "--i-understand")
    assert unknown.exit_code == 3 and "[" in unknown.stderr
    bare = CliRunner().invoke(
        build_cli(wiring(None)), ["vault", "export", "0x" + "7" * 40, "--i-understand"]
    )
    assert bare.exit_code == 2
    said = " ".join(bare.stderr.split())
    assert "[vault_not_configured]" in said and "export_key" in said
