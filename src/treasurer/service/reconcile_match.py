"""Matching an outgoing transfer to what was authorized for it.

The rules, in order (``docs/reconciliation.md`` explains each one):

1. **By transaction.** The custodial payment that sent the transaction, and every governance
   authorization captured with its hash, are what the transaction was *meant* to do. Each
   transfer of the transaction is paired with one of them that it matches exactly (same
   asset, same recipient unless none was authorized, the amount captured): ``payment`` or
   ``matched``. A transfer left over while one of them is still unpaired was captured for
   something it is not: ``mismatch``.
2. **Allowance.** A token transfer signed by someone other than the wallet (a spender using an
   allowance) is covered by a captured ``approve`` of that token to that spender, which
   already counted the whole allowance: ``allowance``.
3. **By amount and recipient.** An authorization captured *without* a hash that the transfer
   matches exactly, and not matched to another transfer yet: ``matched``. Else an open
   (``pending``, unexpired) authorization of the same asset and recipient for at least the
   amount: the watcher captures it with the transfer's hash and amount (the integration sent
   it and has not captured yet; its own capture then finds it captured): ``matched``.
4. **Grace.** While the wallet holds a reserving authorization of the same asset, a transfer
   younger than the capture grace period waits (``awaiting_capture``): the integration may be
   about to capture it with this very hash (rule 1 then decides, mismatch included).
5. Otherwise: ``unauthorized``.

Only value-moving authorizations (``transfer``, ``contract_call``) pair with transfers; an
``approve`` moves nothing by itself and serves rule 2 only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from treasurer.domain.authorization import RESERVING_STATES, Authorization, AuthState
from treasurer.domain.config import OrgConfig
from treasurer.domain.facts import normalize_address
from treasurer.service.chain_ports import ObservedTransfer
from treasurer.service.reconcile_ports import TransferStatus

_VALUE_KINDS = frozenset({"transfer", "contract_call"})
_NATIVE = "native"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one transfer is. ``authorization`` is what it matched (or mismatched, or the
    approval it falls under); ``capture`` asks the watcher to capture that open authorization
    with this transfer; ``differences`` name what a mismatch got wrong."""

    status: TransferStatus
    authorization: Authorization | None = None
    capture: bool = False
    differences: tuple[str, ...] = ()
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expected:
    """A spend a transaction was meant to carry, and the status a transfer matching it gets."""

    authorization: Authorization
    status: TransferStatus


def kind_of(auth: Authorization) -> str:
    request = auth.decision.get("request")
    kind = request.get("kind") if isinstance(request, dict) else None
    return kind if isinstance(kind, str) else "transfer"


def spender_of(auth: Authorization) -> str | None:
    request = auth.decision.get("request")
    spender = request.get("spender") if isinstance(request, dict) else None
    return spender if isinstance(spender, str) else None


def token_of(config: OrgConfig, asset_id: str | None) -> str | None:
    """The token address (normalized) of a registered asset, :data:`_NATIVE` for a native
    coin, None when the asset is unknown (it then matches nothing)."""
    asset = config.assets.get(asset_id or "")
    if asset is None:
        return None
    return _NATIVE if asset.address is None else normalize_address(asset.address)


def _token(transfer: ObservedTransfer) -> str:
    return _NATIVE if transfer.token is None else normalize_address(transfer.token)


def differences(
    config: OrgConfig, auth: Authorization, transfer: ObservedTransfer, *, exact_amount: int
) -> tuple[str, ...]:
    """What ``transfer`` does that ``auth`` did not authorize: ``asset``, ``recipient``,
    ``amount`` (against ``exact_amount``). A missing recipient on the authorization matches
    any: nothing was said to contradict."""
    found = []
    if token_of(config, auth.asset_id) != _token(transfer):
        found.append("asset")
    if auth.recipient is not None and normalize_address(auth.recipient) != normalize_address(
        transfer.recipient
    ):
        found.append("recipient")
    if transfer.amount != exact_amount:
        found.append("amount")
    return tuple(found)


def expected_amount(auth: Authorization) -> int:
    """What a captured authorization says left the wallet (the authorized amount before)."""
    return auth.captured_amount if auth.captured_amount is not None else auth.amount


def pair_by_tx(
    config: OrgConfig,
    transfers: Sequence[ObservedTransfer],
    expected: Sequence[Expected],
) -> dict[int, Verdict]:
    """Rule 1 for the transfers of one transaction: verdicts by position in ``transfers``
    (transfers with no verdict go on to the other rules)."""
    open_ = [e for e in expected if kind_of(e.authorization) in _VALUE_KINDS]
    verdicts: dict[int, Verdict] = {}
    for position, transfer in enumerate(transfers):
        for candidate in open_:
            auth = candidate.authorization
            if not differences(config, auth, transfer, exact_amount=expected_amount(auth)):
                verdicts[position] = Verdict(candidate.status, auth)
                open_.remove(candidate)
                break
    for position, transfer in enumerate(transfers):
        if position in verdicts or not open_:
            continue
        auth = open_.pop(0).authorization
        diffs = differences(config, auth, transfer, exact_amount=expected_amount(auth))
        verdicts[position] = Verdict(TransferStatus.MISMATCH, auth, differences=diffs)
    return verdicts


def by_allowance(
    config: OrgConfig,
    wallet_address: str,
    transfer: ObservedTransfer,
    candidates: Sequence[Authorization],
) -> Verdict | None:
    """Rule 2."""
    initiator = transfer.initiator
    if initiator is None or transfer.token is None:
        return None
    if normalize_address(initiator) == normalize_address(wallet_address):
        return None
    for auth in candidates:
        spender = spender_of(auth)
        if (
            auth.state is AuthState.CAPTURED
            and kind_of(auth) == "approve"
            and spender is not None
            and normalize_address(spender) == normalize_address(initiator)
            and token_of(config, auth.asset_id) == _token(transfer)
        ):
            return Verdict(TransferStatus.ALLOWANCE, auth, detail={"spender": initiator})
    return None


def by_amount(
    config: OrgConfig,
    transfer: ObservedTransfer,
    candidates: Sequence[Authorization],
    taken: set[str],
    now: datetime,
) -> Verdict | None:
    """Rule 3; ``taken`` holds authorizations already matched to another transfer."""
    usable = [a for a in candidates if a.id not in taken and kind_of(a) in _VALUE_KINDS]
    for auth in usable:
        if auth.state is AuthState.CAPTURED and auth.tx_hash is None:
            exact = expected_amount(auth)
            if not differences(config, auth, transfer, exact_amount=exact):
                return Verdict(TransferStatus.MATCHED, auth, detail={"matched_by": "amount"})
    for auth in usable:
        if auth.state is not AuthState.PENDING or (
            auth.expires_at is not None and auth.expires_at <= now
        ):
            continue
        if transfer.amount > auth.amount:
            continue
        diffs = differences(config, auth, transfer, exact_amount=transfer.amount)
        if not diffs:
            detail: dict[str, object] = {"matched_by": "amount", "captured_by": "reconciliation"}
            return Verdict(TransferStatus.MATCHED, auth, capture=True, detail=detail)
    return None


def may_still_be_captured(
    config: OrgConfig,
    transfer: ObservedTransfer,
    candidates: Sequence[Authorization],
    observed_at: datetime,
    now: datetime,
    grace_s: float,
) -> bool:
    """Rule 4."""
    if (now - observed_at).total_seconds() >= grace_s:
        return False
    return any(
        a.state in RESERVING_STATES and token_of(config, a.asset_id) == _token(transfer)
        for a in candidates
    )
