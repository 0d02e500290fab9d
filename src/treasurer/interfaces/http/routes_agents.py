"""``/v1/agents`` and ``/v1/agents/{id}/decommission``.

Decommissioning is the kill switch of :mod:`treasurer.service.lifecycle`, in one idempotent
call: the agent is marked decommissioned, its sessions revoked, every wallet frozen, its queued
payments cancelled and its open authorizations voided (reservations released). Payments
already broadcast cannot be recalled; they confirm as usual. The answer says what was done.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import Forbidden
from treasurer.domain.org import Agent
from treasurer.interfaces.http.deps import (
    Ctx,
    HttpContext,
    Manager,
    Pages,
    Reader,
    page_of,
    visible_or_404,
)
from treasurer.interfaces.http.org_edits import add_agent, apply_edit, change_agent
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import agent_out
from treasurer.service.lifecycle import Lifecycle
from treasurer.wire import AgentIn, AgentOut, AgentPatch, DecommissionOut, Page

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=COMMON)


def visible_agent(ctx: HttpContext, who: Principal, agent_id: str) -> Agent:
    """The agent, or not found when it does not exist or is outside the caller's view."""
    found = ctx.config.agents.get(agent_id)
    visible_or_404(found is not None and ctx.view(who).agent(agent_id), f"agent {agent_id!r}")
    assert found is not None
    return found


def _department_allowed(ctx: HttpContext, who: Principal, department: str | None) -> None:
    if who.department_id is not None and not ctx.view(who).department(department):
        raise Forbidden(
            f"department: a key scoped to {who.department_id} may only place agents inside it",
            field="department",
        )


@router.get("")
def list_agents(ctx: Ctx, who: Reader, pages: Pages) -> Page[AgentOut]:
    """Agents the caller may see (a scoped key: those of its department and teams)."""
    view = ctx.view(who)
    visible = [a for a in ctx.config.agents.values() if view.agent(a.id)]
    items, nxt = page_of(visible, lambda a: a.id, pages)
    return Page[AgentOut](items=[agent_out(a) for a in items], next=nxt)


@router.get("/{agent_id}", responses=responses(404))
def get_agent(agent_id: str, ctx: Ctx, who: Reader) -> AgentOut:
    return agent_out(visible_agent(ctx, who, agent_id))


@router.post("", status_code=201, responses=responses(400, 404, 409))
def create_agent(body: AgentIn, ctx: Ctx, who: Manager) -> AgentOut:
    """Register an agent (it gets sessions and wallets through their own routes)."""
    _department_allowed(ctx, who, body.department)
    agent = Agent(body.id, body.name or body.id, body.department)
    config = apply_edit(ctx.governance, who.actor, lambda c: add_agent(c, agent))
    return agent_out(config.agents[body.id])


@router.patch("/{agent_id}", responses=responses(400, 404, 409))
def update_agent(agent_id: str, body: AgentPatch, ctx: Ctx, who: Manager) -> AgentOut:
    """Rename an agent or move it to another department (``department: null`` for none)."""
    current = visible_agent(ctx, who, agent_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if "department" in body.model_fields_set:
        _department_allowed(ctx, who, body.department)
        changes["department_id"] = body.department
    updated = replace(current, **changes)
    config = apply_edit(ctx.governance, who.actor, lambda c: change_agent(c, updated))
    return agent_out(config.agents[agent_id])


@router.post("/{agent_id}/decommission", responses=responses(404))
def decommission(agent_id: str, ctx: Ctx, who: Manager) -> DecommissionOut:
    """Stop the agent for good, in one step: decommissioned, sessions revoked, wallets frozen,
    queued payments cancelled, open authorizations voided. Idempotent (again: all zeros)."""
    visible_agent(ctx, who, agent_id)
    payments = None if ctx.payments is None else ctx.payments.payments
    report = Lifecycle(ctx.governance, ctx.credentials, payments).decommission(
        agent_id, actor=who.actor
    )
    return DecommissionOut(
        agent=report.agent,
        status=report.status,
        changed=report.status_changed,
        sessions_revoked=report.sessions_revoked,
        wallets_frozen=report.wallets_frozen,
        payments_cancelled=report.payments_cancelled,
        authorizations_voided=report.authorizations_voided,
        payments_in_flight=report.payments_in_flight,
    )
