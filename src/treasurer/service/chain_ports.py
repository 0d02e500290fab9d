"""Ports for custodial spending: chains that move value, and the vault that signs.

A :class:`Chain` is one network (``evm-local``, ``base``, ``solana-local`` ...) reached through
an adapter: the embedded dev chains (py-evm via eth-tester, LiteSVM) and real nodes (JSON-RPC)
implement the same Protocol, so the payment pipeline never knows which it talks to. Keys never
leave the :class:`Vault`; a chain asks a :class:`Signer` to sign what it built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ChainFamily(StrEnum):
    EVM = "evm"
    SOLANA = "solana"


class TransferKind(StrEnum):
    TRANSFER = "transfer"  # native coin, or a token when ``token`` is set
    APPROVE = "approve"  # token allowance for ``recipient`` (the spender)
    CALL = "call"  # a raw contract call: ``data`` to ``recipient`` with ``amount`` native value


@dataclass(frozen=True, slots=True)
class Transfer:
    """A value movement to execute. ``token`` is the token address/mint; None = native coin.

    Amounts are base units (wei, lamports, token units x 10^decimals).

    A ``CALL`` is a raw contract call: ``recipient`` is the contract, ``amount`` the native value
    sent with it (may be zero), ``token`` is None, and ``data`` is the calldata, sent exactly as
    the caller gave it. Why never re-encoded: the decision valued the bytes the caller sent
    (decoded by :mod:`treasurer.domain.calldata`), so the bytes signed must be those bytes.
    Only EVM chains execute calls; other adapters refuse them (``call_not_supported``).
    Other kinds carry no ``data``.
    """

    sender: str
    recipient: str
    amount: int
    token: str | None = None
    kind: TransferKind = TransferKind.TRANSFER
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class FeeQuote:
    """What sending will cost at most, in the chain's native base units.

    EVM: EIP-1559 ``max_fee_per_gas`` x ``gas_limit``; Solana: the signature fee (plus any
    priority fee). ``max_fee`` is what a fee policy compares against.
    """

    max_fee: int
    gas_limit: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None


class ReceiptStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of a sent transaction: status, the fee actually paid, where it landed."""

    tx_id: str
    status: ReceiptStatus
    fee_paid: int = 0
    block: int | None = None


@dataclass(frozen=True, slots=True)
class ObservedTransfer:
    """Value that left a watched address on chain: what reconciliation compares with the ledger.

    ``(tx_id, index)`` identifies it on its network, so recording it twice is detectable:
    ``index`` is the log index of an ERC-20 ``Transfer`` event, :data:`NATIVE_INDEX` for the
    native value an EVM transaction carries, and the instruction's position in a Solana
    transaction. ``token`` is the token contract (EVM) or mint (Solana); None means the native
    coin. ``block`` is the block number or slot it landed in. ``initiator`` signed the
    transaction: the wallet itself, or a spender moving tokens under an allowance the wallet
    gave (None when the adapter cannot tell). Amounts are base units.
    """

    tx_id: str
    index: int
    sender: str
    recipient: str
    amount: int
    token: str | None
    block: int
    initiator: str | None = None


#: ``ObservedTransfer.index`` of the native value of an EVM transaction (logs count from 0).
NATIVE_INDEX = -1


@dataclass(frozen=True, slots=True)
class Simulation:
    """A dry execution: would it succeed, and why not."""

    ok: bool
    error: str | None = None


class Signer(Protocol):
    """One custodial key, unlocked in memory; signs and never reveals the key."""

    @property
    def address(self) -> str: ...

    @property
    def family(self) -> ChainFamily: ...

    def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
        """The raw signed transaction (EIP-1559 typed), ready to broadcast."""
        ...

    def sign_message(self, message: bytes) -> bytes:
        """Ed25519 signature (Solana) of ``message``; EVM signers raise."""
        ...


class Vault(Protocol):
    """Custodial keys, encrypted at rest, unlocked once per process."""

    def create_key(self, family: ChainFamily) -> str:
        """Generate a key, store it encrypted, return its address."""
        ...

    def addresses(self) -> list[tuple[ChainFamily, str]]: ...

    def signer(self, address: str) -> Signer:
        """The signer of a stored key; NotFound when the vault has no such key."""
        ...


class Chain(Protocol):
    """One network. Every method is bounded by the adapter's timeouts."""

    @property
    def network(self) -> str: ...

    @property
    def family(self) -> ChainFamily: ...

    def balance(self, address: str, token: str | None = None) -> int: ...

    def quote_fee(self, transfer: Transfer) -> FeeQuote: ...

    def simulate(self, transfer: Transfer) -> Simulation: ...

    def send(self, transfer: Transfer, signer: Signer, fee: FeeQuote) -> str:
        """Build, sign (through ``signer``) and broadcast; return the transaction id.

        EVM adapters allocate nonces so concurrent sends from one address never collide.
        """
        ...

    def receipt(self, tx_id: str) -> Receipt: ...

    # -- history, for reconciliation ------------------------------------------------------
    def head(self) -> int:
        """The newest block (Solana: slot) whose transfers are final enough to reconcile:
        the chain's latest minus the adapter's confirmation depth."""
        ...

    def outgoing(self, addresses: Sequence[str], start: int, end: int) -> list[ObservedTransfer]:
        """Every transfer out of ``addresses`` in blocks (slots) ``start`` to ``end``, both
        included, in chain order. Only successful transactions move value, so failed ones are
        left out. Callers keep ranges short (the adapter refuses more than its limit)."""
        ...
