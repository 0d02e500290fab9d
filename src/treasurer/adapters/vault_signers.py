"""Signers over unlocked keys: one per key, held by the vault, never revealing the key.

A signer keeps its key object in one private slot and hands out only signatures and signed
transactions. ``repr`` shows the family and address; pickling is refused, so a key cannot leave
the process by a log line or a queue. ``forget`` (called by the vault's ``close``) drops the
key, and every later call fails with ``vault_closed``.

Solana adapters never receive the ``solders`` ``Keypair``: its ``str()`` is the base58 secret, so
one careless f-string would leak it. They pass the message they built instead:

- :meth:`SolanaSigner.sign_solana_transaction` — a legacy ``Message`` plus the recent blockhash
  → a signed ``Transaction`` (this key as the only required signer, normally the fee payer).
- :meth:`SolanaSigner.sign_versioned_transaction` — a ``MessageV0`` (blockhash inside) → a
  signed ``VersionedTransaction``.
- Several signers: each signs the serialized message with :meth:`sign_message`, and the adapter
  assembles ``Transaction.populate(message, signatures)`` in the message's signer order. This
  path needs only the ``Signer`` port, so an adapter written against the port works with any
  signer, fakes included; the two methods above are conveniences for the concrete class.
"""

from __future__ import annotations

from typing import NoReturn, cast

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_account.types import TransactionDictType
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageHeader, MessageV0
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction

from treasurer.adapters.vault_errors import VaultError
from treasurer.service.chain_ports import ChainFamily


def _closed(address: str) -> VaultError:
    return VaultError(
        f"the vault was closed; the key of {address} is no longer in memory", code="vault_closed"
    )


class _NoPickle:
    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        raise TypeError("signers hold private keys and cannot be pickled or copied")


class EvmSigner(_NoPickle):
    """An EVM key (secp256k1): EIP-1559 transactions and EIP-191 personal messages."""

    __slots__ = ("_account", "_address")

    def __init__(self, account: LocalAccount) -> None:
        self._account: LocalAccount | None = account
        self._address = str(account.address)

    @property
    def address(self) -> str:
        """The EIP-55 checksum address."""
        return self._address

    @property
    def family(self) -> ChainFamily:
        return ChainFamily.EVM

    def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
        """The raw signed EIP-1559 transaction (type 2 envelope), ready to broadcast.

        ``transaction`` is an eth-account transaction dict (``chainId``, ``nonce``, ``to``,
        ``value``, ``gas``, ``maxFeePerGas``, ``maxPriorityFeePerGas``, ``data``). A missing
        ``chainId`` (replayable on every chain) or a legacy ``gasPrice`` is refused.
        """
        if "chainId" not in transaction or "gasPrice" in transaction:
            raise VaultError(
                "refusing to sign: an EIP-1559 transaction needs chainId and maxFeePerGas, "
                "not gasPrice",
                code="transaction_not_eip1559",
            )
        signed = self._live().sign_transaction(cast(TransactionDictType, transaction))
        return bytes(signed.raw_transaction)

    def sign_personal_message(self, message: bytes) -> bytes:
        """The 65-byte EIP-191 ``personal_sign`` signature (r || s || v) of ``message``."""
        signed = self._live().sign_message(encode_defunct(primitive=message))
        return bytes(signed.signature)

    def sign_message(self, message: bytes) -> bytes:
        """Not for EVM keys: raw-message signing is Ed25519 (Solana). Use
        :meth:`sign_personal_message` for EIP-191."""
        raise VaultError(
            f"{self._address} is an EVM key: sign_message is for Solana keys; "
            "use sign_personal_message (EIP-191)",
            code="signer_family_mismatch",
        )

    def _live(self) -> LocalAccount:
        if self._account is None:
            raise _closed(self._address)
        return self._account

    def forget(self) -> None:
        """Drop the key (the vault's ``close`` calls this); later calls fail."""
        self._account = None

    def __repr__(self) -> str:
        return f"EvmSigner(address={self._address!r})"


class SolanaSigner(_NoPickle):
    """A Solana key (Ed25519): raw messages and transactions built by the Solana adapter."""

    __slots__ = ("_address", "_keypair", "_pubkey")

    def __init__(self, keypair: Keypair) -> None:
        self._keypair: Keypair | None = keypair
        self._pubkey = keypair.pubkey()
        self._address = str(self._pubkey)

    @property
    def address(self) -> str:
        """The base58 public key."""
        return self._address

    @property
    def family(self) -> ChainFamily:
        return ChainFamily.SOLANA

    def sign_message(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(self._live().sign_message(message))

    def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
        """Not for Solana keys."""
        raise VaultError(
            f"{self._address} is a Solana key and cannot sign an EVM transaction",
            code="signer_family_mismatch",
        )

    def sign_solana_transaction(self, message: Message, recent_blockhash: Hash) -> Transaction:
        """``message`` with ``recent_blockhash``, signed by this key, its only required signer.

        For several required signers, collect :meth:`sign_message` signatures over
        ``bytes(message)`` (blockhash set) and use ``Transaction.populate``.
        """
        self._require_only_signer(list(message.account_keys), message.header)
        return Transaction([self._live()], message, recent_blockhash)

    def sign_versioned_transaction(self, message: MessageV0) -> VersionedTransaction:
        """A v0 ``message`` (its blockhash inside), signed by this key, its only signer."""
        self._require_only_signer(list(message.account_keys), message.header)
        return VersionedTransaction(message, [self._live()])

    def _require_only_signer(self, keys: list[Pubkey], header: MessageHeader) -> None:
        required = header.num_required_signatures
        if required != 1 or not keys or keys[0] != self._pubkey:
            raise VaultError(
                f"refusing to sign: the message must have {self._address} as its only "
                f"required signer (it requires {required}); sign several with sign_message",
                code="signer_not_required",
            )

    def _live(self) -> Keypair:
        if self._keypair is None:
            raise _closed(self._address)
        return self._keypair

    def forget(self) -> None:
        """Drop the key (the vault's ``close`` calls this); later calls fail."""
        # Best effort: this is the only reference, and ed25519-dalek wipes its signing key
        # when the Rust object drops. Copies made by Python code cannot be wiped.
        self._keypair = None

    def __repr__(self) -> str:
        return f"SolanaSigner(address={self._address!r})"
