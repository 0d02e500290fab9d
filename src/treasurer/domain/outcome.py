"""The values a decision is made of: tiers, reasons, approval requirements, decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from treasurer.domain.budgets import BudgetClaim, Headroom
from treasurer.domain.money import usd_decimal_text as usd_text


class Tier(StrEnum):
    """Outcome tiers; the strictest of all applicable policies wins."""

    INSTANT = "instant"
    NOTIFY = "notify"
    DELAY = "delay"
    APPROVAL = "approval"
    DENY = "deny"


TIER_RANK = {Tier.INSTANT: 0, Tier.NOTIFY: 1, Tier.DELAY: 2, Tier.APPROVAL: 3, Tier.DENY: 4}


def strictest(tiers: list[Tier]) -> Tier:
    return max(tiers, key=TIER_RANK.__getitem__, default=Tier.INSTANT)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: a stable snake_case code, a message with the numbers, and the deciding policy."""

    code: str
    message: str
    policy_id: str | None = None
    policy_version: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
        }


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """Who must approve a spend in the approval tier, and how long the request lives."""

    policy_id: str | None
    required: int = 1
    approvers: tuple[str, ...] = ()
    group: str | None = None
    second_agent: bool = False
    expiry_s: int = 86_400


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What one policy says about one spend."""

    reasons: tuple[Reason, ...] = ()
    tier: Tier = Tier.INSTANT
    claims: tuple[BudgetClaim, ...] = ()
    grants: bool = False
    delay_s: int = 0
    approval: ApprovalRequirement | None = None


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """What a shadow policy would have done; recorded, never enforced."""

    policy_id: str
    policy_version: int
    policy_type: str
    would_deny: bool
    tier: Tier
    reasons: tuple[Reason, ...]
    #: Budget claims the policy would make; their balances are measured from recorded spend
    #: (shadow budgets reserve nothing), see ``Facts.balances``.
    claims: tuple[BudgetClaim, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this spend happen, and how?" with everything that explains it.

    ``allowed`` is False exactly when ``tier`` is DENY. ``claims`` are the reservations to make
    (sorted in the global lock order); ``headroom`` reports every covering budget.
    """

    allowed: bool
    tier: Tier
    reasons: tuple[Reason, ...]
    value_usd_micros: int | None
    claims: tuple[BudgetClaim, ...] = ()
    headroom: tuple[Headroom, ...] = ()
    shadow: tuple[ShadowResult, ...] = ()
    delay_s: int = 0
    approvals: tuple[ApprovalRequirement, ...] = ()
    policy_versions: tuple[tuple[str, int], ...] = field(default=())

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    @property
    def shadow_claims(self) -> tuple[BudgetClaim, ...]:
        return tuple(claim for result in self.shadow for claim in result.claims)

    @property
    def approval(self) -> ApprovalRequirement | None:
        """The strictest approval requirement (every one in ``approvals`` must be met)."""
        return self.approvals[0] if self.approvals else None

    @property
    def approval_expiry_s(self) -> int | None:
        """An approval request lives as long as the shortest expiry among its requirements."""
        return min((a.expiry_s for a in self.approvals), default=None)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready explanation: outcome, tier, reasons, headroom, shadow results."""
        return {
            "allowed": self.allowed,
            "tier": self.tier.value,
            "value_usd": None if self.value_usd_micros is None else usd_text(self.value_usd_micros),
            "reasons": [reason.as_dict() for reason in self.reasons],
            "budgets": [headroom_dict(h) for h in self.headroom],
            "shadow": [
                {
                    "policy_id": s.policy_id,
                    "policy_version": s.policy_version,
                    "policy_type": s.policy_type,
                    "would_deny": s.would_deny,
                    "tier": s.tier.value,
                    "reasons": [reason.as_dict() for reason in s.reasons],
                }
                for s in self.shadow
            ],
            "delay_s": self.delay_s,
            "approvals": [
                {
                    "policy_id": a.policy_id,
                    "required": a.required,
                    "approvers": list(a.approvers),
                    "group": a.group,
                    "second_agent": a.second_agent,
                    "expiry_s": a.expiry_s,
                }
                for a in self.approvals
            ],
            "policy_versions": {pid: version for pid, version in self.policy_versions},
        }


def headroom_dict(h: Headroom) -> dict[str, object]:
    """A budget's headroom as JSON: limit, used before, this request, remaining after."""
    remaining = h.remaining_after_micros
    return {
        "policy_id": h.policy_id,
        "scope": h.scope,
        "window": h.window,
        "period": h.period,
        "limit_usd": None if h.limit_micros is None else usd_text(h.limit_micros),
        "used_usd": usd_text(h.used_micros),
        "requested_usd": usd_text(h.requested_micros),
        "remaining_usd": None if remaining is None else usd_text(remaining),
        "max_count": h.max_count,
        "used_count": h.used_count,
    }
