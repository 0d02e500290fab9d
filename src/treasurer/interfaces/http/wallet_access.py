"""Which wallets an agent may spend from: its own, and another agent's looks like none at all.

Shared by the authorization and payment routes so both refuse a foreign wallet the same way:
the same 404 words as for a wallet that does not exist (probing ids reveals nothing), and an
``access.denied`` audit event, because an agent reaching for another agent's wallet is
something an operator wants to see.
"""

from __future__ import annotations

from typing import NoReturn

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import NotFound
from treasurer.interfaces.http.deps import HttpContext
from treasurer.service.ports import AuditRecord


def require_own_wallet(ctx: HttpContext, who: Principal, agent: str, ref: str) -> None:
    """Pass unless ``ref`` names an existing wallet of another agent (a missing wallet is
    left to the use case, which reports it with its own words)."""
    wallet = ctx.config.find_wallet(ref)
    if wallet is not None and wallet.agent_id != agent:
        refuse_foreign_wallet(ctx, who, agent, wallet.id, ref)


def refuse_foreign_wallet(
    ctx: HttpContext, who: Principal, agent: str, wallet_id: str, ref: str
) -> NoReturn:
    """Another agent's wallet looks like a missing one to the caller, and the try is audited."""
    record = AuditRecord(
        "access.denied",
        who.actor,
        f"wallet:{wallet_id}",
        {"reason": "wallet_not_owned", "agent": agent},
    )
    ctx.credentials.store.record_audit([record], ctx.governance.clock.now())
    # Same words as for a wallet that does not exist at all.
    raise NotFound(
        f"wallet {ref!r} does not exist (give a wallet id or chain:address)", field="wallet"
    )
