"""The organization model: org, nested departments, agents and their wallets.

Ids are stable human slugs chosen by the org file (``procurement_bot``, ``ops``), so an org file,
a policy and a log line all speak the same names. A wallet's handle is ``<chain>:<address>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AgentStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    DECOMMISSIONED = "decommissioned"


class WalletStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    RETIRED = "retired"


class Custody(StrEnum):
    """``local``: Treasurer holds the key and signs. ``external``: another vendor does."""

    LOCAL = "local"
    EXTERNAL = "external"


VENDORS = frozenset(
    {"treasurer", "metamask", "coinbase-cdp", "privy", "bitgo", "fireblocks", "other"}
)


class ScopeKind(StrEnum):
    """Where a policy or freeze attaches. Ordered narrowest first for lock ordering."""

    WALLET = "wallet"
    AGENT = "agent"
    DEPARTMENT = "department"
    ORG = "org"


#: Lock order of budget rows: narrow scopes first, the hottest row (org) last.
SCOPE_LOCK_RANK = {
    ScopeKind.WALLET: 0,
    ScopeKind.AGENT: 1,
    ScopeKind.DEPARTMENT: 2,
    ScopeKind.ORG: 3,
}


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, _, ident = text.partition(":")
        return cls(ScopeKind(kind), ident)


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Department:
    id: str
    name: str
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    name: str
    department_id: str | None
    status: AgentStatus = AgentStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Wallet:
    id: str
    agent_id: str
    chain: str
    address: str
    custody: Custody = Custody.EXTERNAL
    vendor: str = "other"
    status: WalletStatus = WalletStatus.ACTIVE

    @property
    def handle(self) -> str:
        """``base:0xabc…`` — how a wallet is named to people."""
        return wallet_handle(self.chain, self.address)


def wallet_handle(chain: str, address: str) -> str:
    """Short human name of a wallet: ``base:0x111111…``."""
    short = address if len(address) <= 16 else f"{address[:10]}…{address[-4:]}"
    return f"{chain}:{short}"


def department_chain(departments: dict[str, Department], leaf: str | None) -> list[str]:
    """Ids from ``leaf`` up to the top department (leaf first); stops on a cycle."""
    chain: list[str] = []
    current = leaf
    while current is not None and current in departments and current not in chain:
        chain.append(current)
        current = departments[current].parent_id
    return chain
