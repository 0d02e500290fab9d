"""The budgets of a backtest: an in-memory ledger that only the simulated decisions move.

A backtest must never touch the real balance rows (a draft that allows more would otherwise
"spend" real headroom), and it must not read them either: the real rows hold what the *current*
policies let through, while a stricter draft would have let through less, and a looser one
more. So the replay keeps its own ledger, posting each spend the draft allows, and feeds its
balances to the pure decision exactly as the store's balances are fed in production.

Calendar and lifetime budgets are keyed by their claim key (which names the period); rolling
windows keep every posting with its time and sum those still inside the window, so a rolling
budget frees up in the replay as it did in reality.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from treasurer.domain.budgets import BudgetBalance, BudgetClaim


class SimulatedLedger:
    """Posted USD and counts per budget, as the draft's decisions would have left them."""

    def __init__(self) -> None:
        self._fixed: dict[str, tuple[int, int]] = {}
        self._rolling: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)

    def balances(self, claims: Iterable[BudgetClaim], now: datetime) -> dict[str, BudgetBalance]:
        """The balance of every claim's budget as of ``now``."""
        found: dict[str, BudgetBalance] = {}
        for claim in claims:
            if claim.window.rolling_s is not None:
                start = now.timestamp() - claim.window.rolling_s
                inside = [usd for at, usd in self._rolling[_rolling_key(claim)] if at > start]
                found[claim.key] = BudgetBalance(
                    posted_micros=sum(inside), posted_count=len(inside)
                )
            else:
                micros, count = self._fixed.get(claim.key, (0, 0))
                found[claim.key] = BudgetBalance(posted_micros=micros, posted_count=count)
        return found

    def post(self, claims: Iterable[BudgetClaim], usd_micros: int, now: datetime) -> None:
        """Record a spend of ``usd_micros`` on every budget it claims (one count each)."""
        for claim in claims:
            if claim.window.rolling_s is not None:
                self._rolling[_rolling_key(claim)].append((now.timestamp(), usd_micros))
            else:
                micros, count = self._fixed.get(claim.key, (0, 0))
                self._fixed[claim.key] = (micros + usd_micros, count + 1)


def _rolling_key(claim: BudgetClaim) -> tuple[str, str]:
    """A rolling budget is one sliding window per policy (and counterparty), not per period."""
    return claim.policy_id, claim.subject
