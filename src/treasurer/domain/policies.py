"""Policy types, their parameter schemas, and validation at write time.

Policies are data (the Cedar lesson): each has a ``type`` from :data:`POLICY_TYPES`, a ``scope``
(org, department, agent or wallet), a ``mode`` (``enforce`` or ``shadow``), a monotonically
increasing ``version`` and ``params`` validated against the type's schema *when written*, so a
bad policy is refused with an error naming the field instead of failing at decision time.

The schemas are pydantic models: pure value validation (no I/O), which also gives the HTTP
layer JSON Schema for free. USD values are decimal strings in policies and integer
micro-dollars once parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from treasurer.domain.errors import AmountError, PolicyInvalid
from treasurer.domain.money import MAX_DECIMALS, parse_amount, parse_usd, usd_decimal_text
from treasurer.domain.org import Scope
from treasurer.domain.windows import Window, WindowKind


def _usd_input(value: object) -> int:
    try:
        return parse_usd(value, field="value")
    except AmountError as exc:
        raise ValueError(exc.message.removeprefix("value: ")) from exc


UsdMicrosField = Annotated[
    int,
    BeforeValidator(_usd_input),
    PlainSerializer(usd_decimal_text, return_type=str),
]
"""A USD amount written as a decimal string ("1000.00"), held as integer micro-dollars."""

WindowName = Literal["day", "week", "month", "quarter", "year", "rolling", "lifetime"]
_SELECTOR = re.compile(r"0x[0-9a-fA-F]{8}")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Windowed(_Params):
    window: WindowName
    rolling_seconds: int | None = Field(default=None, gt=0, le=366 * 86400)

    @model_validator(mode="after")
    def _rolling_needs_seconds(self) -> _Windowed:
        if self.window == "rolling" and self.rolling_seconds is None:
            raise ValueError("window 'rolling' needs rolling_seconds (e.g. 86400 for 24 hours)")
        if self.window != "rolling" and self.rolling_seconds is not None:
            raise ValueError("rolling_seconds is only allowed with window 'rolling'")
        return self

    def as_window(self) -> Window:
        return Window(WindowKind(self.window), self.rolling_seconds)


class BudgetParams(_Windowed):
    """A windowed USD ceiling and/or a maximum count, aggregated over everything in scope."""

    window: WindowName | Literal["per_transaction"]  # type: ignore[assignment]
    limit_usd: UsdMicrosField | None = None
    max_count: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _needs_a_limit(self) -> BudgetParams:
        if self.limit_usd is None and self.max_count is None:
            raise ValueError("a budget needs limit_usd, max_count or both")
        if self.window == "per_transaction" and self.limit_usd is None:
            raise ValueError("a per_transaction budget needs limit_usd")
        if self.window == "per_transaction" and self.max_count is not None:
            raise ValueError("max_count has no meaning for a per_transaction budget")
        return self


class SpendingTiersParams(_Params):
    """Per-transaction USD thresholds: instant ≤ a < notify ≤ b < delay ≤ c < approval."""

    instant_max_usd: UsdMicrosField
    notify_max_usd: UsdMicrosField | None = None
    delay_max_usd: UsdMicrosField | None = None
    delay_seconds: int | None = Field(default=None, gt=0, le=30 * 86400)
    max_per_tx_usd: UsdMicrosField | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SpendingTiersParams:
        previous = self.instant_max_usd
        for name in ("notify_max_usd", "delay_max_usd", "max_per_tx_usd"):
            value = getattr(self, name)
            if value is not None:
                if value < previous:
                    raise ValueError(f"{name} must not be below the tier before it")
                previous = value
        if self.delay_max_usd is not None and self.delay_seconds is None:
            raise ValueError("delay_max_usd needs delay_seconds")
        return self


class AllowedChainsParams(_Params):
    chains: list[str] = Field(min_length=1)


class AllowedAssetsParams(_Params):
    assets: list[str] = Field(min_length=1, description="asset ids (base:USDC) or symbols")


class AddressEntry(_Params):
    address: str = Field(min_length=1)
    label: str | None = None
    chain: str | None = None


class RecipientsParams(_Params):
    allow: list[AddressEntry] | None = None
    deny: list[AddressEntry] | None = None

    @model_validator(mode="after")
    def _one_list(self) -> RecipientsParams:
        if self.allow is None and self.deny is None:
            raise ValueError("recipients needs an allow list, a deny list or both")
        return self


class ContractEntry(_Params):
    address: str = Field(min_length=1)
    chain: str | None = None
    label: str | None = None
    methods: list[str] | None = None
    max_usd_per_call: UsdMicrosField | None = None

    @model_validator(mode="after")
    def _selectors(self) -> ContractEntry:
        for method in self.methods or []:
            if not _SELECTOR.fullmatch(method):
                raise ValueError(f"method {method!r} must be a 4-byte selector like 0xa9059cbb")
        return self


class ContractsParams(_Params):
    allow: list[ContractEntry] = Field(min_length=1)


class SpenderEntry(_Params):
    spender: str = Field(min_length=1)
    asset: str | None = None
    max_amount: str | None = Field(default=None, description="token units, decimal string")
    allow_unlimited: bool = False

    @field_validator("max_amount")
    @classmethod
    def _amount_form(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_amount(value, MAX_DECIMALS, field="max_amount")
            except AmountError as exc:
                raise ValueError(exc.message.removeprefix("max_amount: ")) from None
        return value


class TokenApprovalsParams(_Params):
    allow: list[SpenderEntry] = Field(min_length=1)


class MessageEntry(_Params):
    primary_type: str = Field(min_length=1)
    domain_name: str | None = None
    verifying_contract: str | None = None
    chain_id: int | None = None


class MessageSigningParams(_Params):
    allow: list[MessageEntry] = Field(min_length=1)


class ScheduleParams(_Params):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @model_validator(mode="after")
    def _hours(self) -> ScheduleParams:
        for name in ("start", "end"):
            if not _HHMM.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be HH:MM (24-hour clock)")
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class RateLimitParams(_Windowed):
    max_count: int = Field(gt=0)


class CounterpartyLimitParams(_Windowed):
    limit_usd: UsdMicrosField


class FeeLimitParams(_Params):
    max_fee_usd: UsdMicrosField | None = None
    max_gwei: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> FeeLimitParams:
        if self.max_fee_usd is None and self.max_gwei is None:
            raise ValueError("fee_limit needs max_fee_usd, max_gwei or both")
        return self


class ApprovalParams(_Params):
    threshold_usd: UsdMicrosField
    approvers: list[str] | None = Field(default=None, description="approver ids of the group")
    group: str | None = None
    required: int = Field(default=1, gt=0, le=32)
    second_agent: bool = False
    expiry_seconds: int = Field(default=86_400, gt=0, le=30 * 86_400)

    @model_validator(mode="after")
    def _who(self) -> ApprovalParams:
        if self.approvers is not None and len(set(self.approvers)) != len(self.approvers):
            raise ValueError("approvers must be distinct; each approver counts once")
        if self.approvers is not None and self.required > len(self.approvers):
            raise ValueError(
                f"required is {self.required} but only {len(self.approvers)} approvers are named"
            )
        return self


POLICY_TYPES: dict[str, type[_Params]] = {
    "budget": BudgetParams,
    "spending_tiers": SpendingTiersParams,
    "allowed_chains": AllowedChainsParams,
    "allowed_assets": AllowedAssetsParams,
    "recipients": RecipientsParams,
    "contracts": ContractsParams,
    "token_approvals": TokenApprovalsParams,
    "message_signing": MessageSigningParams,
    "schedule": ScheduleParams,
    "rate_limit": RateLimitParams,
    "counterparty_limit": CounterpartyLimitParams,
    "fee_limit": FeeLimitParams,
    "approval": ApprovalParams,
}

#: Types that can *grant* a spend. Everything else only narrows; with none of these in force
#: for a spend, it is denied (default deny).
GRANTING_TYPES = frozenset({"budget", "spending_tiers"})


class PolicyMode(StrEnum):
    ENFORCE = "enforce"
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy at one version."""

    id: str
    type: str
    scope: Scope
    params: _Params
    mode: PolicyMode = PolicyMode.ENFORCE
    version: int = 1
    description: str = ""

    def params_dict(self) -> dict[str, Any]:
        """The params as JSON-ready data (USD back to decimal strings)."""
        return self.params.model_dump(mode="json", exclude_none=True)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = "params"
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function")):
            continue  # pydantic's name for a union member, not a field
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_params(policy_type: str, params: object, *, policy_id: str = "") -> _Params:
    """Validate ``params`` against ``policy_type``'s schema; raise :class:`PolicyInvalid`."""
    schema = POLICY_TYPES.get(policy_type)
    prefix = f"policy {policy_id!r}: " if policy_id else ""
    if schema is None:
        known = ", ".join(sorted(POLICY_TYPES))
        raise PolicyInvalid(
            f"{prefix}type {policy_type!r} is not a policy type; use one of: {known}",
            field="type",
        )
    if not isinstance(params, dict):
        raise PolicyInvalid(f"{prefix}params must be an object", field="params")
    try:
        return schema.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _format_loc(tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(schema.model_fields)
            message = f"unknown field; {policy_type} accepts: {allowed}"
        raise PolicyInvalid(f"{prefix}{where}: {message}", field=where) from None


def make_policy(
    *,
    policy_id: str,
    policy_type: str,
    scope: Scope,
    params: object,
    mode: str = "enforce",
    version: int = 1,
    description: str = "",
) -> Policy:
    """Build a validated :class:`Policy` or raise :class:`PolicyInvalid` naming the field."""
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", policy_id):
        raise PolicyInvalid(
            f"policy id {policy_id!r} must be 1-128 letters, digits, '_', '-', '.' or ':'",
            field="id",
        )
    try:
        parsed_mode = PolicyMode(mode)
    except ValueError:
        raise PolicyInvalid(
            f"policy {policy_id!r}: mode {mode!r} must be 'enforce' or 'shadow'", field="mode"
        ) from None
    return Policy(
        id=policy_id,
        type=policy_type,
        scope=scope,
        params=parse_params(policy_type, params, policy_id=policy_id),
        mode=parsed_mode,
        version=version,
        description=description,
    )


def schedule_day_name(weekday: int) -> str:
    return _DAYS[weekday]
