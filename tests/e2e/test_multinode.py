"""Scale-out: several ``treasurer serve`` processes on one PostgreSQL database.

Each test starts its own deployment (``tests/cluster.py``): ``treasurer init`` with a PostgreSQL
schema of its own, a custodial key put in the shared vault, then three nodes on free loopback
ports, all with the same data directory and vault passphrase and the same anvil node (an RPC
chain, which every node reaches; embedded chains live in one process and cannot be shared).
Requests go to the nodes in turn, as a load balancer would send them.

What must hold, read back from the database and the chain rather than from the answers:

- **no overspend**: every budget row holds ``posted + pending <= limit``, and exactly what its
  authorizations add up to (captured USD of captured ones, reserved USD of reserving ones);
- **idempotency across nodes**: every request is sent twice at once, to two different nodes,
  with one ``Idempotency-Key``; both answers name the same authorization or payment;
- **every payment from the one shared custodial wallet is confirmed**: the nodes take its
  nonces from the database, so concurrent sends through different nodes never clash;
- **the delay queue runs once**: each delayed payment is sent by exactly one node (the
  custodial wallet's transaction count on the chain equals the payments that were sent, and
  each recipient holds exactly its amount);
- **notifications are delivered once**: a webhook receiver on loopback gets every delivery
  the nodes made (budget breaches, payments) exactly once, whichever node sent it;
- **the audit chain verifies** (``GET /v1/audit/verify``);
- with a node SIGKILLed in the middle of the load: the others keep answering, no
  authorization is half-applied (the rows above still add up), and what the dead node had
  reserved is released by the survivors' expiry sweepers once it expires.

Bounded: fixed request counts, bounded waits; every process is stopped by its own handle.
PostgreSQL only (``TREASURER_TEST_POSTGRES_URL``); anvil from npm (skips locally without it).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from eth_account import Account
from tests.anvil import AnvilNode, deploy_stablecoin, mint, running_anvil, send_eth
from tests.cluster import Cluster, drop_pg_schema, fresh_pg_schema, running_cluster
from tests.webhook_receiver import Receiver
from web3 import Web3

import treasurer
from treasurer.adapters.vault import FileVault
from treasurer.domain.calldata import decode_uint256, encode_balance_of
from treasurer.service.chain_ports import ChainFamily

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

PG_URL = os.environ.get("TREASURER_TEST_POSTGRES_URL")
PASSPHRASE = "correct horse battery staple"
NETWORK = "anvil"
DUSD = 10**6
ETH = 10**18
NODES = 3
THREADS = 24
SETTLE_TIMEOUT_S = 60.0
#: The expiry sweeper runs every 5 s in ``serve``; an authorization lives 4 s in the kill test.
EXPIRY_WAIT_S = 30.0
MICROS = 1_000_000
AGENT_A_DAILY, ORG_DAILY = Decimal("300"), Decimal("450")


@dataclass(frozen=True)
class Chain:
    anvil: AnvilNode
    w3: Web3
    token: str

    def tokens(self, address: str) -> int:
        call = {"to": self.token, "data": encode_balance_of(address.lower())}
        return decode_uint256(bytes(self.w3.eth.call(call)))  # type: ignore[arg-type]

    def sent(self, address: str) -> int:
        """Transactions the node has mined from ``address``."""
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address)))


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TREASURER_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("TREASURER_TEST_POSTGRES_URL is not set")
    with running_anvil() as anvil:
        w3 = anvil.web3()
        yield Chain(anvil, w3, deploy_stablecoin(anvil, w3))


@dataclass
class Deployment:
    cluster: Cluster
    chain: Chain
    database_url: str
    hot: str  # the custodial wallet's address
    sessions: dict[str, dict[str, str]]

    def node(self, i: int) -> str:
        return self.cluster.nodes[i % len(self.cluster.nodes)].url

    def admin_get(self, path: str, node: int = 0) -> Any:
        answer = httpx.get(self.node(node) + path, headers=self.cluster.admin, timeout=30.0)
        assert answer.status_code == 200, answer.text
        return answer.json()


def org(hot: str, token: str, ttl: str) -> dict[str, Any]:
    """agent_a: custodial wallet ``hot`` and external ``a-ext``, $300 a day, instant up to $10,
    delayed (2 s) up to $1,000; agent_b: external ``b-ext``; the org: $450 a day."""
    wallet = {"chain": NETWORK, "custody": "external", "vendor": "other"}
    return {
        "version": 1,
        "org": {"id": "acme", "budgets": [{"window": "day", "limit_usd": str(ORG_DAILY)}]},
        "settings": {"authorization_ttl": ttl},
        "assets": [
            {
                "id": f"{NETWORK}:DUSD",
                "chain": NETWORK,
                "symbol": "DUSD",
                "decimals": 6,
                "address": token,
                "stablecoin": True,
                "price": {"source": "fixed", "usd": "1.00"},
            },
            {
                "id": f"{NETWORK}:ETH",
                "chain": NETWORK,
                "symbol": "ETH",
                "decimals": 18,
                "price": {"source": "manual", "max_age": "1h"},
            },
        ],
        "departments": [{"id": "ops", "budgets": [{"window": "day", "limit_usd": "5000.00"}]}],
        "agents": [
            {
                "id": "agent_a",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": str(AGENT_A_DAILY)}],
                "tiers": {
                    "instant_max_usd": "10.00",
                    "notify_max_usd": "10.00",
                    "delay_max_usd": "1000.00",
                    "delay_seconds": 2,
                },
                "wallets": [
                    {
                        "id": "hot",
                        "chain": NETWORK,
                        "address": hot,
                        "custody": "local",
                        "vendor": "treasurer",
                    },
                    {**wallet, "id": "a-ext", "address": str(Account.create().address)},
                ],
            },
            {
                "id": "agent_b",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": "1000.00"}],
                "wallets": [{**wallet, "id": "b-ext", "address": str(Account.create().address)}],
            },
        ],
    }


@pytest.fixture
def deployment_factory(chain: Chain, tmp_path: Path) -> Iterator[Callable[[str], Deployment]]:
    """Builds one deployment per test (the ``ttl`` of its authorizations is the argument)."""
    assert PG_URL is not None
    schema, url = fresh_pg_schema(PG_URL, "mn")
    stack: list[Any] = []
    hot: list[str] = []

    def put_key(data: Path) -> None:
        vault = FileVault.open(data / "vault", PASSPHRASE, scrypt_n=16)
        try:
            hot.append(vault.create_key(ChainFamily.EVM))
        finally:
            vault.close()
        send_eth(chain.anvil, chain.w3, chain.anvil.keys[1], hot[0], ETH)
        mint(chain.anvil, chain.w3, chain.token, hot[0], 10_000 * DUSD)

    def build(ttl: str) -> Deployment:
        env = {
            "TREASURER_CHAINS": f"{NETWORK}={chain.anvil.url}",
            "TREASURER_VAULT_PASSPHRASE": PASSPHRASE,
            "TREASURER_CONFIRM_INTERVAL_S": "0.2",
        }
        context = running_cluster(tmp_path, url, NODES, extra_env=env, before_start=put_key)
        cluster = context.__enter__()
        stack.append(context)
        with httpx.Client(base_url=cluster.urls[0], headers=cluster.admin, timeout=30) as admin:
            applied = admin.post("/v1/org", json=org(hot[0], chain.token, ttl))
            assert applied.status_code == 200, applied.text
            price = admin.put(f"/v1/prices/{NETWORK}:ETH", json={"price_usd": "3000.00"})
            assert price.status_code == 200, price.text
            sessions = {}
            for agent in ("agent_a", "agent_b"):
                made = admin.post(f"/v1/agents/{agent}/sessions", json={"name": "mn"})
                assert made.status_code == 201, made.text
                sessions[agent] = {"Authorization": f"Bearer {made.json()['token']}"}
        return Deployment(cluster, chain, url, hot[0], sessions)

    try:
        yield build
    finally:
        for context in stack:
            context.__exit__(None, None, None)
        drop_pg_schema(PG_URL, schema)


# -- the load ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One request; ``key`` is its Idempotency-Key, ``node`` the node it goes to first."""

    path: str
    agent: str
    body: dict[str, Any]
    key: str
    node: int


@dataclass
class Answer:
    job: Job
    status: int
    body: dict[str, Any]
    node: int
    at: float


def send(d: Deployment, job: Job, *, failover: bool = False) -> Answer:
    """POST ``job`` to its node; with ``failover``, a node that does not answer is skipped for
    the next one with the same key (what a load balancer does), at most once per node."""
    headers = {**d.sessions[job.agent], "Idempotency-Key": job.key}
    node = job.node
    for _ in range(NODES if failover else 1):
        try:
            answer = httpx.post(d.node(node) + job.path, json=job.body, headers=headers, timeout=30)
        except httpx.TransportError:
            if not failover:
                raise
            node += 1
            continue
        return Answer(job, answer.status_code, answer.json(), node % NODES, time.monotonic())
    raise AssertionError(f"no node answered {job}")


def fire(d: Deployment, jobs: list[Job], *, failover: bool = False) -> list[Answer]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda job: send(d, job, failover=failover), jobs))


def twice(jobs: list[Job]) -> list[Job]:
    """Each job, and the same request with the same key to the next node."""
    return [
        j for job in jobs for j in (job, Job(job.path, job.agent, job.body, job.key, job.node + 1))
    ]


def authorizations(agent: str, wallet: str, count: int, amount: str, tag: str) -> list[Job]:
    body = {"wallet": wallet, "amount": amount, "asset": "DUSD"}
    return [Job("/v1/authorizations", agent, body, f"{tag}-{i}", i) for i in range(count)]


def payments(count: int, amount: str, tag: str) -> tuple[list[Job], dict[str, str]]:
    """Payments from ``hot`` to a fresh recipient each; returns the jobs and key → recipient."""
    jobs, recipients = [], {}
    for i in range(count):
        recipient = str(Account.create().address)
        body = {"wallet": "hot", "recipient": recipient, "amount": amount, "asset": "DUSD"}
        jobs.append(Job("/v1/payments", "agent_a", body, f"{tag}-{i}", i))
        recipients[f"{tag}-{i}"] = recipient
    return jobs, recipients


# -- what must hold ----------------------------------------------------------------------------
def assert_ledger_exact(database_url: str) -> dict[str, tuple[int, int, int]]:
    """Every budget row within its limit and equal to what its authorizations add up to;
    returns key → (posted, pending, limit) in micro-dollars. Read in one REPEATABLE READ
    snapshot: the nodes keep capturing and expiring meanwhile."""
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = conn.execute(
            "SELECT key, posted, pending, limit_micros, posted_count, pending_count "
            "FROM budget_balances"
        ).fetchall()
        sums = {
            key: (int(posted), int(pending), int(posted_n), int(pending_n))
            for key, posted, pending, posted_n, pending_n in conn.execute(
                "SELECT l.balance_key, "
                "COALESCE(SUM(CASE WHEN a.state = 'captured' THEN a.captured_usd_micros END), 0), "
                "COALESCE(SUM(CASE WHEN a.state IN ('pending', 'delayed', 'pending_approval') "
                "THEN l.amount_micros END), 0), "
                "COUNT(*) FILTER (WHERE a.state = 'captured'), "
                "COUNT(*) FILTER (WHERE a.state IN ('pending', 'delayed', 'pending_approval')) "
                "FROM authorization_lines l JOIN authorizations a ON a.id = l.authorization_id "
                "GROUP BY l.balance_key"
            ).fetchall()
        }
        orphans = conn.execute(
            "SELECT count(*) FROM authorization_lines l LEFT JOIN authorizations a "
            "ON a.id = l.authorization_id WHERE a.id IS NULL"
        ).fetchone()
    assert orphans == (0,)
    out = {}
    for key, posted, pending, limit, posted_n, pending_n in rows:
        assert limit is None or posted + pending <= limit, f"{key} over its limit"
        assert (posted, pending, posted_n, pending_n) == sums.get(key, (0, 0, 0, 0)), key
        out[key] = (int(posted), int(pending), int(limit or 0))
    return out


def assert_audit_verifies(d: Deployment) -> None:
    report = d.admin_get("/v1/audit/verify", node=1)
    assert report["ok"], report
    assert report["events"] > 0


def settle_payments(d: Deployment, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Poll each payment until it is final (confirmed, failed, denied, cancelled)."""
    final = {"confirmed", "failed", "denied", "cancelled"}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    seen: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for ident in ids - seen.keys():
            payment = d.admin_get(f"/v1/payments/{ident}", node=len(seen))
            if payment["state"] in final:
                seen[ident] = payment
        if seen.keys() == ids:
            return seen
        time.sleep(0.2)
    pending = {i: d.admin_get(f"/v1/payments/{i}")["state"] for i in ids - seen.keys()}
    raise AssertionError(f"payments still not final after {SETTLE_TIMEOUT_S} s: {pending}")


def same_result_per_key(answers: list[Answer]) -> dict[str, Answer]:
    """Both sends of each key were answered with one and the same object; returns one answer
    per key (the first)."""
    by_key: dict[str, list[Answer]] = {}
    for answer in answers:
        assert answer.status in (200, 201), (answer.job, answer.status, answer.body)
        by_key.setdefault(answer.job.key, []).append(answer)
    for key, pair in by_key.items():
        assert len({a.body["id"] for a in pair}) == 1, (key, [a.body["id"] for a in pair])
    return {key: pair[0] for key, pair in by_key.items()}


# -- the tests ---------------------------------------------------------------------------------
def test_three_nodes_share_budgets_keys_and_the_queue_exactly(
    deployment_factory: Callable[[str], Deployment],
) -> None:
    """Authorizations and payments (instant and delayed) of two agents fired at once through
    three nodes, every request twice (two nodes, one key), against agent and org budgets they
    exceed: no budget row goes over its limit or disagrees with its authorizations, every key
    has one result, every delayed payment is sent once, and the audit chain verifies."""
    d = deployment_factory("15m")
    receiver = Receiver().start()
    try:
        with treasurer.connect(d.node(1), d.cluster.admin_token) as admin:
            hook = admin.create_webhook(receiver.url("/hook"))
        receiver.secrets["/hook"] = hook.secret
        _shared_budgets_and_queue(d)
        _delivered_once(d, receiver, hook.id)
    finally:
        receiver.stop()


def _delivered_once(d: Deployment, receiver: Receiver, hook: str) -> None:
    """Every delivery the nodes made arrives, signed, exactly once (bounded wait)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    with treasurer.connect(d.node(2), d.cluster.admin_token) as admin:
        while True:
            made = admin.webhook_deliveries(hook, limit=500)
            settled = bool(made) and {x.state for x in made} == {"delivered"}
            if settled and len(receiver.on("/hook")) >= len(made):
                break
            assert time.monotonic() < deadline, Counter(x.state for x in made)
            time.sleep(0.2)
        time.sleep(1.5)  # a few more notifier rounds on every node: nothing more may arrive
        made = admin.webhook_deliveries(hook, limit=500)
    received = receiver.on("/hook")
    assert len(made) < 500, "raise the page size"
    assert Counter(r.delivery for r in received) == Counter(x.id for x in made)
    assert all(r.signed for r in received)
    assert "budget.breach" in {r.event for r in received}


def _shared_budgets_and_queue(d: Deployment) -> None:
    instant, instant_to = payments(8, "5.00", "pi")
    delayed, delayed_to = payments(4, "30.00", "pd")
    jobs = twice(
        instant
        + delayed
        + authorizations("agent_a", "a-ext", 40, "7.00", "a")
        + authorizations("agent_b", "b-ext", 40, "7.00", "b")
    )
    answers = same_result_per_key(fire(d, jobs))

    auths = [a.body for k, a in answers.items() if k[0] in "ab"]
    allowed = [a for a in auths if a["state"] == "pending"]
    denied = [a for a in auths if a["state"] == "denied"]
    assert allowed and denied, "the budgets must be contended: some allowed, some denied"
    for answer in denied:
        codes = {r["code"] for r in answer["decision"]["reasons"]}
        assert any(code.endswith("_budget_exceeded") for code in codes), answer

    paid = {k: a.body for k, a in answers.items() if k.startswith("p")}
    # A replay answers with the payment as it stands: "created" just before it is queued.
    delayed_states = {p["state"] for k, p in paid.items() if k.startswith("pd")}
    assert delayed_states <= {"created", "queued", "denied"}, delayed_states
    final = settle_payments(d, {p["id"] for p in paid.values() if p["state"] != "denied"})
    sent = [p for p in final.values() if p["tx_id"] is not None]
    # The nodes take each nonce of the shared hot wallet from the database under the row's
    # lock (adapters/sql/nonce_ledger.py): concurrent sends through three nodes never clash.
    unconfirmed = [
        (p["id"], p["tier"], p["state"], p["error"])
        for p in final.values()
        if p["state"] != "confirmed"
    ]
    assert unconfirmed == []
    executed = [p for p in final.values() if p["tier"] == "delay"]
    assert executed, "at least one delayed payment must have been queued and executed"
    # Once each on the chain: one transaction per payment sent, each recipient paid once.
    assert d.chain.sent(d.hot) == len(sent)
    assert len({p["tx_id"] for p in sent}) == len(sent)
    for key, recipient in {**instant_to, **delayed_to}.items():
        done = final.get(paid[key]["id"], {}).get("state") == "confirmed"
        expected = Decimal(paid[key]["amount"]) if done else Decimal(0)
        assert d.chain.tokens(recipient) == int(expected * DUSD), key

    rows = assert_ledger_exact(d.database_url)
    org_posted, org_pending, org_limit = next(v for k, v in rows.items() if k.startswith("org:"))
    assert org_limit == int(ORG_DAILY * MICROS)
    assert org_posted + org_pending <= org_limit
    assert_audit_verifies(d)


def test_a_node_killed_mid_load_leaves_nothing_half_applied(
    deployment_factory: Callable[[str], Deployment],
) -> None:
    """A node is SIGKILLed while authorizations and payments pour through all three: the two
    others keep answering (the clients fail over with the same key), every budget row still
    adds up exactly, what the dead node had reserved expires and is released by the
    survivors' sweepers, and the audit chain verifies."""
    d = deployment_factory("4s")
    victim = d.cluster.nodes[2]
    # Reservations made through the node that is about to die, never captured.
    held = fire(
        d,
        [
            Job(j.path, j.agent, j.body, j.key, 2)
            for j in authorizations("agent_b", "b-ext", 6, "3.00", "held")
        ],
    )
    held_ids = {a.body["id"] for a in held if a.body["state"] == "pending"}
    assert len(held_ids) == 6

    instant, _to = payments(6, "2.00", "pk")
    jobs = (
        instant
        + authorizations("agent_a", "a-ext", 120, "1.00", "ka")
        + authorizations("agent_b", "b-ext", 120, "1.00", "kb")
    )
    killed_at: list[float] = []

    def kill_soon() -> None:
        time.sleep(0.4)
        victim.kill()
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_soon)
    killer.start()
    answers = fire(d, jobs, failover=True)
    killer.join()
    assert victim.process.poll() is not None and killed_at
    after_kill = [a for a in answers if a.at > killed_at[0]]
    assert after_kill, "the load must outlast the kill"
    assert all(a.status in (200, 201) for a in answers), [
        (a.job.key, a.status, a.body) for a in answers if a.status not in (200, 201)
    ]
    assert {a.node for a in after_kill} <= {0, 1}

    assert_ledger_exact(d.database_url)  # nothing half-applied, at the moment of the kill too

    # agent_b never captures: once everything it reserved has expired (the dead node's share
    # included), the survivors' sweepers must have released all of it.
    deadline = time.monotonic() + EXPIRY_WAIT_S
    states: dict[str, str] = {}
    b_pending = -1
    while time.monotonic() < deadline:
        states = {i: d.admin_get(f"/v1/authorizations/{i}")["state"] for i in held_ids}
        rows = assert_ledger_exact(d.database_url)
        b_pending = sum(v[1] for k, v in rows.items() if k.startswith("agent:agent_b"))
        if set(states.values()) == {"expired"} and b_pending == 0:
            break
        time.sleep(0.5)
    assert set(states.values()) == {"expired"}, states
    assert b_pending == 0
    assert_audit_verifies(d)
