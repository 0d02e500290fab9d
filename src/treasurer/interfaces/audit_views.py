"""The live verification verdict between its domain form and its wire form.

``GET /v1/audit/verify`` answers a :class:`~treasurer.domain.audit_verify.VerifyReport` as
:class:`~treasurer.wire_audit.AuditVerificationOut`; ``treasurer audit verify --url`` turns
that answer back into a report, so a live verdict from a server prints exactly like one
computed here or offline from a file.
"""

from __future__ import annotations

from treasurer.domain.audit_verify import Finding, VerifyReport
from treasurer.wire_audit import AuditFindingOut, AuditVerificationOut


def verification_out(report: VerifyReport, unsealed: int) -> AuditVerificationOut:
    """The wire form of ``report``; ``unsealed``: events of transactions still open."""
    return AuditVerificationOut(
        ok=report.ok,
        events=report.events,
        first_seq=report.first_seq,
        last_seq=report.last_seq,
        head_hash=report.head_hash,
        from_genesis=report.from_genesis,
        anchor_seq=report.anchor_seq,
        checkpoints=report.checkpoints,
        signed_through=report.signed_through,
        unsigned_events=report.unsigned_events,
        unsealed_events=unsealed,
        key_ids=list(report.key_ids),
        first_broken=_finding_out(report.first_broken) if report.first_broken else None,
        checkpoint_problems=[_finding_out(f) for f in report.checkpoint_problems],
        checkpoint_problem_count=report.checkpoint_problem_count,
    )


def report_of(out: AuditVerificationOut) -> VerifyReport:
    """The report a server's verdict stands for (the inverse of :func:`verification_out`)."""
    return VerifyReport(
        events=out.events,
        first_seq=out.first_seq,
        last_seq=out.last_seq,
        head_hash=out.head_hash,
        from_genesis=out.from_genesis,
        checkpoints=out.checkpoints,
        signed_through=out.signed_through,
        first_broken=_finding(out.first_broken) if out.first_broken else None,
        checkpoint_problems=tuple(_finding(f) for f in out.checkpoint_problems),
        checkpoint_problem_count=out.checkpoint_problem_count,
        key_ids=tuple(out.key_ids),
        anchor_seq=out.anchor_seq,
    )


def _finding_out(finding: Finding) -> AuditFindingOut:
    return AuditFindingOut(
        problem=finding.problem, message=finding.message, seq=finding.seq, id=finding.id
    )


def _finding(out: AuditFindingOut) -> Finding:
    return Finding(out.problem, out.message, out.seq, out.id)
