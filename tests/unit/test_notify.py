"""The pure parts of notifications: the event mapping, the bodies, the signature, the backoff,
and the checks on what an admin registers."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treasurer.domain.errors import InvalidRequest
from treasurer.service.notify_admin import check_events, check_url, redact_url
from treasurer.service.notify_events import (
    EVENT_TYPES,
    SOURCE_KINDS,
    Notice,
    SourceEvent,
    is_budget_code,
    notice_of,
)
from treasurer.service.notify_format import (
    Backoff,
    event_id,
    headers,
    render,
    signature,
    verify_signature,
)
from treasurer.service.notify_ports import Endpoint, SendResult

AT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SPEND = {
    "authorization": "auth_1",
    "request": {
        "agent": "agent_a",
        "wallet": "w1",
        "asset": "base:USDC",
        "amount": "1500",
        "recipient": "0x55",
        "kind": "transfer",
    },
    "value_usd": "1500.00",
    "tier": "deny",
}


def event(kind: str, payload: dict[str, Any], subject: str = "auth_1", **extra: Any) -> SourceEvent:
    return SourceEvent(7, 70, AT, kind, extra.pop("actor", "admin"), subject, payload, **extra)


def notice(kind: str, payload: dict[str, Any], subject: str = "auth_1", **extra: Any) -> Notice:
    made = notice_of(event(kind, payload, subject, **extra))
    assert made is not None
    return made


# -- the mapping -----------------------------------------------------------------------------------
def test_a_denial_is_a_breach_only_when_a_budget_said_no() -> None:
    """Budget codes (amount or count) make ``budget.breach``; other denials notify nobody."""
    reasons = [
        {"code": "chain_not_allowed", "message": "no"},
        {"code": "agent_daily_budget_exceeded", "message": "over the daily budget"},
    ]
    made = notice("authorization.denied", {**SPEND, "reasons": reasons}, agent="agent_a")
    assert made.type == "budget.breach"
    assert made.data["breached"] == ["agent_daily_budget_exceeded"]
    assert (made.data["amount"], made.data["value_usd"]) == ("1500", "1500.00")
    assert made.summary.startswith("Budget breach: denied 1500 base:USDC ($1,500.00)")
    assert "over the daily budget" in made.summary
    other = {**SPEND, "reasons": [{"code": "recipient_not_allowed", "message": "no"}]}
    assert notice_of(event("authorization.denied", other)) is None
    assert is_budget_code("org_monthly_budget_count_exceeded")
    assert not is_budget_code("rate_limit_exceeded")
    assert not is_budget_code("agent_per_transaction_limit_exceeded")


def test_delay_and_approval_tiers_are_announced_with_the_payment_behind_them() -> None:
    """``authorization.created`` in ``delayed`` / ``pending_approval``; other states: nothing."""
    delayed = notice(
        "authorization.created", {**SPEND, "state": "delayed", "delay_s": 600}, payment="pay_9"
    )
    assert (delayed.type, delayed.data["delay_s"], delayed.data["payment"]) == (
        "payment.delayed",
        600,
        "pay_9",
    )
    assert "runs in 600 s" in delayed.summary and "payment pay_9" in delayed.summary
    asked = notice("authorization.created", {**SPEND, "state": "pending_approval"})
    assert asked.type == "approval.requested" and asked.data["payment"] is None
    assert "authorization auth_1" in asked.summary
    assert notice_of(event("authorization.created", {**SPEND, "state": "pending"})) is None


def test_approval_decisions_name_the_voter_and_the_verdict() -> None:
    approved = notice("authorization.approved", {"subject": "auth_1"}, actor="approver:alice")
    assert (approved.type, approved.data["decision"], approved.data["by"]) == (
        "approval.decided",
        "approved",
        "approver:alice",
    )
    rejected = notice("authorization.rejected", {"reason": "not in budget plan"})
    assert (rejected.data["decision"], rejected.data["reason"]) == (
        "rejected",
        "not in budget plan",
    )


def test_payments_notify_on_a_notify_tier_broadcast_and_on_failure_only() -> None:
    body = {
        "payment": "pay_1",
        "authorization": "auth_1",
        "agent": "agent_a",
        "wallet": "hot",
        "chain": "evm-local",
        "asset": "evm-local:DUSD",
        "amount": "250",
        "amount_base_units": "250000000",
        "value_usd": "250.00",
        "recipient": "0xabc",
        "tier": "notify",
        "tx_id": "0xtx",
        "kind": "transfer",
        "error": None,
    }
    sent = notice("payment.broadcast", body, subject="pay_1")
    assert sent.type == "payment.notify"
    assert (sent.data["payment"], sent.data["tx_id"], sent.data["kind"]) == (
        "pay_1",
        "0xtx",
        "transfer",
    )
    assert sent.summary == (
        "Payment sent: agent agent_a on wallet hot paid 250 evm-local:DUSD ($250.00) to 0xabc "
        "(payment pay_1, tx 0xtx)"
    )
    instant = {**body, "tier": "instant"}
    assert notice_of(event("payment.broadcast", instant, "pay_1")) is None
    assert notice_of(event("payment.confirmed", body, "pay_1")) is None
    failed = notice("payment.failed", {**body, "error": "chain_rejected: nonce"}, subject="pay_1")
    assert (failed.type, failed.data["error"]) == ("payment.failed", "chain_rejected: nonce")


def test_freezes_and_agent_status() -> None:
    agent = notice("freeze.set", {"reason": "leak"}, subject="agent:bot")
    assert (agent.type, agent.data["agent"], agent.data["reason"]) == (
        "agent.frozen",
        "bot",
        "leak",
    )
    assert agent.summary == "Agent bot frozen by admin: leak"
    for scope in ("wallet:w1", "department:ops", "org"):
        assert notice("freeze.set", {"reason": ""}, subject=scope).type == "scope.frozen"
    assert notice("agent.status", {"status": "frozen"}, subject="agent:bot").type == "agent.frozen"
    gone = notice("agent.status", {"status": "decommissioned"}, subject="agent:bot")
    assert (gone.type, gone.data["agent"]) == ("agent.decommissioned", "bot")
    assert notice_of(event("agent.status", {"status": "active"}, "agent:bot")) is None
    assert notice_of(event("freeze.lifted", {}, "agent:bot")) is None


def test_unauthorized_spends_pass_their_payload_through() -> None:
    made = notice(
        "spend.unauthorized",
        {"wallet": "w1", "amount": "99", "asset": "base:USDC", "tx_hash": "0xdead"},
        subject="wallet:w1",
        chain="base",
    )
    assert (made.type, made.data["tx_hash"], made.data["chain"]) == (
        "spend.unauthorized",
        "0xdead",
        "base",
    )
    assert made.summary == "Unauthorized spend: 99 base:USDC left wallet w1 (tx 0xdead)"


def test_contradicted_captures_are_announced() -> None:
    made = notice(
        "spend.mismatch",
        {"wallet": "w1", "differs": ["amount"], "tx_hash": "0xbeef"},
        subject="wallet:w1",
        chain="base",
    )
    assert (made.type, made.data["differs"]) == ("spend.mismatch", ["amount"])
    assert made.summary == "Capture contradicted by the chain on wallet w1 (tx 0xbeef)"


def test_every_source_kind_maps_into_the_documented_types() -> None:
    """Nothing maps to a type the docs and the filter validation do not know."""
    assert "spend.unauthorized" in SOURCE_KINDS and len(set(EVENT_TYPES)) == len(EVENT_TYPES)
    assert not {"authorization.captured", "webhook.created", "payment.queued"} & SOURCE_KINDS


def test_a_malformed_payload_never_raises() -> None:
    """Payloads are data from the log: odd shapes give a notice with gaps, not an error."""
    for kind in SOURCE_KINDS:
        notice_of(event(kind, {"request": "x", "reasons": "y", "approvals": 3, "state": 1}))


# -- bodies and signatures -------------------------------------------------------------------------
def test_the_json_body_and_the_slack_body() -> None:
    made = Notice("agent.frozen", {"agent": "bot"}, "Agent bot frozen by admin")
    body = json.loads(render(made, 42, AT, "json"))
    assert body == {
        "id": "evt_42",
        "type": "agent.frozen",
        "created_at": "2026-06-15T12:00:00Z",
        "data": {"agent": "bot"},
    }
    assert json.loads(render(made, 42, AT, "slack")) == {"text": "Agent bot frozen by admin"}
    assert event_id(42) == "evt_42"
    with pytest.raises(ValueError, match="unknown webhook format"):
        render(made, 42, AT, "xml")


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """A receiver computing the documented HMAC by hand gets the same digest."""
    body = b'{"id":"evt_1"}'
    header = signature("whsec_test", 1_781_524_800, body)
    expected = hmac.new(b"whsec_test", b"1781524800." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1781524800,v1={expected}"
    assert verify_signature("whsec_test", header, body)
    assert verify_signature("whsec_test", header, body, now=1_781_524_800 + 300)
    assert not verify_signature("whsec_test", header, body, now=1_781_524_800 + 301)
    assert not verify_signature("whsec_other", header, body)
    assert not verify_signature("whsec_test", header, body + b" ")
    assert not verify_signature("whsec_test", "v1=" + expected, body)
    assert not verify_signature("whsec_test", "t=abc,v1=" + expected, body)
    rotated = f"{header},v1={'0' * 64}"  # a second scheme value during a rotation is fine
    assert verify_signature("whsec_test", rotated, body)
    sent = headers("agent.frozen", "whd_1", header)
    assert sent["Treasurer-Event"] == "agent.frozen" and sent["Treasurer-Delivery"] == "whd_1"
    assert sent["Content-Type"] == "application/json"


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    schedule = Backoff(base_s=5.0, cap_s=60.0, max_attempts=6)
    assert [schedule.delay_s(n, 0.0) for n in range(1, 7)] == [2.5, 5.0, 10.0, 20.0, 30.0, 30.0]
    assert [schedule.delay_s(n, 0.999999) for n in (1, 5)] == pytest.approx([5.0, 60.0], rel=1e-5)
    assert Backoff().max_attempts == 12


def test_an_endpoint_wants_its_types_from_its_creation_on() -> None:
    endpoint = Endpoint("wh_1", "https://x", "s", "json", ("agent.frozen",), "", AT, "admin")
    assert endpoint.wants("agent.frozen", AT)
    assert not endpoint.wants("agent.frozen", AT - timedelta(microseconds=1))
    assert not endpoint.wants("budget.breach", AT)
    everything = Endpoint("wh_2", "https://x", "s", "json", (), "", AT, "admin")
    assert all(everything.wants(t, AT) for t in EVENT_TYPES)
    removed = Endpoint("wh_3", "https://x", "s", "json", (), "", AT, "admin", disabled_at=AT)
    assert not removed.wants("agent.frozen", AT)
    assert SendResult(204).ok and not SendResult(302).ok and not SendResult(None, "refused").ok


# -- what an admin may register --------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.com/",
        "https://",
        "x.com/hook",
        "https://x.com/a b",
        "https://x.com:99999/",
        "http://x\x00y/",
    ],
)
def test_urls_that_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_url(url)
    assert refused.value.field == "url"


def test_urls_that_are_accepted_and_how_they_are_shown() -> None:
    assert check_url(" https://example.com/hook?x=1 ") == "https://example.com/hook?x=1"
    assert check_url("http://127.0.0.1:8080/h") == "http://127.0.0.1:8080/h"
    assert redact_url("https://u:pw@example.com/a/b?token=t", "json") == (
        "https://u:***@example.com/a/b?***"
    )
    assert redact_url("https://hooks.slack.com/services/T0/B0/XYZ", "slack") == (
        "https://hooks.slack.com/services/***"
    )
    assert redact_url("https://example.com/hook", "slack") == "https://example.com/hook"


def test_event_filters_are_checked_and_deduplicated() -> None:
    assert check_events(["agent.frozen", "budget.breach", "agent.frozen"]) == (
        "agent.frozen",
        "budget.breach",
    )
    with pytest.raises(InvalidRequest) as refused:
        check_events(["budget.breached"])
    assert (refused.value.code, refused.value.field) == ("unknown_event_type", "events")
