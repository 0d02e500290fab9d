"""The key vault: what unlocking costs (the KDF) against what signing costs once unlocked.

The vault derives each file's key with scrypt at the keystore default (n = 2^18, r = 8, p = 1:
about a second and 256 MiB, on purpose) once, when it opens, and signs from memory after. This
bench shows the ratio, i.e. that the KDF is off the signing path:

- unlock per key: one key file decrypted (scrypt + cipher + address check), EVM and Solana;
- open: ``FileVault.open`` of the whole vault (check file + every key, in its thread pool);
- sign: one EIP-1559 transaction (eth-account) and one Solana message (Ed25519), unlocked;
  the very first EVM signature after the open is timed on its own, since that is where a lazy
  unlock would show;
- ``benchmarks/payments.py`` times the signatures inside the payment pipeline as well.

    python -m benchmarks.vault [--quick]     prints the figures

``python -m benchmarks.run --suite vault`` writes them into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from treasurer.adapters import vault_keys
from treasurer.adapters.vault import DEFAULT_SCRYPT_N, EvmSigner, FileVault
from treasurer.service.chain_ports import ChainFamily

PASSPHRASE = "bench passphrase"
TX: dict[str, object] = {
    "type": 2,
    "chainId": 1337,
    "nonce": 0,
    "to": "0x" + "22" * 20,
    "value": 1,
    "gas": 21_000,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**9,
    "data": b"",
}


def _median_s(call: Callable[[], object], count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(*, quick: bool = False, keys_per_family: int = 2) -> dict[str, float]:
    """Seconds per operation at the default KDF cost, and the unlock-to-sign ratios."""
    evm_signs, solana_signs = (20, 200) if quick else (200, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "vault"
        with FileVault.open(directory, PASSPHRASE) as vault:
            for family in (ChainFamily.EVM, ChainFamily.SOLANA):
                for _ in range(keys_per_family):
                    vault.create_key(family)
        files = vault_keys.key_files(directory)
        unlock_times: dict[ChainFamily, list[float]] = {family: [] for family in ChainFamily}
        for family, address, path in files:
            started = time.perf_counter()
            vault_keys.unlock_key(family, address, path, PASSPHRASE).forget()
            unlock_times[family].append(time.perf_counter() - started)
        unlock = {family: statistics.median(times) for family, times in unlock_times.items()}
        started = time.perf_counter()
        vault = FileVault.open(directory, PASSPHRASE)
        open_s = time.perf_counter() - started
        with vault:
            evm_address = next(a for f, a, _p in files if f is ChainFamily.EVM)
            sol_address = next(a for f, a, _p in files if f is ChainFamily.SOLANA)
            evm = vault.signer(evm_address)
            assert isinstance(evm, EvmSigner)
            sol = vault.signer(sol_address)
            started = time.perf_counter()
            evm.sign_evm_transaction(TX)  # the first signature after open: no unlock on it
            first_sign_evm = time.perf_counter() - started
            sign_evm = _median_s(lambda: evm.sign_evm_transaction(TX), evm_signs)
            sign_sol = _median_s(lambda: sol.sign_message(b"x" * 200), solana_signs)
    return {
        "scrypt_n": float(DEFAULT_SCRYPT_N),
        "keys": float(len(files)),
        "unlock_evm_s": unlock[ChainFamily.EVM],
        "unlock_solana_s": unlock[ChainFamily.SOLANA],
        "open_s": open_s,
        "first_sign_evm_tx_s": first_sign_evm,
        "sign_evm_tx_s": sign_evm,
        "sign_solana_msg_s": sign_sol,
        "unlock_to_sign_evm": unlock[ChainFamily.EVM] / sign_evm,
        "unlock_to_sign_solana": unlock[ChainFamily.SOLANA] / sign_sol,
    }


def render(results: dict[str, float]) -> list[str]:
    """A markdown section for ``docs/benchmarks.md``."""
    r = results
    return [
        "## Key vault: unlock (KDF) against signing",
        "",
        f"scrypt n = 2^{int(r['scrypt_n']).bit_length() - 1}, r = 8, p = 1 (the keystore v3 "
        f"default); {int(r['keys'])} keys. Unlocking happens once, at open; signing uses "
        "the key held in memory.",
        "",
        "| operation | time | per second |",
        "|---|---:|---:|",
        _row("unlock one EVM key (keystore v3)", r["unlock_evm_s"]),
        _row("unlock one Solana key (scrypt + AES-256-GCM)", r["unlock_solana_s"]),
        _row(f"open the vault ({int(r['keys'])} keys + check, 2 threads)", r["open_s"]),
        _row("first EIP-1559 signature after the open", r["first_sign_evm_tx_s"]),
        _row("sign one EIP-1559 transaction (unlocked)", r["sign_evm_tx_s"]),
        _row("sign one Solana message (unlocked)", r["sign_solana_msg_s"]),
        "",
        f"Unlock / sign: EVM x{r['unlock_to_sign_evm']:,.0f}, Solana "
        f"x{r['unlock_to_sign_solana']:,.0f}: what every signature would cost more if the "
        "KDF ran on the signing path.",
    ]


def _row(label: str, seconds: float) -> str:
    shown = f"{seconds * 1000:,.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:,.1f} µs"
    return f"| {label} | {shown} | {1 / seconds:,.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer signatures, same KDF cost")
    args = parser.parse_args()
    print("\n".join(render(run(quick=args.quick))))


if __name__ == "__main__":
    main()
