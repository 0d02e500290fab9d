"""The Fireblocks API Co-Signer callback handler: Treasurer decides before Fireblocks signs.

Wire format, as Fireblocks documents it (developers.fireblocks.com: "API Co-signer Callback
Handler", "Approve transactions" and "Callback Handler response object"; the reference handler
``fireblocks/developers-hub/plugin_based_callback``):

- The Co-Signer POSTs to ``<callback URL>/v2/tx_sign_request``; the request body *is* a JWT,
  RS256, signed with the Co-Signer's private key. The handler verifies it with the
  Co-Signer's public key (configured here as ``cosigner_public_key``).
- It must answer within 30 seconds with a JWT, RS256, signed with the callback handler's
  private key (``callback_private_key``; its public key is what the Co-Signer was given),
  whose payload is ``{"action": "APPROVE" | "REJECT" | "RETRY", "requestId": <the request's
  requestId>, "rejectionReason": <free text, with REJECT>}``. ``REJECT`` fails a signing
  request permanently; ``RETRY`` makes the Co-Signer ask again later with identical
  parameters (by default every 3 minutes for an hour).

Request fields this handler relies on (the documented transaction signing request):

==========================  =================================================================
``requestId``               echoed in the answer (required)
``txId``                    Fireblocks' transaction id: the idempotency reference, so the
                            approval stage, the signing stage and every RETRY share one
                            authorization
``operation``               ``TRANSFER`` is governed as a transfer; ``CONTRACT_CALL`` as a raw
                            call when ``extraParameters.contractCallData`` (the field name of
                            Fireblocks' transaction API) carries the calldata; anything else
                            (``RAW``, ``TYPED_MESSAGE``, ``MINT``, ``BURN``...) is refused
``sourceType``/``sourceId`` the vault account the funds leave: ``sourceType`` must be ``VAULT``
``asset``                   Fireblocks' asset id, mapped to a Treasurer asset
``amountStr``               the amount as a decimal string (``amount``, a JSON number, is
                            deprecated and never read: it may have lost precision)
``destAddress``             the recipient's address (the contract, for a contract call)
``destType``                recorded only
==========================  =================================================================

Mapping to Treasurer (``FireblocksConfig``): ``wallets`` maps a vault account, optionally per
asset (``"3:USDC"`` before ``"3"``), to the Treasurer wallet registered with ``vendor:
fireblocks``; ``assets`` maps a Fireblocks asset id to a Treasurer asset (id or symbol on the
wallet's chain), defaulting to the id itself. A request that cannot be mapped is refused with
the reason (fail closed): a co-signer must never sign what Treasurer could not judge.

Authentication is the JWT itself: the route is reachable without a Treasurer credential
(the Co-Signer has none), and a body that is not a token signed by the configured Co-Signer
key is answered 401 with no decision taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from treasurer.adapters.vendors import jwt_rs256
from treasurer.service.vendor_hooks import (
    HookAnswer,
    PreSignAction,
    PreSignGate,
    PreSignRequest,
    PreSignVerdict,
)

VENDOR: Final = "fireblocks"
TX_SIGN_REQUEST: Final = "tx_sign_request"
#: Longest ``rejectionReason`` sent back (it lands in Fireblocks' audit log).
MAX_REASON_CHARS: Final = 500


class _Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class FireblocksConfig:
    """Keys and mappings of one callback handler (see the module docstring)."""

    cosigner_public_key: rsa.RSAPublicKey
    callback_private_key: rsa.RSAPrivateKey
    wallets: Mapping[str, str]
    assets: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_pem(
        cls,
        cosigner_public_key: bytes,
        callback_private_key: bytes,
        wallets: Mapping[str, str],
        assets: Mapping[str, str] | None = None,
    ) -> FireblocksConfig:
        return cls(
            jwt_rs256.load_public_key(cosigner_public_key),
            jwt_rs256.load_private_key(callback_private_key),
            dict(wallets),
            dict(assets or {}),
        )


class Unmappable(ValueError):
    """A request Treasurer cannot turn into a spend: refused with this reason."""


class FireblocksCallback:
    """The :class:`~treasurer.service.vendor_hooks.VendorHook` of the Fireblocks Co-Signer."""

    def __init__(self, gate: PreSignGate, config: FireblocksConfig, clock: _Clock) -> None:
        self._gate = gate
        self._config = config
        self._clock = clock

    @property
    def vendor(self) -> str:
        return VENDOR

    def handle(self, operation: str, body: bytes) -> HookAnswer:
        if operation != TX_SIGN_REQUEST:
            return HookAnswer(404, f"{operation} is not handled by Treasurer".encode())
        try:
            claims = jwt_rs256.decode(body, self._config.cosigner_public_key, now=self._clock.now())
        except jwt_rs256.TokenInvalid as exc:
            return HookAnswer(401, f"not a request of the configured Co-Signer: {exc}".encode())
        request_id = claims.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            return HookAnswer(400, b"the request carries no requestId")
        try:
            verdict = self._gate.review(self.request_of(claims))
        except Unmappable as exc:
            verdict = PreSignVerdict.reject(str(exc))
        answer: dict[str, Any] = {"action": verdict.action.value, "requestId": request_id}
        if verdict.action is not PreSignAction.APPROVE and verdict.reason:
            answer["rejectionReason"] = verdict.reason[:MAX_REASON_CHARS]
        token = jwt_rs256.encode(answer, self._config.callback_private_key)
        return HookAnswer(200, token.encode("ascii"))

    def request_of(self, claims: Mapping[str, Any]) -> PreSignRequest:
        """The spend a signing request describes; :class:`Unmappable` when there is none."""
        tx_id = _text(claims, "txId")
        if claims.get("sourceType") != "VAULT":
            raise Unmappable(f"source type {claims.get('sourceType')!r} is not a vault account")
        vault, asset = _text(claims, "sourceId"), _text(claims, "asset")
        wallet = self._config.wallets.get(f"{vault}:{asset}") or self._config.wallets.get(vault)
        if wallet is None:
            raise Unmappable(f"vault account {vault} ({asset}) has no Treasurer wallet")
        destination = _text(claims, "destAddress")
        amount = _decimal_text(_text(claims, "amountStr"))
        operation = claims.get("operation", "TRANSFER")
        if operation == "TRANSFER":
            return PreSignRequest(
                VENDOR,
                tx_id,
                wallet,
                amount=amount,
                asset=self._config.assets.get(asset, asset),
                recipient=destination,
            )
        if operation == "CONTRACT_CALL":
            extra = claims.get("extraParameters")
            data = extra.get("contractCallData") if isinstance(extra, dict) else None
            if not isinstance(data, str) or not data:
                raise Unmappable("a contract call without contractCallData cannot be judged")
            calldata = data if data.startswith(("0x", "0X")) else "0x" + data
            value = None if amount in ("0", "") else amount
            return PreSignRequest(VENDOR, tx_id, wallet, to=destination, data=calldata, value=value)
        raise Unmappable(f"operation {operation!r} is not governed by Treasurer")


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise Unmappable(f"the request carries no {name}")
    return value


def _decimal_text(text: str) -> str:
    """``"0.010000000000000000"`` → ``"0.01"``: Fireblocks pads to the asset's precision,
    which may exceed the decimals registered in Treasurer; trailing zeros change nothing."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
