"""``/v1/agents/{id}/sessions``: an agent's session tokens.

A token is returned exactly once, when it is created or rotated; only its hash is stored.
Rotation creates the successor and revokes the old session in one transaction, and since
authentication reads the session on every request, the old token fails on the very next one.
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.errors import InvalidState
from treasurer.domain.org import AgentStatus
from treasurer.interfaces.http.deps import Ctx, Manager, Pages, Reader, stored_page
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.routes_agents import visible_agent
from treasurer.interfaces.http.views import session_created, session_out
from treasurer.wire import Page, SessionCreated, SessionIn, SessionOut, SessionRotate

router = APIRouter(prefix="/v1/agents/{agent_id}/sessions", tags=["sessions"], responses=COMMON)


@router.post("", status_code=201, responses=responses(404, 409))
def create_session(
    agent_id: str, ctx: Ctx, who: Manager, body: SessionIn | None = None
) -> SessionCreated:
    """A new session token for the agent (default lifetime 24 hours)."""
    agent = visible_agent(ctx, who, agent_id)
    if agent.status is AgentStatus.DECOMMISSIONED:
        raise InvalidState(f"agent {agent_id} is decommissioned", code="agent_decommissioned")
    body = body or SessionIn()
    session, token = ctx.credentials.create_session(agent_id, body.name, body.ttl_s, who.actor)
    return session_created(session, token, ctx.governance.clock.now())


@router.get("")
def list_sessions(agent_id: str, ctx: Ctx, who: Reader, pages: Pages) -> Page[SessionOut]:
    """The agent's sessions, active or not (never their tokens)."""
    visible_agent(ctx, who, agent_id)
    rows = ctx.credentials.store.list_sessions(agent_id, pages.after, pages.limit + 1)
    items, nxt = stored_page(rows, lambda s: s.id, pages.limit)
    now = ctx.governance.clock.now()
    return Page[SessionOut](items=[session_out(s, now) for s in items], next=nxt)


@router.delete("/{session_id}", responses=responses(404))
def revoke_session(agent_id: str, session_id: str, ctx: Ctx, who: Manager) -> SessionOut:
    """Revoke one session; its token fails from the next request on."""
    visible_agent(ctx, who, agent_id)
    session = ctx.credentials.revoke_session(agent_id, session_id, who.actor)
    return session_out(session, ctx.governance.clock.now())


@router.post("/{session_id}/rotate", status_code=201, responses=responses(404, 409))
def rotate_session(
    agent_id: str, session_id: str, ctx: Ctx, who: Manager, body: SessionRotate | None = None
) -> SessionCreated:
    """Replace a session with a new one (new token); the old token stops working at once."""
    visible_agent(ctx, who, agent_id)
    ttl_s = body.ttl_s if body else None
    session, token = ctx.credentials.rotate_session(agent_id, session_id, ttl_s, who.actor)
    return session_created(session, token, ctx.governance.clock.now())
