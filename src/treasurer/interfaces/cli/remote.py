"""Where a command runs (local database or server), with which key, and what to do on errors.

Every command takes ``--url`` (``TREASURER_URL``) and ``--key`` (``TREASURER_KEY``) or
``--key-file`` (``TREASURER_KEY_FILE``). With a URL, the org, check, report and price commands
talk to that server; without one they open the local database, as before. Commands that only
exist in the API (agents, sessions, freezes, ...) use the local server (``TREASURER_HOST`` /
``TREASURER_PORT``) when no URL is given. Without a key, the data directory's ``admin.key``
(written by ``treasurer init``) is used when it exists.

Errors print their code, message and a next step, and exit with the code of their kind
(:mod:`treasurer.interfaces.cli.output`): 5 for a refused credential, 6 for an unreachable
server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from treasurer.domain.errors import InvalidRequest, TreasurerError, Unauthenticated
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.wiring import Backend, Wiring

if TYPE_CHECKING:
    from treasurer.sdk import Client

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="TREASURER_URL",
        help="Treasurer server, e.g. http://127.0.0.1:8420 (default: the local database, "
        "or the local server for API-only commands).",
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="TREASURER_KEY",
        help="Admin key (tsk_…) or agent session (tss_…). Prefer TREASURER_KEY or --key-file: "
        "command lines are visible to other users.",
    ),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        envvar="TREASURER_KEY_FILE",
        help="A file holding the key (default: admin.key in the data directory).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@dataclass(frozen=True, slots=True)
class Target:
    """The connection options of one command invocation."""

    url: str | None = None
    key: str | None = None
    key_file: Path | None = None


def key_of(wiring: Wiring, target: Target) -> str:
    """The key: ``--key``, else ``--key-file``, else the data directory's admin key."""
    if target.key:
        return target.key.strip()
    path = target.key_file or wiring.default_key_file
    if path is None or (target.key_file is None and not path.exists()):
        raise Unauthenticated(
            "no key for the server: none in --key, TREASURER_KEY or --key-file, and no admin "
            f"key at {path or 'the data directory'}"
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InvalidRequest(
            f"--key-file: cannot read {path} ({exc.strerror})", field="key_file"
        ) from None
    if not text:
        raise InvalidRequest(f"--key-file: {path} is empty", field="key_file")
    return text


def connect(wiring: Wiring, target: Target) -> Client:
    """The remote client for ``target`` (the local server when no URL is given)."""
    if wiring.connect is None:
        raise TreasurerError("this installation has no remote client wired in")
    return wiring.connect(target.url or wiring.default_url, key_of(wiring, target))


def open_backend(wiring: Wiring, target: Target) -> Backend:
    """The server when a URL is given, else the local database."""
    if target.url is not None:
        return connect(wiring, target)
    from treasurer.interfaces.cli.embedded import EmbeddedBackend  # noqa: PLC0415 - see there

    return EmbeddedBackend(wiring.open_backend())


def hint(
    error: TreasurerError,
    wiring: Wiring,
    target: Target,
    extra: Mapping[str, str] | None = None,
) -> str | None:
    """What to do next, for the errors people hit most (``extra``: a command's own hints,
    which win over the general ones)."""
    if extra and error.code in extra:
        return extra[error.code]
    url = target.url or wiring.default_url
    key_file = wiring.default_key_file or Path(".treasurer/admin.key")
    hints = {
        "unauthenticated": f"check --key / TREASURER_KEY (or --key-file); the admin key is in "
        f"{key_file}",
        "forbidden": f"this key's role may not do that; use an admin key (see {key_file})",
        "rate_limited": "too many failed attempts from this address: wait a minute, then check "
        "the key",
        "server_unreachable": f"is the server running at {url}? start it with: treasurer serve "
        "(or pass --url / set TREASURER_URL)",
        "server_timeout": f"the server at {url} did not answer in time; retry, or check its log",
        "org_not_configured": "apply an org file first: treasurer apply -f org.yaml",
        "org_file_invalid": "fix the file at the path shown, then run apply again",
        "policy_invalid": "fix the field named above; see docs/policies.md for every type",
        "not_found": "list what exists with: treasurer export (or agents list, wallets list, "
        "policies list against a server)",
        "agent_decommissioned": "a decommissioned agent cannot get sessions; register a new agent",
        "session_not_active": "create a new session: treasurer sessions create <agent>",
        "not_initialized": "run: treasurer init   (add --demo for a demo organization)",
        "payments_not_configured": f"the server at {url} runs without chains and a vault; "
        "set TREASURER_CHAINS (e.g. evm-local,solana-local) and restart it",
        "chain_not_configured": "the server does not connect to that wallet's network; add it "
        "to TREASURER_CHAINS on the server",
        "chain_unavailable": "the chain's node did not answer; retry in a moment",
        "idempotency_key_reused": "that --idempotency-key was used for a different payment; "
        "use a new key (or leave it out to get one)",
    }
    return hints.get(error.code)


def run(
    wiring: Wiring,
    target: Target,
    action: Callable[[], int],
    hints: Mapping[str, str] | None = None,
) -> NoReturn:
    """Run a command body; a Treasurer error becomes a message, a hint and an exit code."""
    try:
        code = action()
    except TreasurerError as error:
        code = output.fail(error, hint(error, wiring, target, hints))
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # never a traceback: say what failed and exit 70
        code = output.fail(
            TreasurerError(f"unexpected {type(exc).__name__}: {exc}"),
            "this is a bug in Treasurer; please report it with the command you ran",
        )
    raise typer.Exit(code)


def run_remote(
    wiring: Wiring,
    target: Target,
    action: Callable[[Client], int],
    hints: Mapping[str, str] | None = None,
) -> NoReturn:
    """Run an API-only command with a client that is closed afterwards."""

    def with_client() -> int:
        client = connect(wiring, target)
        try:
            return action(client)
        finally:
            client.close()

    run(wiring, target, with_client, hints)
