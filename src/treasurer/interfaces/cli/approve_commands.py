"""``approve``: vote on a payment (``pay_…``) or an authorization waiting for approval.

Three ways, all through a server (``--url``/``TREASURER_URL``, the local one by default):

- ``treasurer approve ID`` (or ``--reject``): the vote of the key itself, a finance or admin
  key (``--key``/``TREASURER_KEY``, default the data directory's ``admin.key``), or of a
  second agent's session;
- ``treasurer approve ID --approver alice --sign-key alice.key``: the vote of a registered
  approver, signed here, on this machine: the command asks the server for a challenge, signs
  the message of the vote with the key file, and sends the signature. The key never leaves
  the machine; the bearer key only relays the vote (the signature says who voted);
- ``treasurer approve ID --show``: where the votes stand; no vote.

Key files (``--sign-key``): an Ed25519 private key as PEM (PKCS#8) or as the 32-byte seed in
hex or base64; an EVM private key as ``0x`` + 64 hex digits (signed with EIP-191
``personal_sign``). ``--key-kind`` settles a bare 64-hex-digit file, which reads as Ed25519
unless told ``evm``.

Exit codes: 0 the vote was recorded (or ``--show``); otherwise the error's code (a refused
vote is 4 for ``nonce_used``/``approval_closed``, 5 for ``self_approval``/not eligible, 2 for
a bad signature).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.org_commands import emit_models, when
from treasurer.interfaces.cli.remote import JsonOpt, KeyFileOpt, KeyOpt, Target, UrlOpt, run_remote
from treasurer.interfaces.cli.wiring import Wiring
from treasurer.wire import ApprovalStatusOut

if TYPE_CHECKING:
    from treasurer.sdk import Client

_HINTS = {
    "self_approval": "the agent that asked for a spend never approves it; use another agent's "
    "session, a finance key, or an approver's signature (--approver, --sign-key)",
    "approver_not_eligible": "this voter is not one the approval policy asks for; see who with: "
    "treasurer approve ID --show",
    "approval_closed": "the spend no longer waits for approval (approved, rejected, expired or "
    "cancelled); see: treasurer approve ID --show",
    "signature_invalid": "the signature does not match the approver's registered key: check "
    "--sign-key and --key-kind",
}


def register(cli: typer.Typer, wiring: Wiring) -> None:
    """Add ``approve`` to ``cli``."""

    @cli.command()
    def approve(
        subject: Annotated[str, typer.Argument(help="Payment (pay_…) or authorization id.")],
        reject: Annotated[bool, typer.Option("--reject", help="Vote to reject.")] = False,
        approver: Annotated[
            str | None, typer.Option(help="Vote as this registered approver (with --sign-key).")
        ] = None,
        sign_key: Annotated[
            Path | None, typer.Option(help="The approver's private key file; signs locally.")
        ] = None,
        key_kind: Annotated[
            str, typer.Option(help="auto, ed25519 or evm: how to read --sign-key.")
        ] = "auto",
        show: Annotated[bool, typer.Option("--show", help="Only show the votes.")] = False,
        as_json: JsonOpt = False,
        url: UrlOpt = None,
        key: KeyOpt = None,
        key_file: KeyFileOpt = None,
    ) -> None:
        """Approve (or reject) a spend waiting for approval, or show where its votes stand."""
        vote = "reject" if reject else "approve"

        def action(client: Client) -> int:
            if show:
                return _show(client.approvals(subject), as_json)
            if (approver is None) != (sign_key is None):
                raise InvalidRequest(
                    "--approver and --sign-key go together: the approver's vote is signed with "
                    "its key; leave both out to vote as the key you connect with",
                    field="sign_key" if sign_key is None else "approver",
                )
            if approver is not None and sign_key is not None:
                signer = load_signer(sign_key, key_kind)
                status = client.vote_signed(subject, approver=approver, sign=signer, vote=vote)
            else:
                status = client.vote(subject, vote)
            return _show(status, as_json)

        run_remote(wiring, Target(url, key, key_file), action, _HINTS)


def _show(status: ApprovalStatusOut, as_json: bool) -> int:
    if as_json:
        emit_models(status)
        return output.EXIT_OK
    colour = {"approved": "green", "rejected": "red"}.get(status.verdict, "yellow")
    if status.voted is not None:
        output.console.print(
            f"Recorded: {status.voted.voter} votes {status.voted.vote}.", highlight=False
        )
    output.console.print(
        f"[{colour}]{status.verdict.upper()}[/] {status.subject} · authorization "
        f"{status.authorization} is {status.state} · expires {when(status.expires_at)}",
        highlight=False,
    )
    for step in status.progress:
        output.console.print(
            f"  {step.requirement}: {step.approvals} approved, {step.rejections} rejected, "
            f"{step.required} needed",
            highlight=False,
        )
    for ballot in status.ballots:
        output.console.print(f"  {when(ballot.at)} {ballot.voter}: {ballot.vote}", highlight=False)
    return output.EXIT_OK


def load_signer(path: Path, kind: str = "auto") -> Callable[[str], str]:
    """A function signing a vote message with the private key in ``path`` (see the module
    docstring for the formats): Ed25519 over the UTF-8 bytes, or EIP-191 ``personal_sign``."""
    if kind not in ("auto", "ed25519", "evm"):
        raise InvalidRequest("--key-kind: use auto, ed25519 or evm", field="key_kind")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"--sign-key: cannot read {path} ({exc})", field="sign_key") from None
    if kind == "evm" or (kind == "auto" and text.lower().startswith("0x")):
        return _evm_signer(text, path)
    return _ed25519_signer(text, path)


def _bad_key(path: Path, what: str) -> InvalidRequest:
    return InvalidRequest(f"--sign-key: {path} is not {what}", field="sign_key")


def _evm_signer(text: str, path: Path) -> Callable[[str], str]:
    from eth_account import Account  # noqa: PLC0415 - slow to import; only EVM keys need it
    from eth_account.messages import encode_defunct  # noqa: PLC0415

    try:
        account = Account.from_key(text)
    except (ValueError, TypeError, binascii.Error):
        raise _bad_key(path, "an EVM private key (0x + 64 hex digits)") from None

    def sign(message: str) -> str:
        signed = account.sign_message(encode_defunct(text=message))
        return "0x" + bytes(signed.signature).hex()

    return sign


def _ed25519_signer(text: str, path: Path) -> Callable[[str], str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_private_key,
    )

    what = "an Ed25519 private key (PEM, or the 32-byte seed in hex or base64)"
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise _bad_key(path, what) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise _bad_key(path, what)
        private = key
    else:
        seed = _seed(text)
        if seed is None:
            raise _bad_key(path, what)
        private = Ed25519PrivateKey.from_private_bytes(seed)

    def sign(message: str) -> str:
        return private.sign(message.encode("utf-8")).hex()

    return sign


def _seed(text: str) -> bytes | None:
    """A 32-byte seed from hex or base64 text."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw if len(raw) == 32 else None
