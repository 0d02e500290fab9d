"""``HttpxWebhookSender``: the :class:`~treasurer.service.notify_ports.WebhookSender` over httpx.

One POST per attempt with a bounded timeout (5 s by default for connect, read, write and pool
each), no redirects followed (a 3xx is a failed attempt: a signed body must reach the URL the
admin registered, not wherever the receiver points), and the answer's body never read, so a
receiver cannot make the server buffer an arbitrary response. Failures to get an answer are
results, not exceptions: the notifier schedules the retry. httpx's usual environment applies
(``HTTPS_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``), for deployments behind an egress proxy.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from treasurer.service.notify_ports import SendResult

SEND_TIMEOUT_S = 5.0


class HttpxWebhookSender:
    """POSTs deliveries with one shared connection pool."""

    def __init__(
        self,
        *,
        timeout_s: float = SEND_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            transport=transport,
        )

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        try:
            with self._client.stream("POST", url, content=body, headers=dict(headers)) as answer:
                return SendResult(answer.status_code)
        except httpx.TimeoutException as exc:
            return SendResult(None, f"timeout: {type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return SendResult(None, f"unreachable: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._client.close()
