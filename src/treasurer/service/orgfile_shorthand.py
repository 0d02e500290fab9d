"""Shorthand policies: the finance-friendly keys that stand for full policies.

``budgets``, ``per_tx_max_usd``, ``allowed_chains``, ``allowed_assets``, ``tiers`` and
``approval`` may be written on the org, a department, an agent or a wallet. Each expands into
one policy at that scope with a deterministic id, ``<scope>:budget:day``,
``<scope>:per_tx_max``, ``<scope>:allowed_chains`` ..., so re-applying a file finds the same
policies (and bumps a version only when the params change), and ``export`` can fold a policy
back into its shorthand by regenerating it and comparing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from treasurer.domain.errors import OrgFileInvalid, PolicyInvalid
from treasurer.domain.org import Scope
from treasurer.domain.policies import BudgetParams, Policy, make_policy, parse_params
from treasurer.service.orgfile_read import Reader, items, key_path

SHORTHAND_KEYS = (
    "budgets",
    "per_tx_max_usd",
    "allowed_chains",
    "allowed_assets",
    "tiers",
    "approval",
)


@dataclass(frozen=True, slots=True)
class Where:
    """Maps a policy error's field (``params.chains[0]``) to its place in the file.

    ``collapse`` names a params key the shorthand leaves out: ``allowed_chains: [...]`` is
    ``params.chains``, so ``params.chains[0]`` is reported as ``allowed_chains[0]``.
    """

    params_path: str
    collapse: str = ""
    policy_path: str = ""

    def path(self, field: str | None) -> str:
        if field and field.startswith("params"):
            rest = field.removeprefix("params")
            if self.collapse and rest.startswith(f".{self.collapse}"):
                rest = rest.removeprefix(f".{self.collapse}")
            return self.params_path + rest
        if field and self.policy_path:
            return key_path(self.policy_path, field)
        return self.params_path


def policy_error(
    reader: Reader, where: Where, exc: PolicyInvalid, policy_id: str
) -> OrgFileInvalid:
    """Re-raise a policy schema error at its place in the file, keeping its fix."""
    detail = exc.message.removeprefix(f"policy {policy_id!r}: ")
    if exc.field:
        detail = detail.removeprefix(f"{exc.field}: ")
    if detail == "Field required":
        detail = "missing; add this key"
    return reader.error(where.path(exc.field), detail)


def build_policy(
    reader: Reader,
    where: Where,
    *,
    policy_id: str,
    policy_type: str,
    scope: Scope,
    params: object,
    mode: str = "enforce",
    description: str = "",
) -> Policy:
    """:func:`make_policy`, with its errors pointing into the file."""
    try:
        return make_policy(
            policy_id=policy_id,
            policy_type=policy_type,
            scope=scope,
            params=params,
            mode=mode,
            description=description,
        )
    except PolicyInvalid as exc:
        raise policy_error(reader, where, exc, policy_id) from None


def budget_window_id(params: BudgetParams) -> str:
    """The window part of a budget's generated id: ``day``, ``rolling3600``."""
    if params.window == "rolling":
        return f"rolling{params.rolling_seconds}"
    return params.window


def _budgets(reader: Reader, scope: Scope, value: object, path: str) -> list[Policy]:
    seen: dict[str, str] = {}
    out: list[Policy] = []
    for index, item in enumerate(items(reader, value, path)):
        where = Where(f"{path}[{index}]")
        try:
            params = parse_params("budget", item)
        except PolicyInvalid as exc:
            raise policy_error(reader, where, exc, "") from None
        assert isinstance(params, BudgetParams)
        if params.window == "per_transaction":
            raise reader.error(
                f"{where.params_path}.window",
                "a per-transaction limit is written as `per_tx_max_usd:` next to `budgets:`",
            )
        window = budget_window_id(params)
        if window in seen:
            raise reader.error(
                f"{where.params_path}.window",
                f"{seen[window]} already has window {window!r}; keep one budget per window "
                "(one budget may set both limit_usd and max_count)",
            )
        seen[window] = where.params_path
        policy_id = f"{scope}:budget:{window}"
        out.append(
            build_policy(
                reader, where, policy_id=policy_id, policy_type="budget", scope=scope, params=item
            )
        )
    return out


_ParamsOf = Callable[[object], object]
#: key -> (policy type, id suffix, params built from the value, params key left out)
_SINGLE: dict[str, tuple[str, str, _ParamsOf, str]] = {
    "per_tx_max_usd": (
        "budget",
        "per_tx_max",
        lambda value: {"window": "per_transaction", "limit_usd": value},
        "limit_usd",
    ),
    "allowed_chains": (
        "allowed_chains",
        "allowed_chains",
        lambda value: {"chains": value},
        "chains",
    ),
    "allowed_assets": (
        "allowed_assets",
        "allowed_assets",
        lambda value: {"assets": value},
        "assets",
    ),
    "tiers": ("spending_tiers", "tiers", lambda value: value, ""),
    "approval": ("approval", "approval", lambda value: value, ""),
}


def shorthand_policies(
    reader: Reader, scope: Scope, block: Mapping[str, object], path: str
) -> list[Policy]:
    """Every policy the shorthand keys of ``block`` (found at ``path``) stand for."""
    out: list[Policy] = []
    for key in SHORTHAND_KEYS:
        value = block.get(key)
        if value is None:
            continue
        where = key_path(path, key)
        if key == "budgets":
            out.extend(_budgets(reader, scope, value, where))
            continue
        policy_type, suffix, to_params, collapse = _SINGLE[key]
        out.append(
            build_policy(
                reader,
                Where(where, collapse),
                policy_id=f"{scope}:{suffix}",
                policy_type=policy_type,
                scope=scope,
                params=to_params(value),
            )
        )
    return out


def shorthand_value(policy: Policy) -> object:
    """The value a policy's shorthand key would hold (before checking it really is one)."""
    params = policy.params.model_dump(mode="json", exclude_defaults=True)
    if policy.type == "budget" and policy.id.endswith(":per_tx_max"):
        return params.get("limit_usd")
    if policy.type in ("allowed_chains", "allowed_assets"):
        return params.get(policy.type.removeprefix("allowed_"))
    return params


def shorthand_key(policy: Policy) -> str | None:
    """The shorthand key a policy's id claims (``budgets``, ``tiers`` ...), if any."""
    suffix = policy.id.removeprefix(f"{policy.scope}:")
    if suffix == policy.id:
        return None
    if suffix.startswith("budget:"):
        return "budgets"
    for key, (_type, key_suffix, _params, _collapse) in _SINGLE.items():
        if suffix == key_suffix:
            return key
    return None
