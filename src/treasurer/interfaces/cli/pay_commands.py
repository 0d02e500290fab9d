"""``pay`` and ``payments``: custodial payments through a server, as an agent.

A payment is made by an agent from its own wallet, so ``pay`` needs the agent's session token
(``--token``/``--key`` or ``TREASURER_KEY``), never an admin key. Each run sends one
``Idempotency-Key`` (``--idempotency-key``, or a fresh one it prints): re-running the command
with that key after a timeout returns the first payment instead of paying twice.

Exit codes: 0 sent, queued or confirmed; 1 denied by policy (the answer was no); 4 failed
(the decision allowed it but it was not carried out: fee above ``--max-fee-usd``, refused by
the chain, reverted); otherwise the error's code (:mod:`~treasurer.interfaces.cli.output`).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.core_commands import show_decision
from treasurer.interfaces.cli.org_commands import emit_models, when
from treasurer.interfaces.cli.output import usd
from treasurer.interfaces.cli.remote import JsonOpt, KeyFileOpt, Target, UrlOpt, run_remote
from treasurer.interfaces.cli.wiring import Wiring
from treasurer.wire import PaymentPreviewOut

if TYPE_CHECKING:
    from treasurer.sdk import Client
    from treasurer.sdk_common import PaymentPreview, PaymentResult

AgentKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        "--key",
        envvar="TREASURER_KEY",
        help="The paying agent's session token (tss_…). Prefer TREASURER_KEY or --key-file: "
        "command lines are visible to other users.",
    ),
]
#: How long ``pay --wait`` polls for a final state, and how often.
WAIT_S = 120.0
POLL_S = 1.0
_HINTS = {
    "forbidden": "payments are made by an agent: pass its session token with --token or "
    "TREASURER_KEY (create one with: treasurer sessions create <agent>)",
}


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add ``pay`` and the ``payments`` group to ``cli``."""

    @cli.command()
    def pay(
        wallet: Annotated[str, typer.Option(help="The agent's wallet: id or chain:address.")],
        to: Annotated[
            str,
            typer.Option(help="Recipient (transfer), spender (approve) or contract (call)."),
        ],
        amount: Annotated[
            str | None, typer.Option(help="Token units, e.g. 10.00 (transfer, approve).")
        ] = None,
        asset: Annotated[
            str | None, typer.Option(help="Asset id or symbol, e.g. USDC (transfer, approve).")
        ] = None,
        kind: Annotated[str, typer.Option(help="transfer, approve or call.")] = "transfer",
        data: Annotated[str | None, typer.Option(help="Calldata in hex (call).")] = None,
        value: Annotated[
            str | None, typer.Option(help="Native coin sent with a call, e.g. 0.01.")
        ] = None,
        max_fee_usd: Annotated[
            str | None, typer.Option(help="Fail rather than pay a higher network fee.")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option(help="Decide, quote and simulate only; nothing is reserved.")
        ] = False,
        idempotency_key: Annotated[
            str | None, typer.Option(help="Reuse to retry a payment safely (default: new).")
        ] = None,
        wait: Annotated[
            bool, typer.Option(help=f"Wait (up to {WAIT_S:.0f} s) until the chain decides.")
        ] = False,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: AgentKeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Pay from a custodial wallet: decided, reserved, signed and sent by Treasurer."""
        call = kind == "call"
        key_used = None if dry_run else idempotency_key or f"cli-{uuid.uuid4().hex}"

        def action(client: Client) -> int:
            result = client.pay(
                wallet=wallet,
                kind=kind,
                recipient=None if call else to,
                to=to if call else None,
                amount=amount,
                asset=asset,
                data=data,
                value=value,
                max_fee_usd=max_fee_usd,
                idempotency_key=key_used,
                dry_run=dry_run,
            )
            if isinstance(result, PaymentPreviewOut):
                return _show_preview(result, as_json)
            return _show_payment(_wait(client, result) if wait else result, as_json)

        hints = dict(_HINTS)
        if key_used is not None:
            hints["server_unreachable"] = hints["server_timeout"] = (
                f"retry with --idempotency-key {key_used}: if the first try got through, "
                "you get that payment back instead of paying twice"
            )
        run_remote(wiring, Target(url, key, key_file), action, hints)

    payments = typer.Typer(help="Custodial payments.", no_args_is_help=True)
    cli.add_typer(payments, name="payments")

    @payments.command("show")
    def show(
        payment: Annotated[str, typer.Argument(help="Payment id (pay_…).")],
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: AgentKeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """One payment, its decision and where it stands on the chain."""

        def action(client: Client) -> int:
            found = client.payment(payment)
            _show_payment(found, as_json)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)

    @payments.command("cancel")
    def cancel(
        payment: Annotated[str, typer.Argument(help="Payment id (pay_…).")],
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: AgentKeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Cancel a queued payment (delay or approval tier) and release its reservation: by
        the paying agent's session, a finance key or an admin key."""

        def action(client: Client) -> int:
            _show_payment(client.cancel(payment), as_json)
            return output.EXIT_OK

        hints = {
            "payment_not_cancellable": "only a queued payment can be cancelled; one already "
            "claimed for execution or sent cannot be recalled",
        }
        run_remote(wiring, Target(url, key, key_file), action, hints)

    @payments.command("list")
    def list_payments(
        agent: Annotated[str | None, typer.Option(help="Only this agent's payments.")] = None,
        wallet: Annotated[str | None, typer.Option(help="Only from this wallet.")] = None,
        state: Annotated[
            str | None,
            typer.Option(help="created, queued, broadcast, confirmed, failed, denied or cancelled"),
        ] = None,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: AgentKeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Payments this key (or agent session) may see, newest first."""

        def action(client: Client) -> int:
            found = client.payments(agent=agent, wallet=wallet, state=state)
            if as_json:
                emit_models(found)
                return output.EXIT_OK
            columns = ["id", "state", "tier", "agent", "wallet", "amount", "asset", "created"]
            rows = [
                [p.id, p.state, p.tier, p.agent, p.wallet, _amount(p), p.asset, when(p.created_at)]
                for p in found
            ]
            output.table("Payments", columns, rows)
            return output.EXIT_OK

        run_remote(wiring, Target(url, key, key_file), action)


def _wait(client: Client, payment: PaymentResult) -> PaymentResult:
    """Poll until the payment is final or no longer on its way to the chain."""
    deadline = time.monotonic() + WAIT_S
    while payment.state == "broadcast" and time.monotonic() < deadline:
        payment = client.payment(payment.id)
        if payment.state == "broadcast":
            time.sleep(POLL_S)
    return payment


def _amount(payment: PaymentResult) -> str:
    return payment.amount if payment.amount is not None else f"{payment.amount_base_units} units"


def _show_payment(payment: PaymentResult, as_json: bool) -> int:
    """Print a payment; the exit code says how it went (see the module docstring)."""
    code = {"denied": output.EXIT_DENIED, "failed": output.EXIT_CONFLICT}.get(
        payment.state, output.EXIT_OK
    )
    if as_json:
        emit_models(payment)
        return code
    colour = {"denied": "red", "failed": "red", "confirmed": "green"}.get(payment.state, "yellow")
    replayed = " (replayed: the first payment with this key)" if payment.replayed else ""
    output.console.print(
        f"[{colour}]{payment.state.upper()}[/] {payment.id} · tier {payment.tier or '-'} · "
        f"{_amount(payment)} {payment.asset} → {payment.recipient} on {payment.chain}{replayed}",
        highlight=False,
    )
    for reason in payment.reasons if payment.state == "denied" else []:
        output.console.print(f"  {reason.code}: {reason.message}", highlight=False)
    details = [
        ("transaction", payment.tx_id),
        ("fee quoted", _fee(payment.fee_quote, payment.fee_quote_usd)),
        ("fee paid", _fee(payment.fee_paid, payment.fee_paid_usd)),
        ("error", payment.error),
        ("authorization", payment.authorization),
        ("idempotency key", payment.idempotency_key),
    ]
    for label, text in details:
        if text:
            output.console.print(f"  {label}: {text}", highlight=False)
    if payment.state == "queued":
        waits = "approval (treasurer approve ID)" if payment.tier == "approval" else "its delay"
        output.console.print(
            f"  waiting for {waits}; the reservation is held (cancel: treasurer payments "
            "cancel ID)",
            highlight=False,
        )
    return code


def _fee(native: str | None, in_usd: str | None) -> str | None:
    if native is None:
        return None
    return f"{native} native base units ({usd(in_usd) if in_usd is not None else 'USD unknown'})"


def _show_preview(preview: PaymentPreview, as_json: bool) -> int:
    """A dry run: 0 when it would go through, 1 when denied, 4 when the chain would refuse."""
    if preview.decision.allowed and not preview.simulation.ok:
        code = output.EXIT_CONFLICT
    else:
        code = output.EXIT_OK if preview.decision.allowed else output.EXIT_DENIED
    if as_json:
        emit_models(preview)
        return code
    output.console.print("Dry run: nothing was reserved or sent.", highlight=False)
    show_decision(preview.decision, as_json=False)
    fee = preview.fee
    quoted = (
        "none (the transaction would revert)" if fee is None else _fee(fee.max_fee, fee.max_fee_usd)
    )
    output.console.print(f"Fee at most: {quoted}", highlight=False)
    simulated = "ok" if preview.simulation.ok else f"fails: {preview.simulation.error}"
    output.console.print(f"Simulation: {simulated}", highlight=False)
    return code
