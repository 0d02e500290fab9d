"""Several ``treasurer serve`` processes on one database: a cluster for tests and benchmarks.

:func:`running_cluster` runs ``treasurer init`` once (the database, the admin key and the vault
in one data directory, which every node then shares, as nodes behind a load balancer share a
volume or a secret store), starts ``nodes`` ``treasurer serve`` processes on free loopback
ports, waits for each ``/health`` (bounded), and stops every process it started however the
block is left: through its own ``Popen`` handle (terminate, bounded wait, then kill). A test
may :meth:`Node.kill` one node (SIGKILL, by its handle) in the middle of the load.

``source`` runs the nodes from another copy of the package (a ``src`` directory put first on
``PYTHONPATH``): the benchmarks use it to measure the code before a change beside the code
after it, in one run. Used by ``tests/e2e/test_multinode.py`` and ``benchmarks/http.py``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
INIT_TIMEOUT_S = 120.0
TREASURER = [sys.executable, "-m", "treasurer.bootstrap.cli"]


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it for a socket bound to port 0)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def proc_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` (VmRSS in /proc/<pid>/status), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (/proc/<pid>/stat), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """CPU time of every ``postgres`` process on this machine so far (0 if unreadable)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if (entry / "comm").read_text().strip() == "postgres":
                total += proc_cpu_s(int(entry.name))
    return total


@dataclass
class Node:
    """One ``treasurer serve`` process."""

    url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path
    startup_s: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        return proc_rss_mib(self.pid)

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def kill(self) -> None:
        """SIGKILL this node (by its handle): no shutdown code runs, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Terminate; kill if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Cluster:
    """Nodes serving one database from one shared data directory."""

    root: Path
    env: dict[str, str]
    admin_token: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start_node(self, extra_env: Mapping[str, str] | None = None) -> Node:
        """Start one more node on a free port and wait until it answers ``/health``."""
        port = free_port()
        env = {**self.env, **(extra_env or {}), "TREASURER_PORT": str(port)}
        log = self.root / f"serve-{port}.log"
        with log.open("wb") as out:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*TREASURER, "serve"], env=env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT
            )
        node = Node(f"http://{HOST}:{port}", process, log)
        self.nodes.append(node)
        node.startup_s = wait_for_health(node, started)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def wait_for_health(node: Node, started: float) -> float:
    """Seconds from ``started`` until ``/health`` answers 200 (bounded; the log on failure)."""
    deadline = started + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"treasurer serve exited:\n{node.log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{node.url}/health").status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.01)
    raise RuntimeError(f"treasurer serve did not answer within {STARTUP_TIMEOUT_S} s")


def node_env(root: Path, database_url: str | None, source: Path | None = None) -> dict[str, str]:
    """This environment without any ``TREASURER_*`` of the caller, plus the cluster's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURER_")}
    env |= {
        "TREASURER_DATA_DIR": str(root / "data"),
        "TREASURER_HOST": HOST,
        "TREASURER_VAULT_SCRYPT_N": "16",
        "TREASURER_CHAINS": "none",
    }
    if database_url:
        env["TREASURER_DATABASE_URL"] = database_url
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def running_cluster(
    root: Path,
    database_url: str | None,
    nodes: int,
    *,
    extra_env: Mapping[str, str] | None = None,
    source: Path | None = None,
    before_start: Callable[[Path], None] | None = None,
) -> Iterator[Cluster]:
    """``treasurer init`` then ``nodes`` ``treasurer serve`` processes; all stopped on exit.

    ``database_url`` None: the SQLite file in the data directory (one node only makes sense).
    ``extra_env``: more ``TREASURER_*`` settings for every node (chains, vault passphrase).
    ``before_start(data_dir)`` runs between init and the first node (e.g. to put a custodial
    key in the vault, which every node unlocks when it starts).
    """
    env = node_env(root, database_url, source) | dict(extra_env or {})
    init = subprocess.run(
        [*TREASURER, "init"],
        env=env,
        cwd=root,
        capture_output=True,
        timeout=INIT_TIMEOUT_S,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"treasurer init failed: {init.stderr.decode()[-4000:]}")
    token = (root / "data" / "admin.key").read_text(encoding="utf-8").strip()
    if before_start is not None:
        before_start(root / "data")
    cluster = Cluster(root, env, token)
    try:
        for _ in range(nodes):
            cluster.start_node()
        yield cluster
    finally:
        cluster.stop()


def fresh_pg_schema(base: str, prefix: str = "mn") -> tuple[str, str]:
    """A new schema on ``base``: (its name, a URL whose ``search_path`` is pinned to it)."""
    schema = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def drop_pg_schema(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
