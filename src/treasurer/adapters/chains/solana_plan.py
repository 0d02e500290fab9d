"""What a transfer will do on Solana before it is signed: instructions, payer and costs.

One plan feeds ``quote_fee``, ``simulate`` and ``send`` alike, so the quoted cost, the
simulated transaction and the signed one are the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from treasurer.domain.errors import AmountError, InvalidRequest
from treasurer.domain.spl import MAX_U64
from treasurer.service.chain_ports import Transfer, TransferKind

#: The base fee Solana charges per signature (``lamports_per_signature``).
LAMPORTS_PER_SIGNATURE: Final = 5_000


@dataclass(frozen=True, slots=True)
class Plan:
    """A transaction before signing. ``rent`` is the deposit of accounts it creates.

    Only the sender signs (it is also the fee payer), hence one signature by default.
    """

    instructions: list[Instruction]
    payer: Pubkey
    rent: int = 0
    signatures: int = field(default=1)

    @property
    def cost(self) -> int:
        """Lamports leaving the payer beyond the amount: signature fees plus rent deposits."""
        return self.signatures * LAMPORTS_PER_SIGNATURE + self.rent


def check_amount(amount: int, *, allow_zero: bool) -> None:
    """Amounts are u64 base units on Solana; zero only where it means something (approve 0)."""
    if amount < 0:
        raise AmountError("amount is negative", field="amount", code="amount_negative")
    if amount == 0 and not allow_zero:
        raise AmountError("amount is zero", field="amount", code="amount_zero")
    if amount > MAX_U64:
        raise AmountError(
            "amount exceeds the u64 range of Solana amounts",
            field="amount",
            code="amount_too_large",
        )


def check_kind(transfer: Transfer) -> None:
    """Solana moves SOL and SPL tokens and sets allowances; it has no raw ``CALL``.

    Why refuse rather than ignore: a ``CALL`` names its contract as the recipient and its native
    value as the amount, so a planner that did not look at the kind would turn it into a SOL
    transfer of that value. The payment service refuses calls on Solana before they get here;
    this is the adapter's own guard.
    """
    if transfer.kind is TransferKind.CALL or transfer.data:
        raise InvalidRequest(
            "contract calls with calldata are EVM-only; on Solana, pay with a transfer or an "
            "approve",
            field="kind",
            code="call_not_supported",
        )
