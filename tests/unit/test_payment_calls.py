"""Raw contract calls as spends: calldata decoded into what governance decides, fail closed.

:func:`call_spend` is pure (config and inputs in, a value out), so every rule is shown here
without a chain or a database: which spend each kind of calldata becomes, what is refused and
with which code and field. The request validation of every payment kind
(:func:`resolve_payment`) and the idempotency fingerprint are checked the same way, over a
chain registry of stand-ins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treasurer.domain.calldata import (
    TRANSFER_SELECTOR,
    encode_approve,
    encode_transfer,
    encode_transfer_from,
)
from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import InvalidRequest
from treasurer.domain.facts import SpendKind
from treasurer.domain.money import MAX_UINT256, Asset
from treasurer.domain.org import Agent, Custody, Org, Wallet
from treasurer.service.chain_ports import ChainFamily, TransferKind
from treasurer.service.chain_registry import ChainRegistry
from treasurer.service.payment_calls import call_spend, token_at
from treasurer.service.payments_input import PaymentInput
from treasurer.service.payments_resolve import resolve_payment
from treasurer.service.payments_results import fingerprint

NET = "evm-local"
TOKEN = "0x" + "7a" * 20
TOKEN_MIXED = "0x" + "7A" * 20
CONTRACT = "0x" + "c0" * 20
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
OWNER = "0x" + "0e" * 20
USD = Asset(f"{NET}:USD", NET, "USD", 6, address=TOKEN, price_source="fixed")
ETH = Asset(f"{NET}:ETH", NET, "ETH", 18)
OTHER_CHAIN_TOKEN = Asset("base:USD", "base", "USD", 6, address=CONTRACT)


def config(*assets: Asset) -> OrgConfig:
    chosen = assets or (USD, ETH)
    wallets = {
        "hot": Wallet("hot", "agent_a", NET, "0x" + "11" * 20, custody=Custody.LOCAL),
        "sol": Wallet("sol", "agent_a", "solana-local", "So1ana1111", custody=Custody.LOCAL),
        "ext": Wallet("ext", "agent_a", NET, "0x" + "22" * 20, custody=Custody.EXTERNAL),
    }
    return OrgConfig(
        org=Org("acme", "Acme"),
        agents={"agent_a": Agent("agent_a", "Agent A", "ops")},
        wallets=wallets,
        assets={a.id: a for a in chosen},
    )


def hexed(data: bytes) -> str:
    return "0x" + data.hex()


# -- what each call becomes -------------------------------------------------------------------


def test_token_transfer_calldata_is_a_transfer_to_the_hidden_recipient() -> None:
    """transfer(alice, n) sent to the token: governance sees n of that token going to alice,
    not a payment to the token contract."""
    spend = call_spend(config(), NET, ChainFamily.EVM, TOKEN, hexed(encode_transfer(ALICE, 7)))
    assert (spend.kind, spend.asset, spend.amount, spend.counterparty) == (
        SpendKind.TRANSFER,
        USD,
        7,
        ALICE,
    )
    asked = spend.spend_input("agent_a", "hot")
    assert (asked.kind, asked.recipient, asked.asset, asked.amount) == (
        "transfer",
        ALICE,
        USD.id,
        "0.000007",
    )
    assert asked.spender is None and asked.contract is None


def test_transfer_from_is_a_transfer_to_its_recipient() -> None:
    """transferFrom(owner, bob, n) moves n to bob: that is the recipient policies check."""
    data = encode_transfer_from(OWNER, BOB, 2_500_000)
    spend = call_spend(config(), NET, ChainFamily.EVM, TOKEN, data)
    assert (spend.kind, spend.counterparty, spend.amount) == (SpendKind.TRANSFER, BOB, 2_500_000)
    assert spend.spend_input("agent_a", "hot").amount == "2.5"


@pytest.mark.parametrize("amount", [1_000_000, MAX_UINT256], ids=["bounded", "unlimited"])
def test_approve_calldata_is_an_approval_at_its_full_allowance(amount: int) -> None:
    """approve(spender, n) counts at the whole allowance; an unlimited one keeps its amount
    (2^256-1), which the token_approvals rule then denies."""
    spend = call_spend(config(), NET, ChainFamily.EVM, TOKEN, encode_approve(BOB, amount))
    asked = spend.spend_input("agent_a", "hot")
    assert (spend.kind, spend.amount, asked.kind, asked.spender) == (
        SpendKind.APPROVE,
        amount,
        "approve",
        BOB,
    )
    assert asked.recipient is None


@pytest.mark.parametrize(
    ("value", "base"),
    [(None, 0), ("0", 0), ("0.5", 5 * 10**17), ("0.000000000000000001", 1)],
    ids=["absent", "zero", "half", "one-wei"],
)
def test_unknown_selector_is_a_contract_call_valued_at_its_native_value(
    value: str | None, base: int
) -> None:
    """Any other call: contract = to, method = the selector, amount = the native value."""
    spend = call_spend(config(), NET, ChainFamily.EVM, CONTRACT, "0xDEADBEEF00", value)
    assert (spend.kind, spend.asset, spend.amount, spend.value) == (
        SpendKind.CONTRACT_CALL,
        ETH,
        base,
        base,
    )
    asked = spend.spend_input("agent_a", "hot")
    assert (asked.kind, asked.contract, asked.method, asked.recipient, asked.asset) == (
        "contract_call",
        CONTRACT,
        "0xdeadbeef",
        CONTRACT,
        ETH.id,
    )


def test_calldata_is_kept_byte_for_byte() -> None:
    """What is executed is exactly what was sent: upper-case hex, extra bytes and all."""
    spend = call_spend(config(), NET, ChainFamily.EVM, CONTRACT, "0xDEADBEEF0102")
    assert spend.data == bytes.fromhex("deadbeef0102")
    raw = encode_transfer(ALICE, 9)
    assert call_spend(config(), NET, ChainFamily.EVM, TOKEN, raw.hex().upper()).data == raw


def test_token_is_found_by_address_case_insensitively_on_its_own_chain() -> None:
    cfg = config(USD, ETH, OTHER_CHAIN_TOKEN)
    assert token_at(cfg, NET, TOKEN_MIXED) == USD
    assert token_at(cfg, NET, CONTRACT) is None  # registered, but on another chain
    data = encode_transfer(ALICE, 1)
    assert call_spend(cfg, NET, ChainFamily.EVM, TOKEN_MIXED, data).asset == USD


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "data", "value", "code", "field"),
    [
        (TOKEN, "0xa9059c", None, "calldata_malformed", "data"),
        (TOKEN, "0xzz", None, "calldata_malformed", "data"),
        (TOKEN, TRANSFER_SELECTOR + "00" * 63, None, "calldata_malformed", "data"),
        (CONTRACT, hexed(encode_transfer(ALICE, 5)), None, "unknown_asset", "to"),
        (TOKEN, hexed(encode_transfer(ALICE, 5)), "0.1", "call_value_with_token_call", "value"),
        (TOKEN, hexed(encode_approve(BOB, 0)), None, "amount_zero", "data"),
        (TOKEN, hexed(encode_transfer(ALICE, 0)), None, "amount_zero", "data"),
        ("0x1234", "0xdeadbeef", None, "address_invalid", "to"),
        (CONTRACT, "0xdeadbeef", "1e3", "amount_exponent", "value"),
        (CONTRACT, "0xdeadbeef", "-1", "amount_negative", "value"),
        (CONTRACT, "0xdeadbeef", 1.5, "amount_not_a_string", "value"),
    ],
    ids=[
        "short",
        "not-hex",
        "transfer-wrong-length",
        "unregistered-token",
        "value-and-token",
        "approve-zero",
        "transfer-zero",
        "bad-to",
        "value-exponent",
        "value-negative",
        "value-float",
    ],
)
def test_what_cannot_be_valued_exactly_is_refused(
    to: str, data: str, value: object, code: str, field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        call_spend(config(), NET, ChainFamily.EVM, to, data, value)
    assert (raised.value.code, raised.value.field) == (code, field)


def test_a_call_needs_the_native_coin_registered_to_be_valued() -> None:
    """Without the chain's native asset an opaque call has no asset to be valued in."""
    with pytest.raises(InvalidRequest) as raised:
        call_spend(config(USD), NET, ChainFamily.EVM, CONTRACT, "0xdeadbeef")
    assert (raised.value.code, raised.value.field) == ("unknown_asset", "value")
    token_only = call_spend(config(USD), NET, ChainFamily.EVM, TOKEN, encode_transfer(ALICE, 1))
    assert token_only.asset == USD  # a token call needs no native price


def test_calls_are_evm_only() -> None:
    with pytest.raises(InvalidRequest) as raised:
        call_spend(config(), "solana-local", ChainFamily.SOLANA, CONTRACT, "0xdeadbeef")
    assert (raised.value.code, raised.value.field) == ("call_not_supported", "kind")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=4, max_size=200))
def test_any_calldata_is_decoded_or_refused_never_guessed(data: bytes) -> None:
    """Arbitrary bytes either become a spend whose bytes are the input, or a clear refusal."""
    try:
        spend = call_spend(config(), NET, ChainFamily.EVM, TOKEN, data)
    except InvalidRequest as exc:
        assert exc.code in {"calldata_malformed", "amount_zero"}
        return
    assert spend.data == data
    assert spend.selector == "0x" + data[:4].hex()


# -- request validation -----------------------------------------------------------------------


@dataclass
class StubChain:
    """Enough of a Chain for resolution, which never talks to the network."""

    network: str
    family: ChainFamily


def registry() -> ChainRegistry:
    return ChainRegistry(
        {
            NET: StubChain(NET, ChainFamily.EVM),  # type: ignore[dict-item]
            "solana-local": StubChain("solana-local", ChainFamily.SOLANA),  # type: ignore[dict-item]
        }
    )


def transfer(**fields: object) -> PaymentInput:
    base: dict[str, object] = {"recipient": ALICE, "amount": "1.00", "asset": "USD"}
    return PaymentInput("agent_a", "hot", **{**base, **fields})  # type: ignore[arg-type]


def call(**fields: object) -> PaymentInput:
    base: dict[str, object] = {"kind": "call", "to": CONTRACT, "data": "0xdeadbeef"}
    return PaymentInput("agent_a", "hot", **{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (transfer(kind="swap"), "payment_kind_invalid", "kind"),
        (transfer(recipient=None), "field_required", "recipient"),
        (transfer(amount=""), "field_required", "amount"),
        (transfer(asset=None), "field_required", "asset"),
        (transfer(data="0xdeadbeef"), "field_not_allowed", "data"),
        (transfer(to=CONTRACT), "field_not_allowed", "to"),
        (transfer(value="1"), "field_not_allowed", "value"),
        (transfer(kind="approve", recipient=None), "field_required", "recipient"),
        (transfer(kind="approve", data="0x00"), "field_not_allowed", "data"),
        (transfer(kind="approve", asset="ETH"), "approve_needs_token", "asset"),
        (transfer(asset="DOGE"), "unknown_asset", "asset"),
        (call(to=None), "field_required", "to"),
        (call(data=None), "field_required", "data"),
        (call(amount="1"), "field_not_allowed", "amount"),
        (call(recipient=ALICE), "field_not_allowed", "recipient"),
        (call(asset="USD"), "field_not_allowed", "asset"),
        (call(data="0x12"), "calldata_malformed", "data"),
        (
            PaymentInput("agent_a", "sol", kind="call", to=CONTRACT, data="0xdeadbeef"),
            "call_not_supported",
            "kind",
        ),
        (
            PaymentInput("agent_a", "ext", recipient=ALICE, amount="1", asset="USD"),
            "wallet_not_custodial",
            "wallet",
        ),
    ],
    ids=[
        "unknown-kind",
        "transfer-no-recipient",
        "transfer-empty-amount",
        "transfer-no-asset",
        "transfer-with-data",
        "transfer-with-to",
        "transfer-with-value",
        "approve-no-spender",
        "approve-with-data",
        "approve-native",
        "unknown-asset",
        "call-no-to",
        "call-no-data",
        "call-with-amount",
        "call-with-recipient",
        "call-with-asset",
        "call-malformed",
        "call-on-solana",
        "external-wallet",
    ],
)
def test_each_kind_names_the_field_at_fault_and_the_fix(
    request_: PaymentInput, code: str, field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        resolve_payment(config(), registry(), request_)
    assert (raised.value.code, raised.value.field) == (code, field)
    assert field in raised.value.message or field == "wallet"


def test_every_kind_resolves_to_what_the_chain_executes_and_what_is_decided() -> None:
    """Transfer and approve are encoded by the adapter; a call carries the caller's bytes,
    while the decision sees the token movement they encode."""
    cfg, chains = config(), registry()
    plain = resolve_payment(cfg, chains, transfer())
    assert (plain.transfer.kind, plain.transfer.token, plain.transfer.amount) == (
        TransferKind.TRANSFER,
        TOKEN,
        1_000_000,
    )
    approve = resolve_payment(cfg, chains, transfer(kind="approve", recipient=BOB))
    assert approve.transfer.kind is TransferKind.APPROVE
    assert (approve.spend.kind, approve.spend.spender, approve.counterparty) == (
        "approve",
        BOB,
        BOB,
    )
    raw = encode_transfer(ALICE, 3_000_000)
    called = resolve_payment(cfg, chains, call(to=TOKEN, data=hexed(raw)))
    assert (called.transfer.kind, called.transfer.recipient, called.transfer.data) == (
        TransferKind.CALL,
        TOKEN,
        raw,
    )
    assert (called.transfer.amount, called.transfer.token) == (0, None)
    assert (called.asset, called.amount, called.counterparty) == (USD, 3_000_000, ALICE)
    assert (called.spend.kind, called.spend.recipient) == ("transfer", ALICE)


# -- idempotency fingerprint ------------------------------------------------------------------


def test_the_fingerprint_tells_every_part_of_a_call_apart() -> None:
    """A different kind, contract, calldata or value is a different request; the same call,
    with its hex in another case, is the same request."""
    cfg, chains = config(), registry()

    def hashed(request: PaymentInput) -> str:
        return resolve_payment(cfg, chains, request).fingerprint

    same = hashed(call(data="0xdeadbeef01"))
    assert hashed(call(data="0xDEADBEEF01")) == same
    variants = [
        call(data="0xdeadbeef02"),
        call(to="0x" + "c1" * 20, data="0xdeadbeef01"),
        call(data="0xdeadbeef01", value="0.1"),
    ]
    assert len({same, *(hashed(v) for v in variants)}) == 4
    as_transfer = hashed(transfer(recipient=BOB, amount="1"))
    as_approve = hashed(transfer(kind="approve", recipient=BOB, amount="1"))
    as_call = hashed(call(to=TOKEN, data=hexed(encode_transfer(BOB, 1_000_000))))
    assert len({as_transfer, as_approve, as_call}) == 3
    other_spender = hashed(transfer(kind="approve", recipient=ALICE, amount="1"))
    assert other_spender != as_approve


def test_a_transfer_hashes_as_it_did_before_payments_had_kinds() -> None:
    """A retry that spans the upgrade still replays instead of conflicting."""
    wallet = config().wallets["hot"]
    legacy = json.dumps(["agent_a", "hot", USD.id, "5", ALICE])
    assert (
        fingerprint("agent_a", wallet, USD, 5, ALICE) == hashlib.sha256(legacy.encode()).hexdigest()
    )
