"""What voters see and sign for a payment or a governance-mode authorization.

The spend hash (:func:`treasurer.domain.approvals.spend_hash`) binds a vote to the exact spend:

- **a payment**: its chain, the wallet's address, the counterparty (the token recipient, the
  spender of an approve, or the contract of a call), the asset, the amount in base units, and
  the calldata actually sent: the caller's bytes for a ``call``; for a token ``transfer`` or
  ``approve`` on an EVM chain, its ERC-20 encoding (so a signed transfer can never be read as
  an approval of the same amount); empty for a native transfer and on Solana, where the
  payment id the message also binds fixes the kind;
- **a governance-mode authorization**: its chain, the wallet's address, the recipient (the
  spender for an approval), the asset and the amount, with no calldata (Treasurer never sees
  the external wallet's transaction).

The hash is computed from Treasurer's own records, never from what a voter sends, so a
signature made for any other spend does not verify.
"""

from __future__ import annotations

from treasurer.domain.authorization import Authorization
from treasurer.domain.calldata import encode_approve, encode_transfer
from treasurer.domain.config import OrgConfig
from treasurer.domain.payment import Payment
from treasurer.service.approvals import Subject, subject_of
from treasurer.service.chain_ports import ChainFamily


def _wallet_address(config: OrgConfig, wallet_id: str) -> str:
    wallet = config.wallets.get(wallet_id)
    return wallet.address if wallet is not None else wallet_id


def payment_calldata(config: OrgConfig, payment: Payment, family: ChainFamily) -> str:
    """The calldata a payment sends, as ``0x`` hex (empty where there is none; see above)."""
    if payment.kind == "call":
        return payment.data or ""
    asset = config.assets.get(payment.asset_id)
    if family is not ChainFamily.EVM or asset is None or asset.is_native:
        return ""
    encode = encode_approve if payment.kind == "approve" else encode_transfer
    return "0x" + encode(payment.recipient, payment.amount).hex()


def payment_subject(config: OrgConfig, payment: Payment, authorization: Authorization) -> Subject:
    """The voting subject of a queued payment (voters see the payment id)."""
    family = _family(config, payment)
    counterparty = payment.to if payment.kind == "call" and payment.to else payment.recipient
    return subject_of(
        authorization,
        payment.id,
        sender=_wallet_address(config, payment.wallet_id),
        recipient=counterparty,
        calldata=payment_calldata(config, payment, family),
    )


def authorization_subject(config: OrgConfig, authorization: Authorization) -> Subject:
    """The voting subject of a governance-mode authorization (voters see its id)."""
    request = authorization.decision.get("request")
    spender = request.get("spender") if isinstance(request, dict) else None
    recipient = authorization.recipient or (str(spender) if spender else "")
    return subject_of(
        authorization,
        authorization.id,
        sender=_wallet_address(config, authorization.wallet_id),
        recipient=recipient,
    )


def _family(config: OrgConfig, payment: Payment) -> ChainFamily:
    """The chain family, read from the wallet's address (EVM addresses are ``0x`` hex; base58
    has no ``0``), so every node computes the same hash, with or without chains of its own."""
    address = _wallet_address(config, payment.wallet_id)
    return ChainFamily.EVM if address.lower().startswith("0x") else ChainFamily.SOLANA
