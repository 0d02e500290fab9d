"""Properties of exact money: round trips, stability and conservative valuation."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from treasurer.domain.money import (
    format_amount,
    format_price,
    format_usd,
    parse_amount,
    parse_price,
    parse_usd,
    usd_decimal_text,
    value_usd_micros,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds strategies.py
from strategies import (
    base_amounts_st,
    decimal_strings,
    decimals_st,
    prices_atto_st,
    usd_micros_st,
)

PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(base=base_amounts_st, decimals=decimals_st)
def test_format_then_parse_round_trips(base: int, decimals: int) -> None:
    """For every positive base amount and every decimals, parse(format(x)) == x."""
    assert parse_amount(format_amount(base, decimals), decimals) == base


@PROPERTY
@given(data=st.data(), decimals=decimals_st)
def test_parse_format_parse_is_stable(data: st.DataObject, decimals: int) -> None:
    """A parsed string formats to a canonical one that parses to the same base units."""
    text = data.draw(decimal_strings(decimals))
    base = parse_amount(text, decimals)
    canonical = format_amount(base, decimals)
    assert parse_amount(canonical, decimals) == base
    assert format_amount(parse_amount(canonical, decimals), decimals) == canonical
    assert not canonical.endswith(".") and ("." not in canonical or not canonical.endswith("0"))


@PROPERTY
@given(data=st.data(), decimals=decimals_st)
def test_parse_amount_equals_exact_rational_value(data: st.DataObject, decimals: int) -> None:
    """Parsing is exact: base units == the decimal's rational value x 10^decimals."""
    text = data.draw(decimal_strings(decimals))
    assert Fraction(parse_amount(text, decimals)) == Fraction(text) * 10**decimals


@PROPERTY
@given(micros=usd_micros_st)
def test_usd_round_trips(micros: int) -> None:
    """Micro-dollars survive format_usd / usd_decimal_text and parse_usd unchanged."""
    assert parse_usd(usd_decimal_text(micros)) == micros
    assert parse_usd(format_usd(micros).removeprefix("$").replace(",", "")) == micros


@PROPERTY
@given(atto=st.integers(min_value=1, max_value=10**40))
def test_price_round_trips(atto: int) -> None:
    """Every positive atto-dollar price survives format_price then parse_price unchanged."""
    assert parse_price(format_price(atto)) == atto


@PROPERTY
@given(
    a=base_amounts_st,
    b=base_amounts_st,
    decimals=decimals_st,
    price=prices_atto_st,
)
def test_value_is_monotonic_in_amount(a: int, b: int, decimals: int, price: int) -> None:
    """A larger amount is never valued below a smaller one at the same price."""
    low, high = sorted((a, b))
    assert value_usd_micros(low, decimals, price) <= value_usd_micros(high, decimals, price)


@PROPERTY
@given(amount=base_amounts_st, decimals=decimals_st, price=prices_atto_st)
def test_value_never_below_exact_and_at_most_one_micro_above(
    amount: int, decimals: int, price: int
) -> None:
    """Valuation rounds up: never below the exact USD value, less than one micro above it."""
    exact_micros = Fraction(amount, 10**decimals) * Fraction(price, 10**18) * 10**6
    value = value_usd_micros(amount, decimals, price)
    assert value >= exact_micros
    assert value - 1 < exact_micros


@PROPERTY
@given(amount=base_amounts_st, decimals=decimals_st, p1=prices_atto_st, p2=prices_atto_st)
def test_value_is_monotonic_in_price(amount: int, decimals: int, p1: int, p2: int) -> None:
    """A higher price never values the same amount lower."""
    low, high = sorted((p1, p2))
    assert value_usd_micros(amount, decimals, low) <= value_usd_micros(amount, decimals, high)
