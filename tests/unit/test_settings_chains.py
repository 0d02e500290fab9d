"""``TREASURER_CHAINS`` and the other settings of custodial mode, and the chains built from them.

Every bad value must fail with :class:`SettingsInvalid` naming the variable and showing the
fix, never a traceback; the demo token addresses an org file names must be what a fresh
embedded chain deploys.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import pytest
import rlp  # type: ignore[import-untyped]
from eth_utils import keccak, to_checksum_address
from solders.keypair import Keypair

from treasurer.adapters.chains.evm_local import DEMO_ASSET_DECIMALS, DEMO_ASSET_SYMBOL, LocalEvm
from treasurer.adapters.chains.solana import DEMO_DECIMALS, SolanaLocal
from treasurer.adapters.vault import DEFAULT_SCRYPT_N
from treasurer.bootstrap import cli
from treasurer.bootstrap.chains import (
    DEMO_TOKEN_DECIMALS,
    DEMO_TOKEN_SYMBOL,
    EVM_DEMO_TOKEN,
    SOLANA_DEMO_MINT,
    build_chains,
    fund_dev_wallets,
)
from treasurer.bootstrap.demo import custodial_demo_org
from treasurer.bootstrap.server import run_every
from treasurer.domain.org import WalletStatus
from treasurer.service.orgfile_parse import parse_org_file
from treasurer.settings import ChainSpec, Settings, SettingsInvalid, parse_chains

BASE_URL = "https://mainnet.base.org"


# -- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "   "])
def test_unset_or_empty_means_both_embedded_chains(value: str) -> None:
    """The default runs everything offline: the embedded EVM and Solana."""
    assert parse_chains(value) == (ChainSpec("evm-local"), ChainSpec("solana-local"))
    assert Settings.from_env({}).chains == parse_chains("")
    assert Settings.from_env({}).embedded_chains == ("evm-local", "solana-local")


def test_none_means_no_chains_at_all() -> None:
    """``none`` is the explicit governance-only node (an empty value means the default)."""
    assert parse_chains("none") == ()
    assert Settings.from_env({"TREASURER_CHAINS": "None"}).embedded_chains == ()


def test_a_preconfigured_network_takes_its_known_chain_id() -> None:
    """``base=URL``: the chain id comes from the network table, checked against the node."""
    (evm, base) = parse_chains(f" evm-local , base={BASE_URL} ")
    assert evm == ChainSpec("evm-local") and evm.embedded
    assert (base.name, base.rpc_url, base.chain_id, base.embedded) == (
        "base",
        BASE_URL,
        8453,
        False,
    )
    (same,) = parse_chains(f"base:8453={BASE_URL}")
    assert same.chain_id == 8453


def test_another_network_needs_its_chain_id() -> None:
    """``NAME:CHAIN_ID=URL``; the URL keeps everything after the first '=' (query strings)."""
    url = "http://10.0.0.5:8545/rpc?key=a=b:c"
    (spec,) = parse_chains(f"mychain:31338={url}")
    assert (spec.name, spec.rpc_url, spec.chain_id) == ("mychain", url, 31338)


def test_the_rpc_url_is_kept_out_of_repr() -> None:
    """Provider URLs often carry an API key; neither the spec nor the settings print it."""
    secret_url = "https://base.example/v2/SECRET-KEY"
    settings = Settings.from_env(
        {"TREASURER_CHAINS": f"base={secret_url}", "TREASURER_VAULT_PASSPHRASE": "hunter2"}
    )
    assert "SECRET-KEY" not in repr(settings) and "hunter2" not in repr(settings)
    assert settings.chains[0].rpc_url == secret_url


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("base", "base needs an RPC URL (write base=https://NODE)"),
        ("mychain=http://127.0.0.1:8545", "give its chain id as mychain:CHAIN_ID=URL"),
        ("mychain", "mychain:CHAIN_ID=https://NODE"),
        ("evm-local=http://127.0.0.1:8545", "evm-local is an embedded chain"),
        ("solana-local:5", "solana-local is an embedded chain"),
        ("solana=https://api.mainnet-beta.solana.com", "Solana over RPC is not supported yet"),
        ("evm-local,evm-local", "'evm-local' is listed twice"),
        ("evm-local,,solana-local", "an entry is empty"),
        ("evm-local,", "an entry is empty"),
        ("Base=https://mainnet.base.org", "'Base' is not a network name"),
        ("base=ftp://mainnet.base.org", "must start with http:// or https://"),
        ("base=", "must start with http:// or https://"),
        ("base:1=https://mainnet.base.org", "base has chain id 8453, not 1"),
        ("mychain:abc=http://127.0.0.1:8545", "must be a positive whole number"),
        ("mychain:0=http://127.0.0.1:8545", "must be a positive whole number"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_fix(value: str, says: str) -> None:
    """Each mistake gets its own message, the variable's name and a working example."""
    with pytest.raises(SettingsInvalid) as caught:
        Settings.from_env({"TREASURER_CHAINS": value})
    error = caught.value
    assert error.code == "settings_invalid" and error.field == "TREASURER_CHAINS"
    assert error.message.startswith("TREASURER_CHAINS: ")
    assert says in error.message
    assert "Example: TREASURER_CHAINS=evm-local,solana-local,base=" in error.message


# -- the vault and the other settings -------------------------------------------------------
def test_the_vault_lives_in_the_data_directory_by_default(tmp_path: Path) -> None:
    """Passphrase file and vault sit in the data directory unless configured elsewhere."""
    settings = Settings.from_env({"TREASURER_DATA_DIR": str(tmp_path)})
    assert settings.vault_dir == tmp_path / "vault"
    assert settings.effective_vault_passphrase_file == tmp_path / "vault.passphrase"
    assert settings.vault_passphrase is None and settings.vault_scrypt_n is None
    assert settings.confirm_interval_s == 0.5
    elsewhere = Settings.from_env(
        {
            "TREASURER_DATA_DIR": str(tmp_path),
            "TREASURER_VAULT_PASSPHRASE_FILE": "/run/secrets/treasurer",
            "TREASURER_VAULT_SCRYPT_N": "1024",
            "TREASURER_CONFIRM_INTERVAL_S": "2.5",
        }
    )
    assert elsewhere.effective_vault_passphrase_file == Path("/run/secrets/treasurer")
    assert elsewhere.vault_scrypt_n == 1024 and elsewhere.confirm_interval_s == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TREASURER_VAULT_SCRYPT_N", "1000"),
        ("TREASURER_VAULT_SCRYPT_N", "1"),
        ("TREASURER_VAULT_SCRYPT_N", str(2**21)),
        ("TREASURER_VAULT_SCRYPT_N", "lots"),
        ("TREASURER_CONFIRM_INTERVAL_S", "0"),
        ("TREASURER_CONFIRM_INTERVAL_S", "-1"),
        ("TREASURER_CONFIRM_INTERVAL_S", "nan"),
        ("TREASURER_CONFIRM_INTERVAL_S", "soon"),
        ("TREASURER_PORT", "eighty"),
        ("TREASURER_PORT", "70000"),
        ("TREASURER_WORKERS", "-2"),
    ],
)
def test_other_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsInvalid) as caught:
        Settings.from_env({variable: value})
    assert caught.value.field == variable
    assert caught.value.message.startswith(f"{variable}: {value!r}")


def test_the_default_scrypt_cost_is_the_vaults() -> None:
    """Unset means the vault's own default, the cost that makes a stolen file expensive."""
    assert DEFAULT_SCRYPT_N == 2**18


def test_the_console_prints_a_settings_error_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``treasurer`` with a bad variable: one error line with its code, exit code 2."""
    monkeypatch.setenv("TREASURER_CHAINS", "base")
    monkeypatch.setattr("sys.argv", ["treasurer", "report"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "[settings_invalid] TREASURER_CHAINS: base needs an RPC URL" in err
    assert "Traceback" not in err


# -- the chains built from the settings -----------------------------------------------------
def test_an_rpc_chain_is_built_without_touching_the_network() -> None:
    """Building is offline; the chain id is checked against the node on first use."""
    node = build_chains(parse_chains("mychain:31338=http://127.0.0.1:9"))
    assert list(node.chains) == ["mychain"] and node.embedded == []
    assert node.chains["mychain"].network == "mychain"


def test_the_evm_demo_token_has_the_same_address_on_every_fresh_chain() -> None:
    """eth-tester's first account deploys the demo token first (nonce 0), so its address is
    fixed: the CREATE address of (deployer, 0), which the demo org file names."""
    first, second = LocalEvm(), LocalEvm()
    deployer = first.w3.eth.accounts[0]
    created = keccak(rlp.encode([bytes.fromhex(deployer[2:]), 0]))[12:]
    assert to_checksum_address(created) == EVM_DEMO_TOKEN
    assert first.token_address == second.token_address == EVM_DEMO_TOKEN
    assert (DEMO_TOKEN_SYMBOL, DEMO_TOKEN_DECIMALS) == (DEMO_ASSET_SYMBOL, DEMO_ASSET_DECIMALS)


def test_the_solana_demo_mint_has_the_same_address_on_every_fresh_chain() -> None:
    """Its keypair derives from a fixed seed."""
    assert SolanaLocal().demo_mint == SolanaLocal().demo_mint == SOLANA_DEMO_MINT
    assert DEMO_DECIMALS == DEMO_TOKEN_DECIMALS


def test_the_embedded_chains_are_built_for_their_names() -> None:
    """Registered under the names the org file uses; the faucet handles are kept."""
    node = build_chains(parse_chains(""))
    assert sorted(node.chains) == ["evm-local", "solana-local"]
    assert node.embedded == ["evm-local", "solana-local"]
    assert node.evm_local is not None and node.chains["evm-local"] is node.evm_local.chain
    assert node.chains["solana-local"] is node.solana_local


def test_the_faucet_funds_active_custodial_wallets_on_embedded_chains_only() -> None:
    """Gas money and demo tokens for each active ``custody: local`` wallet of a chain this node
    embeds; external, frozen and unbuilt-chain wallets get nothing."""
    held, frozen = str(Keypair().pubkey()), str(Keypair().pubkey())
    config = parse_org_file(custodial_demo_org("0x" + "12" * 20, held))
    node = build_chains(parse_chains("solana-local"))
    assert fund_dev_wallets(node, None) == []
    (line,) = fund_dev_wallets(node, config)
    assert "1 on solana-local" in line and "reset when the server restarts" in line
    chain = node.solana_local
    assert chain is not None
    assert chain.balance(held) == 100 * 10**9
    assert chain.balance(held, SOLANA_DEMO_MINT) == 10_000 * 10**6
    wallet = config.wallets["pb-solana-local"]
    stopped = dataclasses.replace(wallet, address=frozen, status=WalletStatus.FROZEN)
    fund_dev_wallets(node, dataclasses.replace(config, wallets={wallet.id: stopped}))
    assert chain.balance(frozen) == 0


def test_a_background_loop_logs_a_failure_retries_and_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The confirmer's loop: an exception is logged (once while it repeats) and the action
    runs again on the next tick; setting ``stop`` ends the thread."""
    calls: list[int] = []
    third = threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) >= 3:
            third.set()
        raise RuntimeError("node down")

    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="treasurer.serve"):
        thread = run_every(0.01, stop, flaky, "confirmation")
        assert third.wait(5)
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    failures = [r for r in caplog.records if "confirmation failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
