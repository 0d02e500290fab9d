"""``treasurer init --demo`` prepares custodial mode: passphrase, vault, keys, demo wallets.

``init`` runs as a real process (``TREASURER_DATA_DIR`` in a temporary directory) once for the
module; the checks then read what it left behind. The vault's scrypt cost is lowered through
``TREASURER_VAULT_SCRYPT_N`` so the test does not spend seconds on key derivation; the files
are otherwise exactly what a real init writes.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from treasurer.adapters.vault import FileVault, VaultLocked, export_private_key
from treasurer.bootstrap import open_governance
from treasurer.bootstrap.chains import (
    EVM_DEMO_TOKEN,
    SOLANA_DEMO_MINT,
    build_chains,
    fund_dev_wallets,
)
from treasurer.bootstrap.custody import export_key, open_vault
from treasurer.bootstrap.demo import EVM_WALLET, SOLANA_WALLET
from treasurer.domain.errors import TreasurerError
from treasurer.domain.org import Custody
from treasurer.domain.payment import PaymentState
from treasurer.service.chain_ports import ChainFamily
from treasurer.settings import Settings

pytestmark = pytest.mark.slow

TREASURER = [sys.executable, "-m", "treasurer.bootstrap.cli"]
SHOP_EVM = "0x9999999999999999999999999999999999999999"
SHOP_SOLANA = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


@dataclass(frozen=True)
class Initialized:
    """A data directory after ``treasurer init --demo``, and how to run the CLI on it."""

    data: Path
    env: dict[str, str]
    stdout: str

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TREASURER, *args],
            env=self.env | extra_env,
            cwd=self.data.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @property
    def passphrase(self) -> str:
        return (self.data / "vault.passphrase").read_text(encoding="utf-8").strip()


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURER_")}
    return env | {
        "TREASURER_DATA_DIR": str(data),
        "TREASURER_VAULT_SCRYPT_N": "16",
        "COLUMNS": "400",  # one printed line per message, however long the paths
    }


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory) -> Initialized:
    data = tmp_path_factory.mktemp("init") / "data"
    env = _env(data)
    done = subprocess.run(
        [*TREASURER, "init", "--demo"],
        env=env,
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Initialized(data, env, done.stdout)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _vault_addresses(init: Initialized) -> dict[ChainFamily, str]:
    with FileVault.open(init.data / "vault", init.passphrase) as vault:
        return dict(vault.addresses())


def test_init_writes_an_owner_only_passphrase_file_and_says_where(init: Initialized) -> None:
    """The passphrase file is 0600 like admin.key, the vault 0700, each key file 0600; the
    output names both, and says to back the passphrase up."""
    passphrase_file, vault = init.data / "vault.passphrase", init.data / "vault"
    assert _mode(passphrase_file) == 0o600 and _mode(init.data / "admin.key") == 0o600
    assert _mode(vault) == 0o700
    key_files = sorted(vault.glob("*.json"))
    assert len(key_files) == 3  # the check file and two keys
    assert all(_mode(path) == 0o600 for path in key_files)
    assert len(init.passphrase) == 64 and int(init.passphrase, 16) >= 0  # 32 random bytes
    assert f"Vault passphrase written to {passphrase_file.resolve()}" in init.stdout
    assert f"Key vault: {vault.resolve()}" in init.stdout
    assert "back it up" in init.stdout


def test_the_vault_files_hold_no_plaintext_key(init: Initialized) -> None:
    """Neither key appears in any file of the vault, in any usual encoding."""
    addresses = _vault_addresses(init)
    vault = init.data / "vault"
    evm_key = export_private_key(vault, addresses[ChainFamily.EVM], init.passphrase)
    solana_key = export_private_key(vault, addresses[ChainFamily.SOLANA], init.passphrase)
    evm_raw = bytes.fromhex(evm_key[2:])
    solana_raw = bytes(Keypair.from_base58_string(solana_key))
    forms = [
        evm_key[2:].lower().encode(),
        evm_key[2:].upper().encode(),
        evm_raw,
        base64.b64encode(evm_raw),
        solana_key.encode(),
        solana_raw[:32],
        solana_raw[:32].hex().encode(),
        base64.b64encode(solana_raw[:32]),
        str(Pubkey.from_bytes(solana_raw[:32])).encode(),  # base58 of the seed
    ]
    for path in vault.iterdir():
        content = path.read_bytes()
        assert not [form for form in forms if form in content], path.name
    assert init.passphrase.encode() not in b"".join(p.read_bytes() for p in vault.iterdir())


def test_the_demo_org_has_custodial_wallets_whose_keys_are_in_the_vault(
    init: Initialized,
) -> None:
    """procurement_bot gets one custodial wallet per embedded chain, at the vault's
    addresses; the demo stablecoin is registered at its fixed addresses; the packaged
    external wallets are still there."""
    addresses = _vault_addresses(init)
    with open_governance(init.settings.effective_database_url) as gov:
        config = gov.cache.get()
    evm, solana = config.wallets[EVM_WALLET], config.wallets[SOLANA_WALLET]
    assert (evm.chain, evm.address) == ("evm-local", addresses[ChainFamily.EVM])
    assert (solana.chain, solana.address) == ("solana-local", addresses[ChainFamily.SOLANA])
    for wallet in (evm, solana):
        assert (wallet.agent_id, wallet.custody, wallet.vendor) == (
            "procurement_bot",
            Custody.LOCAL,
            "treasurer",
        )
    assert config.assets["evm-local:DUSD"].address == EVM_DEMO_TOKEN
    assert config.assets["solana-local:DUSD"].address == SOLANA_DEMO_MINT
    assert config.assets["evm-local:DUSD"].price_source == "fixed"
    assert config.assets["solana-local:SOL"].price_source == "manual"
    assert config.wallets["pb-base"].custody is Custody.EXTERNAL
    assert f"{EVM_WALLET} {addresses[ChainFamily.EVM]} (evm-local)" in init.stdout


def test_export_returns_the_key_of_the_address(init: Initialized) -> None:
    """What ``treasurer vault export`` calls: the configured passphrase opens the one file."""
    addresses = _vault_addresses(init)
    evm_key = export_key(init.settings, addresses[ChainFamily.EVM])
    assert Account.from_key(evm_key).address == addresses[ChainFamily.EVM]
    solana_key = export_key(init.settings, addresses[ChainFamily.SOLANA])
    assert str(Keypair.from_base58_string(solana_key).pubkey()) == addresses[ChainFamily.SOLANA]


def test_vault_export_prints_the_key_and_refuses_a_wrong_passphrase(init: Initialized) -> None:
    """``treasurer vault export ADDRESS`` through the console: the key on stdout; with a
    wrong passphrase one error line naming its source, no key and no traceback."""
    address = _vault_addresses(init)[ChainFamily.EVM]
    exported = init.run("vault", "export", address, "--i-understand")
    assert exported.returncode == 0, exported.stderr
    assert Account.from_key(exported.stdout.strip()).address == address
    refused = init.run(
        "vault", "export", address, "--i-understand", TREASURER_VAULT_PASSPHRASE="wrong"
    )
    assert refused.returncode != 0 and refused.stdout == ""
    err = " ".join(refused.stderr.split())
    assert "[vault_passphrase_wrong]" in err and "$TREASURER_VAULT_PASSPHRASE" in err
    assert "Traceback" not in refused.stderr


def test_a_wrong_passphrase_is_a_clear_error(init: Initialized) -> None:
    """init (and serve) refuse with one line naming the passphrase's source, no traceback;
    export raises ``VaultLocked`` saying the same."""
    refused = init.run("init", TREASURER_VAULT_PASSPHRASE="not the passphrase")
    assert refused.returncode != 0
    err = " ".join(refused.stderr.split())
    assert "[vault_passphrase_wrong] wrong vault passphrase: $TREASURER_VAULT_PASSPHRASE" in err
    assert "Traceback" not in refused.stderr
    wrong = Settings.from_env(init.env | {"TREASURER_VAULT_PASSPHRASE": "not the passphrase"})
    address = _vault_addresses(init)[ChainFamily.EVM]
    with pytest.raises(VaultLocked, match=r"TREASURER_VAULT_PASSPHRASE does not decrypt"):
        export_key(wrong, address)


def test_init_again_keeps_the_passphrase_the_keys_and_the_org(init: Initialized) -> None:
    """``make run`` runs ``init --demo`` on every start: nothing may be replaced."""
    before = {path.name: path.read_bytes() for path in (init.data / "vault").iterdir()}
    passphrase = init.passphrase
    again = init.run("init", "--demo")
    assert again.returncode == 0, again.stderr
    assert "(kept from an earlier init)" in again.stdout
    assert "Demo organization applied" not in again.stdout
    assert init.passphrase == passphrase
    assert {path.name: path.read_bytes() for path in (init.data / "vault").iterdir()} == before


def test_the_demo_agent_pays_in_process_within_its_tiers(init: Initialized) -> None:
    """The vault and fresh embedded chains behind ``open_governance``: the faucet funds the
    demo wallets; $25 is instant, $150 notifies, $250 is above the per-transaction maximum;
    the confirmer captures what landed."""
    settings = init.settings
    node = build_chains(settings.chains)
    with (
        open_vault(settings) as vault,
        open_governance(settings.effective_database_url, chains=node.chains, vault=vault) as gov,
    ):
        assert fund_dev_wallets(node, gov.cache.peek())
        spend = {"agent": "procurement_bot", "asset": "DUSD"}
        small = gov.pay(**spend, wallet=EVM_WALLET, amount="25.00", recipient=SHOP_EVM)
        larger = gov.pay(**spend, wallet=SOLANA_WALLET, amount="150.00", recipient=SHOP_SOLANA)
        too_big = gov.pay(**spend, wallet=EVM_WALLET, amount="250.00", recipient=SHOP_EVM)
        assert (small.state, small.payment.tier) == (PaymentState.BROADCAST, "instant")
        assert (larger.state, larger.payment.tier) == (PaymentState.BROADCAST, "notify")
        assert too_big.state is PaymentState.DENIED
        assert "agent_per_transaction_limit_exceeded" in too_big.codes
        assert gov.confirm_payments() == 2
        assert gov.payment(small.id).state is PaymentState.CONFIRMED
        assert gov.payment(larger.id).state is PaymentState.CONFIRMED
        assert node.solana_local is not None
        assert node.solana_local.balance(SHOP_SOLANA, SOLANA_DEMO_MINT) == 150 * 10**6


def test_without_chains_and_a_vault_pay_says_payments_are_not_configured(
    init: Initialized,
) -> None:
    """Governance-only embedded use: a clear ``payments_not_configured``; giving chains
    without a vault is refused at open."""
    url = init.settings.effective_database_url
    with open_governance(url) as gov, pytest.raises(TreasurerError) as caught:
        gov.pay(agent="procurement_bot", wallet=EVM_WALLET, amount="1", asset="DUSD")
    assert caught.value.code == "payments_not_configured"
    with pytest.raises(ValueError, match="both chains and a vault"):
        open_governance(url, chains={})


def test_a_passphrase_from_the_environment_writes_no_file(tmp_path: Path) -> None:
    """With ``TREASURER_VAULT_PASSPHRASE`` set, init binds the vault to it and writes no
    passphrase file (the secret stays wherever the operator keeps it). Forgetting to set it
    next time is an error, never a fresh passphrase for an existing vault."""
    data = tmp_path / "data"
    env = _env(data) | {"TREASURER_VAULT_PASSPHRASE": "from a secret manager"}
    done = subprocess.run(
        [*TREASURER, "init"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Vault passphrase: from $TREASURER_VAULT_PASSPHRASE." in done.stdout
    assert not (data / "vault.passphrase").exists()
    assert (data / "vault" / "vault-check.json").is_file()
    with FileVault.open(data / "vault", "from a secret manager") as vault:
        assert vault.addresses() == []
    forgotten = subprocess.run(
        [*TREASURER, "init"],
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert forgotten.returncode != 0
    assert "[vault_passphrase_missing]" in forgotten.stderr
    assert "exists but no passphrase is configured" in " ".join(forgotten.stderr.split())
    assert not (data / "vault.passphrase").exists()  # a new one could never open the vault
