"""Index terms of an audit event: the agent, department, wallet, chain and outcome it concerns.

Events name what they are about in different ways: ``agent:procurement_bot`` as the subject
of a config change, an authorization id as the subject of a capture, ``request.wallet`` in a
decision's payload. The sealer resolves them once, when it seals the event, into five indexed
columns, so "every event of agent X in Q2" is an index range scan instead of a scan of every
payload. The terms are an index, not evidence: they are not hashed, and they reflect the
configuration at sealing time (seconds after the event) where the event itself does not say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Scoped subjects (``kind:id``) that name a term directly.
_SCOPED = {"agent": "agent", "wallet": "wallet", "department": "department"}


@dataclass(frozen=True, slots=True)
class Owner:
    """The parties of the authorization or payment an event's subject names."""

    agent: str | None
    wallet: str | None
    department: str | None
    chain: str | None


@dataclass(frozen=True, slots=True)
class References:
    """What an event names by itself, before any lookup."""

    record: str | None
    agent: str | None
    wallet: str | None
    department: str | None


@dataclass(frozen=True, slots=True)
class IndexTerms:
    agent: str | None = None
    department: str | None = None
    wallet: str | None = None
    chain: str | None = None
    outcome: str | None = None


def references(actor: str, subject: str, payload: object) -> References:
    """Terms named by the subject, the payload's ``request`` and an agent actor.

    A subject that is not ``kind:id`` (an authorization or payment id) is the ``record`` to
    look up; so is the payload's ``authorization`` or ``payment`` field.
    """
    body = payload if isinstance(payload, dict) else {}
    request = body.get("request")
    request = request if isinstance(request, dict) else {}
    scoped: dict[str, str] = {}
    record: str | None = None
    prefix, sep, rest = subject.partition(":")
    if sep and prefix in _SCOPED and rest:
        scoped[_SCOPED[prefix]] = rest
    elif not sep and subject:
        record = subject
    record = record or _text(body.get("authorization")) or _text(body.get("payment"))
    actor_agent = actor.partition(":")[2] if actor.startswith("agent:") else None
    return References(
        record=record,
        agent=scoped.get("agent") or _text(request.get("agent")) or actor_agent,
        wallet=scoped.get("wallet") or _text(request.get("wallet")),
        department=scoped.get("department"),
    )


def derive(
    refs: References,
    payload: object,
    owner: Owner | None,
    wallets: Mapping[str, tuple[str | None, str | None]],
    departments: Mapping[str, str | None],
) -> IndexTerms:
    """The terms, from the event's own references first, then what the lookups found.

    ``wallets`` maps wallet id → (agent id, chain); ``departments`` maps agent id → its
    department. The record (authorization or payment) wins over the references: it holds the
    parties as they were when the money moved.
    """
    agent, wallet, department, chain = refs.agent, refs.wallet, refs.department, None
    if owner is not None:
        agent = owner.agent or agent
        wallet = owner.wallet or wallet
        department = owner.department or department
        chain = owner.chain
    if wallet is not None and wallet in wallets:
        wallet_agent, wallet_chain = wallets[wallet]
        agent = agent or wallet_agent
        chain = chain or wallet_chain
    if department is None and agent is not None:
        department = departments.get(agent)
    return IndexTerms(agent, department, wallet, chain, outcome_of(payload))


def outcome_of(payload: object) -> str | None:
    """``allowed`` or ``denied`` for a decision (its payload has the boolean ``allowed``)."""
    if isinstance(payload, dict):
        allowed = payload.get("allowed")
        if isinstance(allowed, bool):
            return "allowed" if allowed else "denied"
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
