"""``/v1/org`` (the whole org file) and ``/v1/departments``.

``GET /v1/org`` exports the org file as JSON; ``POST /v1/org`` applies one (``?dry_run=true``
returns the plan and writes nothing). Departments are edited one at a time through the same
plan machinery, so an edit here and an edit of the file are indistinguishable in the history.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import Forbidden
from treasurer.domain.org import Department
from treasurer.interfaces.http.deps import (
    Ctx,
    HttpContext,
    Manager,
    Pages,
    Reader,
    page_of,
    visible_or_404,
)
from treasurer.interfaces.http.org_edits import (
    add_department,
    apply_edit,
    change_department,
    remove_department,
)
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import department_out, plan_out
from treasurer.service.auth_access import require_org_wide
from treasurer.wire import DepartmentIn, DepartmentOut, DepartmentPatch, Page, PlanOut

router = APIRouter(tags=["org"], responses=COMMON)


@router.get("/v1/org", responses=responses(404))
def export_org(ctx: Ctx, who: Reader) -> dict[str, Any]:
    """The current configuration in the org file format (applying it changes nothing)."""
    require_org_wide(who, "the org file")
    return ctx.governance.export()


@router.post("/v1/org", responses=responses(400))
def apply_org(
    ctx: Ctx,
    who: Manager,
    org_file: Annotated[dict[str, Any], Body(description="the org file, as JSON")],
    dry_run: Annotated[bool, Query(description="only return the plan")] = False,
) -> PlanOut:
    """Apply an org file: the plan, and (unless a dry run) the write of it in one transaction."""
    require_org_wide(who, "the org file")
    result = ctx.governance.apply(org_file, source="request", actor=who.actor, dry_run=dry_run)
    return plan_out(result, dry_run=dry_run)


@router.get("/v1/departments")
def list_departments(ctx: Ctx, who: Reader, pages: Pages) -> Page[DepartmentOut]:
    """Departments the caller may see (a scoped key: its own and the teams below it)."""
    view = ctx.view(who)
    visible = [d for d in ctx.config.departments.values() if view.department(d.id)]
    items, nxt = page_of(visible, lambda d: d.id, pages)
    return Page[DepartmentOut](items=[department_out(d) for d in items], next=nxt)


def _department(ctx: HttpContext, who: Principal, department_id: str) -> Department:
    found = ctx.config.departments.get(department_id)
    visible_or_404(
        found is not None and ctx.view(who).department(department_id),
        f"department {department_id!r}",
    )
    assert found is not None
    return found


def _inside(ctx: HttpContext, who: Principal, parent: str | None) -> None:
    """A key scoped to a department may only place departments inside it."""
    if who.department_id is not None and not ctx.view(who).department(parent):
        raise Forbidden(
            f"parent: a key scoped to {who.department_id} may only create or move departments "
            "inside it",
            field="parent",
        )


@router.get("/v1/departments/{department_id}", responses=responses(404))
def get_department(department_id: str, ctx: Ctx, who: Reader) -> DepartmentOut:
    return department_out(_department(ctx, who, department_id))


@router.post("/v1/departments", status_code=201, responses=responses(400, 404, 409))
def create_department(body: DepartmentIn, ctx: Ctx, who: Manager) -> DepartmentOut:
    """Create a department; a scoped key may only create teams inside its department."""
    _inside(ctx, who, body.parent)
    department = Department(body.id, body.name or body.id, body.parent)
    config = apply_edit(ctx.governance, who.actor, lambda c: add_department(c, department))
    return department_out(config.departments[body.id])


@router.patch("/v1/departments/{department_id}", responses=responses(400, 404, 409))
def update_department(
    department_id: str, body: DepartmentPatch, ctx: Ctx, who: Manager
) -> DepartmentOut:
    """Rename or move a department (send ``parent: null`` to make it top-level)."""
    current = _department(ctx, who, department_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if "parent" in body.model_fields_set:
        _inside(ctx, who, body.parent)
        changes["parent_id"] = body.parent
    updated = replace(current, **changes)
    config = apply_edit(ctx.governance, who.actor, lambda c: change_department(c, updated))
    return department_out(config.departments[department_id])


@router.delete("/v1/departments/{department_id}", status_code=204, responses=responses(404, 409))
def delete_department(department_id: str, ctx: Ctx, who: Manager) -> None:
    """Remove an empty department (no teams, agents or policies left in it)."""
    _department(ctx, who, department_id)
    apply_edit(ctx.governance, who.actor, lambda c: remove_department(c, department_id))
