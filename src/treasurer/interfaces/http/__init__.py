"""The HTTP interface: ``create_app(governance, credentials, payments=...)`` builds the app.

Everything under ``/v1`` needs a credential (an admin key ``tsk_…`` or an agent session
``tss_…``); only ``/health``, ``/openapi.json`` and ``/docs`` are public. Errors are RFC 9457
problem+json with a stable ``code`` (see :mod:`treasurer.interfaces.http.problems`).
"""

from __future__ import annotations

from treasurer.interfaces.http.app import PUBLIC_PATHS, HttpSettings, create_app

__all__ = ["PUBLIC_PATHS", "HttpSettings", "create_app"]
