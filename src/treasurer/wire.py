"""The JSON shapes of the HTTP API, shared by the server and the SDK.

The SDK imports this module and :mod:`treasurer.domain.errors` only, never server code, so
everything here is plain pydantic. Request models refuse unknown fields (a typo must not be
silently ignored in a money API). Amounts are decimal *strings*: a JSON number where an amount
belongs fails with code ``amount_not_a_string`` before anything else looks at it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

T = TypeVar("T")

#: Page sizes of list routes.
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500


def _amount_text(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    kind = "a float" if isinstance(value, float) else f"a JSON {type(value).__name__}"
    raise PydanticCustomError(
        "amount_not_a_string",
        'got {kind}; amounts must be JSON strings like "12.50" so no precision is lost',
        {"kind": kind},
    )


AmountText = Annotated[str, BeforeValidator(_amount_text), Field(examples=["499.00"])]
"""A decimal amount in token units (or USD), as a string."""
OptionalAmount = Annotated[str | None, BeforeValidator(_amount_text)]
Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
"""An id chosen by the org: 1-64 letters, digits, '_', '-' or '.'."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=500)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Request(BaseModel):
    """Base of every request body: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable ``code`` and the ``field`` at fault."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next`` as ``after`` to get the following page."""

    items: list[T]
    next: str | None = None


# -- spends ------------------------------------------------------------------------------
class TypedDataBody(Request):
    primary_type: Name
    name: Name | None = None
    verifying_contract: Ref | None = None
    chain_id: int | None = None


class SpendBody(Request):
    """A spend to check or authorize. ``agent`` may be omitted: the session names it."""

    agent: Slug | None = None
    wallet: Ref = Field(description="wallet id or chain:address")
    amount: OptionalAmount = Field(default=None, examples=["499.00"])
    asset: Ref | None = Field(default=None, examples=["USDC", "base:USDC"])
    recipient: Ref | None = None
    chain: Ref | None = None
    kind: Literal["transfer", "approve", "contract_call", "sign_message"] = "transfer"
    contract: Ref | None = None
    method: Ref | None = None
    spender: Ref | None = None
    typed_data: TypedDataBody | None = None
    fee_usd: OptionalAmount = None
    gas_price_gwei: int | None = Field(default=None, ge=0)
    to: Ref | None = Field(default=None, description="contract of a raw call (with data)")
    data: Hex | None = Field(
        default=None,
        description="calldata the wallet is about to sign (0x hex); decoded, so an ERC-20 "
        "transfer is decided on its real recipient and amount. Replaces amount, asset, "
        "recipient, contract, method and spender",
    )
    value: OptionalAmount = Field(default=None, description="native coin sent with the call")


class CaptureBody(Request):
    amount: OptionalAmount = Field(default=None, description="final amount; default: all")
    tx_hash: Ref | None = None


class VoidBody(Request):
    reason: Text = "voided by caller"


class ReasonOut(BaseModel):
    code: str
    message: str
    policy_id: str | None = None
    policy_version: int | None = None


class BudgetOut(BaseModel):
    policy_id: str
    scope: str
    window: str
    period: str
    limit_usd: str | None
    used_usd: str
    requested_usd: str
    remaining_usd: str | None
    max_count: int | None = None
    used_count: int = 0


class ShadowOut(BaseModel):
    """What a shadow-mode policy would have decided (recorded, never enforced)."""

    policy_id: str
    policy_version: int
    policy_type: str
    would_deny: bool
    tier: str
    reasons: list[ReasonOut]


class ApprovalOut(BaseModel):
    """One approval requirement of a spend in the approval tier."""

    policy_id: str | None
    required: int
    approvers: list[str]
    group: str | None
    second_agent: bool
    expiry_s: int


class DecisionOut(BaseModel):
    """The decision and everything that explains it (reasons, budgets, shadow results)."""

    allowed: bool
    tier: str
    value_usd: str | None
    reasons: list[ReasonOut]
    budgets: list[BudgetOut]
    shadow: list[ShadowOut] = []
    delay_s: int = 0
    approvals: list[ApprovalOut] = []
    policy_versions: dict[str, int] = {}
    request: dict[str, Any] | None = Field(
        default=None, description="the normalized request, on stored authorizations"
    )


class AuthorizationOut(BaseModel):
    id: str
    agent: str
    wallet: str
    state: str
    tier: str
    amount: str
    asset: str | None
    value_usd: str
    created_at: datetime
    expires_at: datetime | None
    decision: DecisionOut
    replayed: bool = False
    captured_amount: str | None = None
    captured_usd: str | None = None
    tx_hash: str | None = None
    #: The chain of the wallet that spent (the itemized spend report lists it per row).
    chain: str | None = None


# -- custodial payments ------------------------------------------------------------------
#: Calldata as 0x-prefixed hex, at most 16 KiB of bytes: far above any ordinary call, and
#: small enough that a whole payment body stays under the server's 64 KiB body limit.
MAX_CALLDATA_BYTES = 16 * 1024
Hex = Annotated[
    str,
    StringConstraints(pattern=r"^0x[0-9a-fA-F]*$", max_length=2 + 2 * MAX_CALLDATA_BYTES),
]


class PaymentIn(Request):
    """A custodial payment from one of the session's own wallets.

    ``transfer`` and ``approve`` take ``recipient`` (the spender, for an approval), ``amount``
    and ``asset``; ``call`` takes the contract ``to``, hex ``data`` and an optional native
    ``value``. Amounts and ``max_fee_usd`` are decimal strings. ``dry_run`` decides, quotes the
    fee and simulates, and reserves nothing (no ``Idempotency-Key`` needed).
    """

    wallet: Ref = Field(description="wallet id or chain:address")
    kind: Literal["transfer", "approve", "call"] = "transfer"
    recipient: Ref | None = None
    amount: OptionalAmount = Field(default=None, examples=["25.00"])
    asset: Ref | None = Field(default=None, examples=["USDC", "evm-local:DUSD"])
    to: Ref | None = Field(default=None, description="the contract a call goes to")
    data: Hex | None = Field(default=None, description="calldata of a call, 0x-prefixed hex")
    value: OptionalAmount = Field(default=None, description="native coin sent with a call")
    max_fee_usd: OptionalAmount = Field(default=None, description="fail instead of paying more")
    dry_run: bool = False


class PaymentOut(BaseModel):
    """A custodial payment and the decision behind it.

    ``amount`` is in token units (null only if the asset is no longer registered);
    ``amount_base_units`` is always exact. Fees are in the chain's native base units (wei,
    lamports) with their USD value: ``fee_quote`` is the most it may cost (what the decision
    saw), ``fee_paid`` what the receipt says it cost.
    """

    id: str
    state: str = Field(description="created, queued, broadcast, confirmed, failed or denied")
    tier: str | None
    agent: str
    wallet: str
    chain: str
    asset: str
    recipient: str
    amount: str | None
    amount_base_units: str
    tx_id: str | None
    fee_quote: str | None
    fee_quote_usd: str | None
    fee_paid: str | None
    fee_paid_usd: str | None
    error: str | None
    authorization: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    broadcast_at: datetime | None
    finalized_at: datetime | None
    decision: DecisionOut | None = Field(
        default=None,
        description="null in lists, and when the payment failed before it was decided",
    )
    replayed: bool = False


class FeeQuoteOut(BaseModel):
    """What sending would cost at most, in the chain's native base units (decimal strings)."""

    max_fee: str
    max_fee_usd: str | None
    gas_limit: str | None = None
    max_fee_per_gas: str | None = None
    max_priority_fee_per_gas: str | None = None


class SimulationOut(BaseModel):
    ok: bool
    error: str | None = None


class PaymentPreviewOut(BaseModel):
    """A dry run: the decision and budgets' headroom, the fee and a simulation; nothing is
    reserved or recorded. ``fee`` is null when the transaction would revert (no quote)."""

    dry_run: Literal[True] = True
    decision: DecisionOut
    fee: FeeQuoteOut | None
    simulation: SimulationOut


class AssetBalanceOut(BaseModel):
    """One asset held by a wallet, read from the chain now (null amounts with ``error`` when
    that one asset could not be read)."""

    asset: str
    symbol: str
    token: str | None = Field(description="token address or mint; null for the native coin")
    amount: str | None
    base_units: str | None
    error: str | None = None


class WalletBalanceOut(BaseModel):
    wallet: str
    chain: str
    address: str
    balances: list[AssetBalanceOut]


# -- org objects -------------------------------------------------------------------------
class DepartmentIn(Request):
    id: Slug
    name: Name | None = None
    parent: Slug | None = None


class DepartmentPatch(Request):
    name: Name | None = None
    parent: Slug | None = None


class DepartmentOut(BaseModel):
    id: str
    name: str
    parent: str | None


class AgentIn(Request):
    id: Slug
    name: Name | None = None
    department: Slug | None = None


class AgentPatch(Request):
    name: Name | None = None
    department: Slug | None = None


class AgentOut(BaseModel):
    id: str
    name: str
    department: str | None
    status: str


class DecommissionOut(BaseModel):
    """What a decommission did; calling it again reports zeros. ``payments_in_flight`` were
    already on their way to the chain: they cannot be recalled and confirm as usual."""

    agent: str
    status: str
    sessions_revoked: int
    changed: bool = True
    wallets_frozen: int = 0
    payments_cancelled: int = 0
    authorizations_voided: int = 0
    payments_in_flight: int = 0


class WalletIn(Request):
    """A wallet to register. ``custody: local`` without ``address``: Treasurer creates the key
    in its vault; with one, the vault must already hold that key. ``external`` needs the
    address."""

    id: Slug
    agent: Slug
    chain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    address: Ref | None = None
    custody: Literal["local", "external"] = "external"
    vendor: Slug | None = None


class WalletOut(BaseModel):
    id: str
    agent: str
    chain: str
    address: str
    custody: str
    vendor: str
    status: str
    frozen: bool


class PolicyIn(Request):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    type: Ref
    scope: Ref = Field(examples=["org", "department:ops", "agent:agent_a", "wallet:w1"])
    mode: Literal["enforce", "shadow"] = "enforce"
    params: dict[str, Any]
    description: Text = ""


class PolicyReplace(Request):
    type: Ref
    scope: Ref
    mode: Literal["enforce", "shadow"] = "enforce"
    params: dict[str, Any]
    description: Text = ""


class PolicyOut(BaseModel):
    id: str
    type: str
    scope: str
    mode: str
    version: int
    params: dict[str, Any]
    description: str


class PolicyVersionOut(BaseModel):
    version: int
    type: str
    scope: str
    mode: str
    params: dict[str, Any]
    description: str
    created_at: datetime | None
    retired_at: datetime | None


class PlanChangeOut(BaseModel):
    action: str
    kind: str
    id: str
    fields: list[str]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class PlanOut(BaseModel):
    """What applying an org file does (or would do, for a dry run)."""

    applied: bool
    dry_run: bool
    config_version: int | None
    counts: dict[str, int]
    changes: list[PlanChangeOut]
    summary: list[str]


# -- credentials -------------------------------------------------------------------------
class AdminKeyIn(Request):
    name: Name
    role: Literal["admin", "finance", "auditor"]
    department: Slug | None = None


class AdminKeyOut(BaseModel):
    id: str
    name: str
    role: str
    department: str | None
    created_at: datetime
    revoked_at: datetime | None


class AdminKeyCreated(AdminKeyOut):
    token: str = Field(description="shown once; only its hash is stored")


class SessionIn(Request):
    name: Name = "default"
    ttl_s: int | None = Field(default=None, ge=60, le=90 * 86_400)


class SessionRotate(Request):
    ttl_s: int | None = Field(default=None, ge=60, le=90 * 86_400)


class SessionOut(BaseModel):
    id: str
    agent: str
    name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    replaced_by: str | None
    active: bool


class SessionCreated(SessionOut):
    token: str = Field(description="shown once; only its hash is stored")


class ApproverIn(Request):
    id: Slug
    name: Name
    kind: Literal["ed25519", "evm"]
    public_key: Ref = Field(description="Ed25519 key (hex or base64) or EVM address")
    groups: list[Slug] = Field(default=[], max_length=32)


class ApproverPatch(Request):
    name: Name | None = None
    groups: list[Slug] | None = Field(default=None, max_length=32)


class ApproverOut(BaseModel):
    id: str
    name: str
    kind: str
    public_key: str
    groups: list[str]
    created_at: datetime
    revoked_at: datetime | None


# -- operations and reports --------------------------------------------------------------
class FreezeIn(Request):
    scope: Ref = Field(examples=["org", "department:ops", "agent:agent_a", "wallet:w1"])
    reason: Text = ""


class FreezeOut(BaseModel):
    scope: str
    frozen: bool
    changed: bool


class FrozenScopeOut(BaseModel):
    scope: str


class PriceIn(Request):
    price_usd: AmountText


class PriceOut(BaseModel):
    asset: str
    price_usd: str
    as_of: datetime
    source: str


class SpendRowOut(BaseModel):
    group: str
    captured_usd: str
    pending_usd: str
    captured_count: int
    pending_count: int
    amounts: dict[str, str] = Field(
        default={},
        description="captured amount per asset, in token units",
        examples=[{"base:USDC": "1234.500000"}],
    )


class SpendReport(BaseModel):
    group_by: str
    since: datetime | None
    until: datetime | None
    rows: list[SpendRowOut]


class AuditEventOut(BaseModel):
    """One audit event, with its place in the hash chain once it is sealed.

    ``seq``, ``hash`` and ``prev_hash`` are what an export line carries for the same event, so
    an auditor can match the two (and check the link); they are null until the sealer links
    the event, about a second after it is written.
    """

    id: int
    at: datetime
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]
    seq: int | None = Field(
        default=None, description="position in the hash chain; null until sealed"
    )
    hash: str | None = Field(
        default=None,
        description="SHA-256 of the event (lowercase hex, as in the export); null until sealed",
    )
    prev_hash: str | None = Field(
        default=None,
        description="hash of the event at seq - 1 (64 zeros for seq 1); null until sealed",
    )


class Health(BaseModel):
    status: str = "ok"


# -- webhooks ----------------------------------------------------------------------------
WebhookEventName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class WebhookIn(Request):
    """A webhook endpoint to register. ``events`` empty: every event type."""

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        examples=["https://example.com/treasurer-hook"]
    )
    format: Literal["json", "slack"] = "json"
    events: list[WebhookEventName] = Field(
        default=[], max_length=32, examples=[["budget.breach", "agent.frozen"]]
    )
    description: Text = ""


class WebhookOut(BaseModel):
    """A webhook endpoint. ``url`` is redacted (password, query, a Slack URL's path)."""

    id: str
    url: str
    format: str
    events: list[str]
    description: str
    created_at: datetime
    created_by: str
    removed_at: datetime | None
    active: bool


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="shown once; signs every delivery (Treasurer-Signature, see the docs)"
    )


class WebhookDeliveryOut(BaseModel):
    """One event on its way to one endpoint: ``pending``, ``delivered`` or ``dead``."""

    id: str
    webhook: str
    event_id: str
    event: str
    event_seq: int
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    body: dict[str, Any]


# -- approvals ---------------------------------------------------------------------------
Signature = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class ApprovalChallengeIn(Request):
    """Ask for a single-use nonce for ``approver`` (a registered approver's id) on a spend."""

    approver: Slug


class ApprovalChallengeOut(BaseModel):
    """What to sign: ``messages[vote]`` (UTF-8), with Ed25519 or EIP-191 ``personal_sign``;
    send it back before ``expires_at`` with this ``nonce`` and ``expires_at``."""

    subject: str
    authorization: str
    approver: str
    nonce: str
    spend_hash: str
    expires_at: datetime
    messages: dict[str, str]


class ApprovalVoteIn(Request):
    """A vote. Signed by a registered approver: ``approver``, ``nonce``, ``expires_at`` (from
    the challenge) and ``signature`` (hex or base64). Without a signature, the vote of the
    caller itself: a finance or admin key, or a second agent's session."""

    vote: Literal["approve", "reject"]
    approver: Slug | None = None
    nonce: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    expires_at: AwareDatetime | None = None
    signature: Signature | None = None


class ApprovalProgressOut(BaseModel):
    """One requirement: who it asks, and the approvals and rejections counted for it."""

    requirement: str
    approvals: int
    rejections: int
    required: int


class BallotOut(BaseModel):
    voter: str = Field(description="approver:<id>, key:<id> or agent:<id>")
    vote: str
    at: datetime


class ApprovalStatusOut(BaseModel):
    """Where the votes on a spend stand. ``verdict``: ``pending``, ``approved``,
    ``rejected``, or ``not_required`` (the spend is not in the approval tier). ``state`` is
    the authorization's: ``pending_approval`` while votes are open, ``pending`` once
    approved (capturable until ``expires_at``; a queued payment is then executed),
    ``rejected``, ``expired`` ..."""

    subject: str
    authorization: str
    state: str
    verdict: str
    expires_at: datetime | None
    spend_hash: str
    progress: list[ApprovalProgressOut]
    ballots: list[BallotOut]
    voted: BallotOut | None = Field(default=None, description="the vote this call recorded")


# -- simulation: backtests and shadow reports --------------------------------------------
Quarter = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}[Qq][1-4]$")]


class BacktestIn(Request):
    """Replay the decisions recorded in a range against a draft org file; writes nothing.

    The range is ``quarter`` (``2026Q2``, in UTC) or ``since`` and ``until`` (with a zone)."""

    org: dict[str, Any] = Field(description="the draft org file, as JSON")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    quarter: Quarter | None = Field(default=None, examples=["2026Q2"])


class OutcomeOut(BaseModel):
    """One side of a comparison: allowed, the tier, the reason codes."""

    allowed: bool
    tier: str
    codes: list[str]


class BacktestChangeOut(BaseModel):
    """A recorded decision the draft would have made differently. ``change`` is
    ``allowed_to_denied``, ``denied_to_allowed`` or ``tier_changed``."""

    authorization: str
    at: datetime
    agent: str
    wallet: str
    asset: str | None
    amount: str
    value_usd: str
    change: str
    before: OutcomeOut
    after: OutcomeOut


class BacktestOut(BaseModel):
    """Counts and USD per kind of change, and the changes (at most the first 10,000 are
    listed: ``truncated`` says so; the totals always count every one)."""

    since: datetime
    until: datetime
    replayed: int
    changed: int
    counts: dict[str, int]
    usd: dict[str, str]
    changes: list[BacktestChangeOut]
    truncated: bool


class ShadowPolicyOut(BaseModel):
    """What one shadow policy would have denied among the decisions of the range, and how
    many of those reality allowed (the decisions it would have changed)."""

    policy: str
    policy_type: str
    evaluated: int
    would_deny: int
    would_deny_usd: str
    would_deny_allowed: int
    would_deny_allowed_usd: str
    codes: dict[str, int]


class ShadowReportOut(BaseModel):
    since: datetime
    until: datetime
    policies: list[ShadowPolicyOut]
