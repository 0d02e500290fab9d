"""Exact money: parsing token amounts, USD and prices, formatting, and valuation."""

from __future__ import annotations

import pytest

from treasurer.domain.errors import AmountError, InvalidRequest
from treasurer.domain.money import (
    MAX_UINT256,
    MAX_USD_MICROS,
    PRICE_SCALE,
    format_amount,
    format_price,
    format_usd,
    parse_amount,
    parse_price,
    parse_usd,
    usd_decimal_text,
    value_usd_micros,
)


def _code_of(value: object, decimals: int = 6) -> str:
    with pytest.raises(AmountError) as caught:
        parse_amount(value, decimals)
    return caught.value.code


# ---------------------------------------------------------------- parse_amount: refusals


@pytest.mark.parametrize("value", [1.5, 0.1, 1, 10**6, True, False, None, b"1", ["1"]])
def test_parse_amount_refuses_non_strings(value: object) -> None:
    """A JSON number, bool, null or any non-string is amount_not_a_string."""
    assert _code_of(value) == "amount_not_a_string"


@pytest.mark.parametrize("value", ["-1", "-0.5", "-1000000", "-0"])
def test_parse_amount_refuses_negative(value: str) -> None:
    """A leading minus sign on a plain decimal is amount_negative."""
    assert _code_of(value) == "amount_negative"


@pytest.mark.parametrize("value", ["0", "0.0", "0.000", "000", "0.000000000000"])
def test_parse_amount_refuses_zero(value: str) -> None:
    """Zero in any spelling is amount_zero."""
    assert _code_of(value) == "amount_zero"


@pytest.mark.parametrize(
    ("value", "decimals"), [("1.0000001", 6), ("0.5", 0), ("1.123", 2), ("0." + "0" * 36 + "1", 36)]
)
def test_parse_amount_refuses_too_many_decimals(value: str, decimals: int) -> None:
    """More significant decimal places than the asset has is amount_too_many_decimals."""
    assert _code_of(value, decimals) == "amount_too_many_decimals"


@pytest.mark.parametrize("value", ["1e3", "1E-2", "1.5e6", "-1e3", "2E+5"])
def test_parse_amount_refuses_exponent(value: str) -> None:
    """Scientific notation is amount_exponent, never silently expanded."""
    assert _code_of(value) == "amount_exponent"


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-inf", "Infinity", "+Infinity", "sNaN"])
def test_parse_amount_refuses_not_a_number(value: str) -> None:
    """NaN and infinities are amount_not_a_number."""
    assert _code_of(value) == "amount_not_a_number"


def test_parse_amount_refuses_beyond_uint256() -> None:
    """2^256 base units (one past the largest on-chain amount) is amount_too_large."""
    assert _code_of(str(2**256), 0) == "amount_too_large"
    assert _code_of(format_amount(2**256, 18), 18) == "amount_too_large"


def test_parse_amount_accepts_exactly_uint256_max() -> None:
    """2^256-1 base units is the largest amount and still parses."""
    assert parse_amount(str(MAX_UINT256), 0) == MAX_UINT256
    assert parse_amount(format_amount(MAX_UINT256, 6), 6) == MAX_UINT256


def test_parse_amount_refuses_absurdly_long_text() -> None:
    """Text over 200 characters is refused before any arithmetic (amount_too_large)."""
    assert _code_of("9" * 201) == "amount_too_large"


@pytest.mark.parametrize(
    "value",
    ["", " ", " 1", "1 ", "1.", ".5", "1,000", "+1", "0x10", "1_000", "1.2.3", "abc", "١٢", "$5"],
)
def test_parse_amount_refuses_malformed(value: str) -> None:
    """Anything that is not digits with an optional '.digits' is amount_malformed."""
    assert _code_of(value) == "amount_malformed"


@pytest.mark.parametrize("value", ["1\n", "1.5\n"])
def test_parse_amount_refuses_trailing_newline(value: str) -> None:
    """A trailing newline is malformed too (a regex '$' must not let it through)."""
    assert _code_of(value) == "amount_malformed"


def test_amount_error_names_field_and_is_invalid_request() -> None:
    """The error carries the field name given by the caller and is an InvalidRequest."""
    with pytest.raises(AmountError) as caught:
        parse_amount("-5", 6, field="params.amount")
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.field == "params.amount"
    assert "params.amount" in caught.value.message


# ---------------------------------------------------------------- parse_amount: good forms


@pytest.mark.parametrize(
    ("value", "decimals", "base"),
    [
        ("1", 6, 1_000_000),
        ("1.5", 6, 1_500_000),
        ("1.500000000", 6, 1_500_000),
        ("0.000001", 6, 1),
        ("499.00", 6, 499_000_000),
        ("007", 0, 7),
        ("1.0", 0, 1),
        ("1", 18, 10**18),
        ("0.000000000000000001", 18, 1),
        ("123456789.123456789123456789", 27, 123456789_123456789123456789 * 10**9),
    ],
)
def test_parse_amount_good_forms(value: str, decimals: int, base: int) -> None:
    """Plain decimal strings parse exactly into base units; extra trailing zeros are fine."""
    assert parse_amount(value, decimals) == base


def test_parse_amount_is_exact_where_floats_are_not() -> None:
    """0.1 + 0.2 is exactly 0.3 in base units, unlike float arithmetic."""
    assert parse_amount("0.1", 18) + parse_amount("0.2", 18) == parse_amount("0.3", 18)


# ---------------------------------------------------------------- format_amount


@pytest.mark.parametrize(
    ("base", "decimals", "text"),
    [
        (1_500_000, 6, "1.5"),
        (1_000_000, 6, "1"),
        (1, 6, "0.000001"),
        (7, 0, "7"),
        (10**18 + 1, 18, "1.000000000000000001"),
        (-2_500_000, 6, "-2.5"),
    ],
)
def test_format_amount(base: int, decimals: int, text: str) -> None:
    """Base units render as token units with no trailing zeros."""
    assert format_amount(base, decimals) == text


# ---------------------------------------------------------------- USD


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("1000.00", 1_000_000_000),
        ("0", 0),
        ("0.000001", 1),
        ("1498", 1_498_000_000),
        (5, 5_000_000),
        ("12.5000000", 12_500_000),
        ("1000000000000", MAX_USD_MICROS),
    ],
)
def test_parse_usd_good(value: object, micros: int) -> None:
    """USD decimal strings (and JSON integers) become exact micro-dollars; $0 is allowed."""
    assert parse_usd(value) == micros


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (1.5, "amount_not_a_string"),
        (True, "amount_not_a_string"),
        (None, "amount_not_a_string"),
        ("1.0000001", "amount_too_many_decimals"),
        ("-1", "amount_negative"),
        (-1, "amount_negative"),
        ("1e3", "amount_exponent"),
        ("NaN", "amount_not_a_number"),
        ("1,000", "amount_malformed"),
        ("1000000000000.000001", "amount_too_large"),
    ],
)
def test_parse_usd_refusals(value: object, code: str) -> None:
    """Bad USD input is refused with the same codes as token amounts."""
    with pytest.raises(AmountError) as caught:
        parse_usd(value)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1_498_000_000, "$1,498.00"),
        (1_000_000_000, "$1,000.00"),
        (999_000_000, "$999.00"),
        (0, "$0.00"),
        (1_500_000, "$1.50"),
        (1, "$0.000001"),
        (1_234_567, "$1.234567"),
        (10_000, "$0.01"),
        (12_345_678_900_000, "$12,345,678.90"),
        (-2_000_000, "-$2.00"),
    ],
)
def test_format_usd(micros: int, text: str) -> None:
    """Micro-dollars render for people with thousands separators and cents; sub-cent kept."""
    assert format_usd(micros) == text


def test_usd_decimal_text_is_machine_friendly() -> None:
    """The machine form has no dollar sign or separators and parses back exactly."""
    assert usd_decimal_text(1_498_000_000) == "1498.00"
    assert parse_usd(usd_decimal_text(1_234_567)) == 1_234_567


# ---------------------------------------------------------------- prices and valuation


@pytest.mark.parametrize(
    ("value", "atto"),
    [
        ("1", PRICE_SCALE),
        ("3000.5", 3000 * PRICE_SCALE + PRICE_SCALE // 2),
        ("0.000000000000000001", 1),
        ("1.000000000000000000000", PRICE_SCALE),
    ],
)
def test_parse_price(value: str, atto: int) -> None:
    """Prices parse into integer atto-dollars per whole token, up to 18 decimals."""
    assert parse_price(value) == atto
    assert parse_price(format_price(atto)) == atto


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("0.0000000000000000001", "amount_too_many_decimals"),
        (1.0, "amount_not_a_string"),
        ("-1", "amount_negative"),
        ("0", "amount_zero"),
        ("0.000", "amount_zero"),
    ],
)
def test_parse_price_refusals(value: object, code: str) -> None:
    """Prices with too many decimals, floats, signs or zero (every spend $0) are refused."""
    with pytest.raises(AmountError) as caught:
        parse_price(value)
    assert caught.value.code == code


def test_value_usd_micros_exact_cases() -> None:
    """499 USDC at $1 is $499; 1 ETH at $3000 is $3,000."""
    assert value_usd_micros(499_000_000, 6, PRICE_SCALE) == 499_000_000
    assert value_usd_micros(10**18, 18, 3000 * PRICE_SCALE) == 3_000_000_000


def test_value_usd_micros_rounds_up() -> None:
    """Any fraction of a micro-dollar rounds up: one wei of ETH is worth $0.000001."""
    assert value_usd_micros(1, 18, 3000 * PRICE_SCALE) == 1
    # 1 unit of a 6-decimal token at $1.0000005 is 1.0000005 micro-dollars -> 2.
    assert value_usd_micros(1, 6, PRICE_SCALE + PRICE_SCALE // 2_000_000) == 2
    # Exact values are not bumped.
    assert value_usd_micros(3, 6, PRICE_SCALE) == 3


def test_value_usd_micros_of_huge_amounts_does_not_overflow() -> None:
    """2^256-1 base units value exactly as a (huge) Python int, no overflow or float."""
    value = value_usd_micros(MAX_UINT256, 6, PRICE_SCALE)
    assert value == MAX_UINT256
    assert value > MAX_USD_MICROS
