"""What a transfer will do on Solana before it is signed: instructions, payer and costs.

One plan feeds ``quote_fee``, ``simulate`` and ``send`` alike, so the quoted cost, the
simulated transaction and the signed one are the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from treasurer.domain.errors import AmountError
from treasurer.domain.spl import MAX_U64

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
