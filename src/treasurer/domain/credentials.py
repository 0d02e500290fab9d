"""Credentials as values: admin keys, agent sessions, approvers, and who a caller is.

Tokens are ``<prefix>_<id>_<secret>``: ``tsk_`` for admin keys, ``tss_`` for agent sessions.
The id makes lookup a primary-key read; only a SHA-256 hash of the secret is stored. SHA-256
(not a password hash) is the right tool here because the secret is 32 random bytes, not a
human-chosen password: there is nothing to brute-force, and a slow hash would only slow every
request. Comparison uses :func:`hmac.compare_digest` so timing says nothing about the hash.

Generating ids and secrets needs randomness, so it lives in the service layer; this module only
parses, hashes and validates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from treasurer.domain.errors import InvalidRequest

ADMIN_KEY_PREFIX = "tsk"
SESSION_PREFIX = "tss"
#: Longest token text looked at; anything longer is refused before hashing.
MAX_TOKEN_CHARS = 256
_ID = re.compile(r"[0-9a-f]{16}")
_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")


class Role(StrEnum):
    """Roles of admin keys (SPEC 8): what a person holding the key may do."""

    ADMIN = "admin"  # everything
    FINANCE = "finance"  # read, reports, freeze/unfreeze, approvals
    AUDITOR = "auditor"  # read-only


class ApproverKind(StrEnum):
    """How an approver signs votes: an Ed25519 key, or an EVM address (EIP-191)."""

    ED25519 = "ed25519"
    EVM = "evm"


@dataclass(frozen=True, slots=True)
class AdminKey:
    """An admin API key; ``department_id`` narrows everything it sees to one department."""

    id: str
    name: str
    role: Role
    department_id: str | None
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class AgentSession:
    """A session token of one agent, valid until it expires or is revoked."""

    id: str
    agent_id: str
    name: str
    secret_hash: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    replaced_by: str | None = None

    def valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class Approver:
    """A person (or a designated second agent) who may vote on payments that need approval."""

    id: str
    name: str
    kind: ApproverKind
    public_key: str
    groups: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


class PrincipalKind(StrEnum):
    KEY = "key"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request; nothing about it is cached across requests."""

    kind: PrincipalKind
    credential_id: str
    role: Role | None = None
    department_id: str | None = None
    agent_id: str | None = None

    @property
    def actor(self) -> str:
        """How audit events name this caller (``key:<id>`` or ``agent:<id>``)."""
        if self.kind is PrincipalKind.AGENT:
            return f"agent:{self.agent_id}"
        return f"key:{self.credential_id}"


@dataclass(frozen=True, slots=True)
class ParsedToken:
    prefix: str
    id: str
    secret: str


def parse_token(text: str) -> ParsedToken | None:
    """Split ``tsk_<id>_<secret>``; None when the text is not shaped like a token at all."""
    if len(text) > MAX_TOKEN_CHARS:
        return None
    prefix, _, rest = text.partition("_")
    ident, _, secret = rest.partition("_")
    if prefix not in (ADMIN_KEY_PREFIX, SESSION_PREFIX) or not _ID.fullmatch(ident):
        return None
    if len(secret) < 16:
        return None
    return ParsedToken(prefix, ident, secret)


def format_token(prefix: str, ident: str, secret: str) -> str:
    return f"{prefix}_{ident}_{secret}"


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a token secret (what the store keeps)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def normalize_public_key(kind: ApproverKind, text: str) -> str:
    """Canonical form of an approver key: lower-case hex (Ed25519) or ``0x`` address (EVM).

    An Ed25519 public key is 32 bytes, accepted as hex or base64. An EVM address is checked
    for shape only; EIP-55 checksums need Keccak, which the standard library lacks, so the
    address is stored lower-case and compared case-insensitively.
    """
    value = text.strip()
    if kind is ApproverKind.EVM:
        if not _EVM_ADDRESS.fullmatch(value):
            raise InvalidRequest(
                "public_key: an evm approver needs a 0x-prefixed 20-byte hex address",
                field="public_key",
            )
        return value.lower()
    if _HEX_KEY.fullmatch(value):
        return value.removeprefix("0x").lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidRequest(
            "public_key: an ed25519 approver needs a 32-byte public key as 64 hex digits or base64",
            field="public_key",
        )
    return raw.hex()
