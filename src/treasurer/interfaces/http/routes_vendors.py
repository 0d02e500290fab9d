"""``/v1/vendors``: wallet vendors' pre-sign callbacks (``docs/reconciliation.md``).

These routes take no Treasurer credential: the caller is a vendor's signer (the Fireblocks
API Co-Signer), which holds none. They are public to the network but authenticated by what
the vendor sends: the hook verifies the request's signature with the vendor key configured
on this server and answers 401 to anything else, before any decision is taken. That is why
they are listed in :data:`CALLBACK_PATHS`, which the authentication middleware lets through
and the route-enumeration tests check separately. A server with no hook configured for the
vendor answers 404 ``vendor_not_configured``.

The hooks are installed by the composition root in ``app.state.vendor_hooks`` (vendor name →
:class:`~treasurer.service.vendor_hooks.VendorHook`).
"""

from __future__ import annotations

from typing import Final

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from treasurer.domain.errors import NotFound
from treasurer.interfaces.http.problems import responses
from treasurer.service.vendor_hooks import VendorHook, VendorHooks

router = APIRouter(prefix="/v1/vendors", tags=["vendors"])

FIREBLOCKS_TX_SIGN: Final = "/v1/vendors/fireblocks/v2/tx_sign_request"
#: Paths authenticated by the vendor's own signature instead of a Treasurer credential.
CALLBACK_PATHS: Final = frozenset({FIREBLOCKS_TX_SIGN})


def _hook(request: Request, vendor: str) -> VendorHook:
    hooks: VendorHooks = getattr(request.app.state, "vendor_hooks", None) or {}
    hook = hooks.get(vendor)
    if hook is None:
        raise NotFound(
            f"no {vendor} callback handler is configured on this server",
            code="vendor_not_configured",
        )
    return hook


@router.post(
    "/fireblocks/v2/tx_sign_request",
    response_class=Response,
    responses={
        **responses(404),
        200: {"content": {"text/plain": {}}, "description": "a JWT (RS256) with the action"},
        401: {"content": {"text/plain": {}}, "description": "not signed by the Co-Signer"},
    },
)
async def fireblocks_tx_sign_request(request: Request) -> Response:
    """The Fireblocks API Co-Signer's transaction signing callback: the body is a JWT signed
    by the Co-Signer; the answer is a JWT saying APPROVE, REJECT or RETRY."""
    hook = _hook(request, "fireblocks")
    body = await request.body()
    answer = await anyio.to_thread.run_sync(hook.handle, "tx_sign_request", body)
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)
