"""What goes wrong talking to an EVM node, as Treasurer errors with stable codes.

::

    TreasurerError
    ├── ChainUnavailable     chain_unavailable (transient): the node did not answer in time
    ├── ChainMisconfigured   chain_misconfigured: the RPC URL serves another chain id
    ├── ChainRejected        chain_rejected: the node refused the transaction (funds for gas,
    │                        nonce, fee too low); nothing was broadcast
    └── Conflict
        └── CallReverted     chain_call_reverted: executing the call would revert (token balance
                             too low, a contract that refuses), so no fee can be quoted

Why here and not in ``domain/errors.py``: only the chain adapters raise them today (the Solana
adapter uses :class:`ChainRejected` too, so this module imports nothing but the domain). They
belong to the one tree all the same (``all_error_classes`` finds them once this module is
imported), so the interfaces map their codes like any other.
"""

from __future__ import annotations

from typing import Final

from treasurer.domain.errors import Conflict, TreasurerError

_REASON_LIMIT: Final = 300


class ChainUnavailable(TreasurerError):
    """The node could not be reached or did not answer within the timeout; retry later."""

    code = "chain_unavailable"
    transient = True


class ChainMisconfigured(TreasurerError):
    """The node answers for a different chain id than the network is configured with."""

    code = "chain_misconfigured"


class ChainRejected(TreasurerError):
    """The node refused the transaction; it was not broadcast and its nonce is free again."""

    code = "chain_rejected"


class CallReverted(Conflict):
    """Executing the call against the current chain state reverts."""

    code = "chain_call_reverted"


def reason_of(exc: BaseException) -> str:
    """A short, single-line reason from a node or EVM exception (bounded for logs and audit)."""
    first = exc.args[0] if exc.args else exc
    if isinstance(first, dict):
        first = first.get("message", first)
    text = " ".join(str(first).split()) or type(exc).__name__
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"
