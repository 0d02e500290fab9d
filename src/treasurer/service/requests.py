"""Turning caller input into a normalized :class:`SpendRequest`, and fingerprinting it.

The fingerprint (SHA-256 over canonical JSON of the normalized request) is what idempotency
compares: a retry with the same key and the same fingerprint returns the first result; the same
key with another fingerprint is a conflict.

**Raw calldata.** An external wallet about to sign a contract call may send what it will sign:
``to`` (the contract), ``data`` (the calldata, hex) and ``value`` (native coin sent with it).
The call is decoded by :func:`treasurer.service.payment_calls.call_spend`, exactly as a
custodial payment's call is, and the decision sees the spend it really is: an ERC-20
``transfer``/``transferFrom`` hidden in the calldata is decided on its real recipient, token
and amount, an ``approve`` as an approval, any other call as a ``contract_call`` valued at its
``value``. With calldata the caller names no ``amount``, ``asset``, ``recipient``,
``contract``, ``method`` or ``spender`` (``field_not_allowed``): the bytes say them, and a
caller's word beside them could only disagree. ``kind`` is read from the calldata too. The
call itself (contract, calldata, value) is part of the fingerprint, so a retry that changes a
single byte of calldata is a conflict, never a replay; requests without calldata keep the
fingerprint they always had.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Final

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import InvalidRequest, NotFound
from treasurer.domain.facts import SpendKind, SpendRequest, TypedDataDomain, normalize_address
from treasurer.domain.money import MAX_DECIMALS, Asset, format_amount, parse_amount, parse_usd
from treasurer.domain.org import Agent, Wallet

if TYPE_CHECKING:
    from treasurer.service.payment_calls import CallSpend

_EVM_ADDRESS: Final = re.compile(r"0[xX][0-9a-fA-F]{40}")
#: Fields the calldata determines; naming them beside calldata is ``field_not_allowed``.
_DECODED_FIELDS: Final = ("amount", "asset", "recipient", "contract", "method", "spender")


@dataclass(frozen=True, slots=True)
class SpendInput:
    """What a caller asks for, before parsing (amounts are decimal strings)."""

    agent: str
    wallet: str
    amount: object
    asset: str | None
    recipient: str | None = None
    chain: str | None = None
    kind: str = "transfer"
    contract: str | None = None
    method: str | None = None
    spender: str | None = None
    typed_data: TypedDataDomain | None = None
    fee_usd: object = None
    gas_price_gwei: int | None = None
    #: A raw contract call the wallet is about to sign: contract, hex calldata, native value.
    to: str | None = None
    data: str | bytes | None = None
    value: object = None


@dataclass(frozen=True, slots=True)
class Resolved:
    request: SpendRequest
    agent: Agent
    wallet: Wallet
    asset: Asset | None
    fingerprint: str
    #: The raw call the request was decoded from (contract, calldata hex, value base units).
    call: dict[str, str] | None = None


def _kind(text: str) -> SpendKind:
    try:
        return SpendKind(text)
    except ValueError:
        allowed = ", ".join(k.value for k in SpendKind)
        raise InvalidRequest(f"kind: {text!r} is not one of {allowed}", field="kind") from None


def resolve(config: OrgConfig, spend: SpendInput) -> Resolved:
    """Look up agent, wallet and asset, parse the amount exactly, and fingerprint the request."""
    agent = config.agents.get(spend.agent)
    if agent is None:
        raise NotFound(f"agent {spend.agent!r} does not exist", field="agent")
    wallet = config.find_wallet(spend.wallet)
    if wallet is None:
        raise NotFound(
            f"wallet {spend.wallet!r} does not exist (give a wallet id or chain:address)",
            field="wallet",
        )
    call = None
    if spend.to is not None or spend.data is not None:
        spend, call = _decoded(config, spend, wallet)
    kind = _kind(spend.kind)
    asset = config.find_asset(spend.asset, wallet.chain) if spend.asset else None
    if asset is not None:
        # Most contract calls send no native coin; their outflow is valued by the call itself.
        zero_ok = kind is SpendKind.CONTRACT_CALL
        amount = parse_amount(spend.amount, asset.decimals, allow_zero=zero_ok)
    elif kind is SpendKind.SIGN_MESSAGE and spend.asset is None:
        amount = 0
    else:
        amount = parse_amount(spend.amount, MAX_DECIMALS)  # validates the form; asset unknown
    fee = None if spend.fee_usd is None else parse_usd(spend.fee_usd, field="fee_usd")
    request = SpendRequest(
        agent_id=agent.id,
        wallet_id=wallet.id,
        asset_id=asset.id if asset else spend.asset,
        amount=amount,
        kind=kind,
        recipient=spend.recipient,
        chain=spend.chain,
        contract=spend.contract,
        method=spend.method,
        spender=spend.spender,
        typed_data=spend.typed_data,
        fee_usd_micros=fee,
        gas_price_gwei=spend.gas_price_gwei,
    )
    return Resolved(request, agent, wallet, asset, fingerprint(request, call), call)


def _decoded(
    config: OrgConfig, spend: SpendInput, wallet: Wallet
) -> tuple[SpendInput, dict[str, str]]:
    """``spend`` with the fields its calldata determines, and the call as fingerprinted."""
    # payment_calls builds SpendInputs, so it imports this module: import it here, at use.
    from treasurer.service.chain_ports import ChainFamily  # noqa: PLC0415
    from treasurer.service.payment_calls import call_spend  # noqa: PLC0415

    for name, given in (("to", spend.to), ("data", spend.data)):
        if given is None:
            other = "data" if name == "to" else "to"
            raise InvalidRequest(
                f"{name}: a contract call needs both to (the contract) and data (its calldata); "
                f"only {other} was given",
                field=name,
                code="field_required",
            )
    extra = [name for name in _DECODED_FIELDS if getattr(spend, name) is not None]
    if extra:
        raise InvalidRequest(
            f"{extra[0]}: not allowed with calldata: the calldata says what the call spends "
            "(token, recipient, amount); send to, data and value only",
            field=extra[0],
            code="field_not_allowed",
        )
    assert spend.to is not None and spend.data is not None
    family = ChainFamily.EVM if _EVM_ADDRESS.fullmatch(wallet.address) else ChainFamily.SOLANA
    call: CallSpend = call_spend(config, wallet.chain, family, spend.to, spend.data, spend.value)
    decoded = replace(
        call.spend_input(spend.agent, spend.wallet),
        chain=spend.chain,
        fee_usd=spend.fee_usd,
        gas_price_gwei=spend.gas_price_gwei,
    )
    canonical = {
        "to": normalize_address(call.to),
        "data": "0x" + call.data.hex(),
        "value": str(call.value),
    }
    return decoded, canonical


def fingerprint(request: SpendRequest, call: dict[str, str] | None = None) -> str:
    typed = request.typed_data
    canonical: dict[str, object] = {
        "agent": request.agent_id,
        "wallet": request.wallet_id,
        "asset": request.asset_id,
        "amount": str(request.amount),
        "kind": request.kind.value,
        "recipient": normalize_address(request.recipient) if request.recipient else None,
        "chain": request.chain,
        "contract": normalize_address(request.contract) if request.contract else None,
        "method": request.method.lower() if request.method else None,
        "spender": normalize_address(request.spender) if request.spender else None,
        "typed_data": None
        if typed is None
        else [typed.primary_type, typed.name, typed.verifying_contract, typed.chain_id],
        "fee_usd_micros": request.fee_usd_micros,
        "gas_price_gwei": request.gas_price_gwei,
    }
    if call is not None:  # only then: requests without calldata keep their fingerprint
        canonical["call"] = call
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def request_dict(
    request: SpendRequest, asset: Asset | None, call: dict[str, str] | None = None
) -> dict[str, object]:
    """The request as recorded in the audit trail (and replayed by backtests); ``call`` is
    the raw call it was decoded from, when there was one."""
    typed = request.typed_data
    recorded: dict[str, object] = {
        "agent": request.agent_id,
        "wallet": request.wallet_id,
        "asset": request.asset_id,
        "amount": format_amount(request.amount, asset.decimals) if asset else str(request.amount),
        "amount_base_units": str(request.amount),
        "kind": request.kind.value,
        "recipient": request.recipient,
        "chain": request.chain,
        "contract": request.contract,
        "method": request.method,
        "spender": request.spender,
        "fee_usd_micros": request.fee_usd_micros,
        "gas_price_gwei": request.gas_price_gwei,
        "typed_data": None if typed is None else asdict(typed),
    }
    if call is not None:
        recorded["call"] = dict(call)
    return recorded
