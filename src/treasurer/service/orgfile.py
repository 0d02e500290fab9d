"""The org file: the whole governed configuration as "policy as code".

One YAML file describes the org, its departments, agents, wallets, assets and policies, with
finance-friendly shorthand for the common rules (budgets, per-transaction maximum, allowed
chains and assets, spending tiers, second approval). ``apply`` parses it, diffs it against the
store with :func:`~treasurer.domain.plan.make_plan`, shows :func:`render_plan`, then writes;
``export`` writes the store back in the same format.

Public entry points (the modules behind them are private):

- :func:`parse_org_file` — YAML-loaded data to :class:`~treasurer.domain.config.OrgConfig`, or
  :class:`~treasurer.domain.errors.OrgFileInvalid` naming file, path and fix.
- :func:`export_org_file` — the inverse, for ``treasurer export``.
- :func:`render_plan` — a plan as lines a person reviews before confirming.

YAML itself is loaded and dumped by the caller (CLI, HTTP), never here: the service layer
speaks plain data.
"""

from __future__ import annotations

import json

from treasurer.domain.plan import Change, Plan
from treasurer.service.orgfile_export import export_org_file
from treasurer.service.orgfile_parse import parse_org_file

__all__ = ["export_org_file", "parse_org_file", "render_plan"]


def render_plan(plan: Plan, *, detail: bool = False) -> list[str]:
    """One line per change (``+ agent bot``, ``~ policy id (params)``, ``- wallet w``) and a
    summary; with ``detail``, each changed field of an update follows as ``old -> new``."""
    lines: list[str] = []
    for change in plan.changes:
        fields = change.changed_fields()
        suffix = f" ({', '.join(fields)})" if change.action == "update" and fields else ""
        lines.append(change.summary() + suffix)
        if detail and change.action == "update":
            lines.extend(_field_lines(change, fields))
    lines.append(_summary(plan))
    return lines


def _field_lines(change: Change, fields: list[str]) -> list[str]:
    before, after = change.before or {}, change.after or {}
    return [f"    {name}: {_show(before.get(name))} -> {_show(after.get(name))}" for name in fields]


def _show(value: object) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


def _summary(plan: Plan) -> str:
    if plan.empty:
        return "No changes. The org is up to date."
    counts = plan.counts()
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to change, "
        f"{counts['delete']} to remove."
    )
