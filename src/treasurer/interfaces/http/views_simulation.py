"""Backtest and shadow-report results as wire models (server and local CLI alike)."""

from __future__ import annotations

from datetime import datetime

from treasurer.domain.money import MAX_DECIMALS, format_amount, usd_decimal_text
from treasurer.service.backtest import (
    BacktestChange,
    BacktestReport,
    Outcome,
    ShadowPolicyReport,
)
from treasurer.wire import (
    BacktestChangeOut,
    BacktestOut,
    OutcomeOut,
    ShadowPolicyOut,
    ShadowReportOut,
)


def backtest_out(report: BacktestReport) -> BacktestOut:
    return BacktestOut(
        since=report.since,
        until=report.until,
        replayed=report.replayed,
        changed=report.changed,
        counts=dict(sorted(report.counts.items())),
        usd={k: usd_decimal_text(v) for k, v in sorted(report.usd_micros.items())},
        changes=[_change_out(c) for c in report.changes],
        truncated=len(report.changes) < report.changed,
    )


def _change_out(change: BacktestChange) -> BacktestChangeOut:
    decimals = MAX_DECIMALS if change.decimals is None else change.decimals
    return BacktestChangeOut(
        authorization=change.authorization_id,
        at=change.at,
        agent=change.agent_id,
        wallet=change.wallet_id,
        asset=change.asset_id,
        amount=format_amount(change.amount, decimals),
        value_usd=usd_decimal_text(change.value_usd_micros),
        change=change.change,
        before=_outcome_out(change.before),
        after=_outcome_out(change.after),
    )


def _outcome_out(outcome: Outcome) -> OutcomeOut:
    return OutcomeOut(allowed=outcome.allowed, tier=outcome.tier, codes=list(outcome.codes))


def shadow_report_out(
    since: datetime, until: datetime, policies: list[ShadowPolicyReport]
) -> ShadowReportOut:
    return ShadowReportOut(
        since=since,
        until=until,
        policies=[
            ShadowPolicyOut(
                policy=p.policy_id,
                policy_type=p.policy_type,
                evaluated=p.evaluated,
                would_deny=p.would_deny,
                would_deny_usd=usd_decimal_text(p.would_deny_usd_micros),
                would_deny_allowed=p.would_deny_allowed,
                would_deny_allowed_usd=usd_decimal_text(p.would_deny_allowed_usd_micros),
                codes=dict(sorted(p.codes.items())),
            )
            for p in policies
        ],
    )
