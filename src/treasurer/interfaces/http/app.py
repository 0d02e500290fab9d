"""The FastAPI application: ``create_app(governance, credentials, payments=...)``.

Layers, outside in: the decision lane (well-formed ``POST /v1/authorizations`` only; see
there), authentication (401/429 before anything else), the body limit (413),
FastAPI's routing with the problem+json handlers, then the routes, one module per noun. Routes
are synchronous functions on purpose: the store is synchronous, and FastAPI runs them in its
thread pool, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from treasurer.interfaces.http import (
    routes_admin_keys,
    routes_agents,
    routes_approvals,
    routes_approvers,
    routes_audit_purge,
    routes_authorizations,
    routes_freezes,
    routes_org,
    routes_payments,
    routes_policies,
    routes_reports,
    routes_sessions,
    routes_simulation,
    routes_vendors,
    routes_wallets,
    routes_webhooks,
)
from treasurer.interfaces.http.decision_lane import DecisionLane
from treasurer.interfaces.http.deps import HttpContext
from treasurer.interfaces.http.middleware import Authenticate, BodyLimit
from treasurer.interfaces.http.problems import install
from treasurer.service.admin import Governance
from treasurer.service.approvals import Approvals
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.auth_limiter import FailureLimiter
from treasurer.service.credentials import Authenticator, CredentialStore
from treasurer.service.notify_admin import Webhooks
from treasurer.service.payments import PaymentService
from treasurer.wire import Health, Problem

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs"})
ROUTERS = (
    routes_authorizations,
    routes_payments,
    routes_approvals,
    routes_org,
    routes_agents,
    routes_sessions,
    routes_wallets,
    routes_policies,
    routes_approvers,
    routes_freezes,
    routes_admin_keys,
    routes_reports,
    routes_audit_purge,
    routes_simulation,
    routes_webhooks,
    routes_vendors,
)
#: Reachable without a credential, authenticated by the vendor's own signature.
CALLBACK_PATHS = routes_vendors.CALLBACK_PATHS


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Limits of the HTTP interface; units are in the names."""

    max_body_bytes: int = 64 * 1024
    auth_max_failures: int = 10
    auth_failure_window_s: float = 60.0
    #: Check credentials on the event loop instead of a worker thread; right when the store
    #: answers in microseconds (embedded SQLite), wrong when it is a network hop away.
    inline_auth: bool = False
    #: Answer well-formed authorizations in the decision lane (see ``decision_lane``); off
    #: only to compare it with the routed app.
    decision_lane: bool = True
    #: Worker threads the decision lane decides in (measured in docs/benchmarks.md: on two
    #: cores, 8 serve more decisions per second than anyio's default 40, at less CPU each).
    decision_threads: int = 8
    title: str = "Treasurer"


def create_app(
    governance: Governance,
    credentials: CredentialStore,
    *,
    settings: HttpSettings | None = None,
    payments: PaymentService | None = None,
    webhooks: Webhooks | None = None,
    approvals: Approvals | None = None,
) -> FastAPI:
    """The HTTP API over ``governance`` with credentials in ``credentials``.

    ``payments`` is the custodial pipeline (chains and vault). Without it the server runs in
    governance mode only: the payment routes answer 503 ``payments_not_configured``, wallet
    balances ``chain_not_configured``, and custodial wallets cannot be created.
    ``approvals`` votes on spends in the approval tier (``build_app`` always passes it).
    """
    settings = settings or HttpSettings()
    app = FastAPI(
        title=settings.title,
        version="1",
        description="Governance for the money AI agents spend. Errors are RFC 9457 problems.",
        docs_url="/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.treasurer = HttpContext(
        governance, CredentialAdmin(credentials, governance.clock), payments, webhooks, approvals
    )
    limiter = FailureLimiter(
        governance.clock,
        max_failures=settings.auth_max_failures,
        window_s=settings.auth_failure_window_s,
    )
    authenticator = Authenticator(credentials, governance.clock, limiter)
    install(app)
    app.add_api_route("/health", _health, methods=["GET"], tags=["health"])
    for module in ROUTERS:
        app.include_router(module.router)
    # Added last = outermost: authentication runs before the body is even read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        Authenticate,
        authenticate=authenticator.authenticate,
        public_paths=PUBLIC_PATHS | CALLBACK_PATHS,
        inline=settings.inline_auth,
    )
    if settings.decision_lane:
        app.add_middleware(
            DecisionLane,
            context=app.state.treasurer,
            authenticate=authenticator.authenticate,
            max_body_bytes=settings.max_body_bytes,
            threads=settings.decision_threads,
        )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _health() -> Health:
    """Liveness: the process answers. Public, and says nothing else."""
    return Health()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema, with bearer authentication declared on every private operation."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "tsk_… or tss_…"}
        }
        for path, operations in schema.get("paths", {}).items():
            if path not in PUBLIC_PATHS | CALLBACK_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
