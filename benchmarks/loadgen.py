"""A light HTTP load generator: asyncio over raw keep-alive sockets, one process.

Why not httpx: at 64 clients httpx's sync client cost about 2 ms of CPU per request on this
machine, on the same two cores as the servers under test, so the load generator took as much
CPU as the server it measured. Here each client is a coroutine with one keep-alive connection
and its request bytes built once; a response costs one header parse and (only where the caller
keeps decisions) one JSON parse: tens of microseconds.

Run as its own process (``python -m benchmarks.loadgen`` with a JSON :class:`Plan` on stdin,
a JSON result on stdout), so its CPU is measured apart from the caller's. Bounded: a fixed
number of requests per client and a time cap; loopback targets only.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: A response larger than this is an error (decisions are a few KiB).
MAX_RESPONSE_BYTES = 1 << 20


@dataclass
class Plan:
    """What to send: client ``i`` talks to ``urls[i % len(urls)]`` with ``tokens[i]`` and
    body ``bodies[i]`` (a JSON object), ``per_client`` times or until ``cap_s`` has passed."""

    urls: list[str]
    tokens: list[str]
    bodies: list[dict[str, Any]]
    per_client: int
    cap_s: float
    path: str = "/v1/authorizations"
    keep_decisions: bool = False
    #: Send ``Idempotency-Key: <prefix>-<client>-<i>`` on each request ("" = none).
    idempotency_prefix: str = ""


@dataclass
class Outcome:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0


def _request(host: str, path: str, token: str, body: bytes, key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    if key:
        head += f"Idempotency-Key: {key}\r\n"
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length > MAX_RESPONSE_BYTES:
        raise ValueError(f"response of {length} bytes")
    return status, await reader.readexactly(length) if length else b""


async def _client(index: int, plan: Plan, start: asyncio.Event, deadline: list[float]) -> Outcome:
    url = urlsplit(plan.urls[index % len(plan.urls)])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = json.dumps(plan.bodies[index]).encode()
    own = Outcome()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await start.wait()
        for i in range(plan.per_client):
            if time.perf_counter() > deadline[0]:
                break
            key = f"{plan.idempotency_prefix}-{index}-{i}" if plan.idempotency_prefix else ""
            began = time.perf_counter()
            try:
                writer.write(_request(f"{host}:{port}", plan.path, plan.tokens[index], body, key))
                status, payload = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                own.errors += 1
                own.statuses["transport"] = own.statuses.get("transport", 0) + 1
                writer.close()
                try:  # reconnect (a node went away, or closed the connection)
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    await asyncio.sleep(0.05)
                continue
            elapsed = time.perf_counter() - began
            own.statuses[str(status)] = own.statuses.get(str(status), 0) + 1
            if 200 <= status < 300:
                own.latencies_s.append(elapsed)
                if plan.keep_decisions:
                    own.decisions.append(json.loads(payload))
            else:
                own.errors += 1
    finally:
        writer.close()
    return own


async def run_plan(plan: Plan) -> Outcome:
    """Open every connection, then start all clients at once; returns the merged outcome."""
    start = asyncio.Event()
    deadline = [time.perf_counter() + 3600.0]
    tasks = [
        asyncio.create_task(_client(i, plan, start, deadline)) for i in range(len(plan.tokens))
    ]
    await asyncio.sleep(0.2)  # let every connection open before the clock starts
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    began = time.perf_counter()
    deadline[0] = began + plan.cap_s
    start.set()
    results = await asyncio.gather(*tasks)
    merged = Outcome(elapsed_s=time.perf_counter() - began)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    merged.cpu_s = usage.ru_utime + usage.ru_stime - cpu
    for own in results:
        merged.latencies_s += own.latencies_s
        merged.errors += own.errors
        merged.decisions += own.decisions
        for status, count in own.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + count
    return merged


def main() -> None:
    plan = Plan(**json.load(sys.stdin))
    try:
        import uvloop  # noqa: PLC0415 - optional: a cheaper event loop when installed

        uvloop.install()
    except ImportError:
        pass
    outcome = asyncio.run(run_plan(plan))
    json.dump(asdict(outcome), sys.stdout)


if __name__ == "__main__":
    main()
