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

import ast
import re
from typing import Final

from treasurer.domain.errors import Conflict, TreasurerError

_REASON_LIMIT: Final = 300
#: eth-tester's form of revert data it could not decode: ``execution reverted: b'G\\xe7..'``.
_BYTES_REVERT = re.compile(r"(?P<prefix>.*?execution reverted: ?)(?P<data>b'[^']*'|b\"[^\"]*\")")
#: web3's form of a custom error (``ContractCustomError``): the bare revert data in hex.
_HEX_REVERT = re.compile(r"0x(?:[0-9a-fA-F]{2}){4,}")
_SELECTOR_BYTES: Final = 4


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
    """A short, single-line reason from a node or EVM exception (bounded for logs and audit).

    Revert data that is not a ``require`` message (a Solidity custom error, or a bare
    ``revert()``) reaches us as raw bytes; it is named as such ("custom error 0x47e794ec",
    "no reason given") so a simulation says why a call fails in words a caller can act on.
    """
    first = exc.args[0] if exc.args else exc
    if isinstance(first, dict):
        first = first.get("message", first)
    text = _readable_revert(" ".join(str(first).split())) or type(exc).__name__
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def _readable_revert(text: str) -> str:
    if _HEX_REVERT.fullmatch(text):
        return "execution reverted: " + _describe_revert_data(bytes.fromhex(text[2:]))
    found = _BYTES_REVERT.fullmatch(text)
    if found is None:
        return text
    try:
        data = ast.literal_eval(found.group("data"))
    except (ValueError, SyntaxError):
        return text
    if not isinstance(data, bytes):
        return text
    return found.group("prefix").rstrip() + " " + _describe_revert_data(data)


def _describe_revert_data(data: bytes) -> str:
    if not data:
        return "(no reason given)"
    selector = "0x" + data[:_SELECTOR_BYTES].hex()
    rest = len(data) - _SELECTOR_BYTES
    return f"custom error {selector}" + (f" with {rest} bytes of arguments" if rest > 0 else "")
