"""Exact money: token amounts in base units, USD in integer micro-dollars.

Why integers: a float cannot hold 0.1 USDC exactly, and a 256-bit token amount does not fit a
float at all. Amounts enter as decimal *strings* in token units ("499.00"), are parsed once into
base units (``int``), and leave as strings again. USD values are ``int`` micro-dollars
(1 USD = 1_000_000), which is exact for every real price we quote and fits 64-bit columns.

Every malformed amount is refused with its own code, so a client can tell what it did wrong:
``amount_not_a_string`` (a JSON number/float), ``amount_negative``, ``amount_zero``,
``amount_too_many_decimals``, ``amount_exponent``, ``amount_not_a_number`` (NaN, inf, words),
``amount_too_large`` (beyond 2^256-1 base units) and ``amount_malformed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from treasurer.domain.errors import AmountError

MAX_UINT256: Final = 2**256 - 1
USD_MICROS_PER_DOLLAR: Final = 1_000_000
#: Largest USD value (in micros) a single spend or budget may have: one trillion dollars.
#: Keeps every sum of budget columns inside a signed 64-bit integer.
MAX_USD_MICROS: Final = 10**18
#: Prices are held as integer "atto-dollars" per whole token (USD x 10^18), exact for any
#: price quoted with up to 18 decimals.
PRICE_SCALE: Final = 10**18
MAX_DECIMALS: Final = 36

UsdMicros = int
"""USD as integer micro-dollars."""

BaseUnits = int
"""A token amount in the asset's smallest unit (wei, lamports, 10^-decimals of a token)."""

_PLAIN_DECIMAL = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")


def _classify_bad_amount(text: str, field: str) -> AmountError:
    lowered = text.strip().lower()
    if lowered.lstrip("+-") in {"nan", "snan", "inf", "infinity"}:
        return AmountError(
            f"{field}: {text!r} is not a number; send a decimal string like '12.50'",
            field=field,
            code="amount_not_a_number",
        )
    if "e" in lowered and re.fullmatch(r"[+-]?[0-9.]+e[+-]?[0-9]+", lowered):
        return AmountError(
            f"{field}: {text!r} uses an exponent; write the amount out in full, like '1500'",
            field=field,
            code="amount_exponent",
        )
    if lowered.startswith("-") and _PLAIN_DECIMAL.fullmatch(lowered[1:]):
        return AmountError(
            f"{field}: {text!r} is negative; amounts must be greater than zero",
            field=field,
            code="amount_negative",
        )
    return AmountError(
        f"{field}: {text!r} is not a decimal amount; send digits with an optional '.', "
        "like '12.50'",
        field=field,
        code="amount_malformed",
    )


def _split_decimal(value: object, field: str) -> tuple[str, str]:
    """Validate the textual form and return (integer digits, fraction digits)."""
    if isinstance(value, bool) or not isinstance(value, str):
        kind = "a float" if isinstance(value, float) else type(value).__name__
        return_error = AmountError(
            f'{field}: got {kind}; amounts must be JSON strings like "12.50" so no precision '
            "is lost",
            field=field,
            code="amount_not_a_string",
        )
        raise return_error
    if len(value) > 200:
        raise AmountError(
            f"{field}: amount text is {len(value)} characters long; at most 200 are accepted",
            field=field,
            code="amount_too_large",
        )
    match = _PLAIN_DECIMAL.fullmatch(value)
    if match is None:
        raise _classify_bad_amount(value, field)
    return match.group("int"), match.group("frac") or ""


def parse_amount(
    value: object, decimals: int, *, field: str = "amount", allow_zero: bool = False
) -> BaseUnits:
    """Parse a decimal string in token units into base units, exactly.

    ``parse_amount("1.5", 6) == 1_500_000``. Raises :class:`AmountError` with a specific code
    for every malformed, non-positive or out-of-range input. ``allow_zero`` admits ``"0"`` for
    the one amount that may be nothing: the native value sent along with a contract call.
    """
    int_part, frac_part = _split_decimal(value, field)
    significant_frac = frac_part.rstrip("0")
    if len(significant_frac) > decimals:
        raise AmountError(
            f"{field}: {value!r} has {len(significant_frac)} decimal places but the asset has "
            f"only {decimals}",
            field=field,
            code="amount_too_many_decimals",
        )
    base: int = int(int_part) * 10**decimals + (
        int(significant_frac.ljust(decimals, "0")) if decimals else 0
    )
    if base == 0 and not allow_zero:
        raise AmountError(
            f"{field}: {value!r} is zero; amounts must be greater than zero",
            field=field,
            code="amount_zero",
        )
    if base > MAX_UINT256:
        raise AmountError(
            f"{field}: {value!r} is beyond the largest on-chain amount (2^256-1 base units)",
            field=field,
            code="amount_too_large",
        )
    return base


def format_amount(base: BaseUnits, decimals: int) -> str:
    """Format base units as a token-unit decimal string with no trailing zeros ("1.5")."""
    sign = "-" if base < 0 else ""
    whole, frac = divmod(abs(base), 10**decimals)
    if decimals == 0 or frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


def parse_usd(value: object, *, field: str = "usd") -> UsdMicros:
    """Parse a USD decimal string ("1000.00") into micro-dollars; at most 6 decimals.

    Zero is allowed here (a limit of $0 is a meaningful "nothing may be spent").
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    int_part, frac_part = _split_decimal(value, field)
    significant_frac = frac_part.rstrip("0")
    if len(significant_frac) > 6:
        raise AmountError(
            f"{field}: {value!r} has more than 6 decimal places; USD is kept to the micro-dollar",
            field=field,
            code="amount_too_many_decimals",
        )
    micros = int(int_part) * USD_MICROS_PER_DOLLAR + int(significant_frac.ljust(6, "0") or "0")
    if micros > MAX_USD_MICROS:
        raise AmountError(
            f"{field}: {value!r} is above the largest USD amount Treasurer accepts "
            f"({format_usd(MAX_USD_MICROS)})",
            field=field,
            code="amount_too_large",
        )
    return micros


def format_usd(micros: UsdMicros) -> str:
    """Render micro-dollars for people: ``$1,498.00``; sub-cent values keep their digits."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), USD_MICROS_PER_DOLLAR)
    cents_text = str(frac).rjust(6, "0").rstrip("0").ljust(2, "0")
    return f"{sign}${whole:,}.{cents_text}"


def usd_decimal_text(micros: UsdMicros) -> str:
    """Render micro-dollars as a plain decimal string for machines: ``1498.00``."""
    return format_usd(micros).replace("$", "").replace(",", "")


def parse_price(value: object, *, field: str = "price_usd") -> int:
    """Parse a USD price per whole token into integer atto-dollars (x 10^18)."""
    int_part, frac_part = _split_decimal(value, field)
    significant_frac = frac_part.rstrip("0")
    if len(significant_frac) > 18:
        raise AmountError(
            f"{field}: {value!r} has more than 18 decimal places",
            field=field,
            code="amount_too_many_decimals",
        )
    price = int(int_part) * PRICE_SCALE + int(significant_frac.ljust(18, "0") or "0")
    if price == 0:
        raise AmountError(
            f"{field}: a price of zero would value every spend at $0; set the real price",
            field=field,
            code="amount_zero",
        )
    return price


def format_price(atto: int) -> str:
    """Render an atto-dollar price back as a decimal string."""
    return format_amount(atto, 18)


def value_usd_micros(amount: BaseUnits, decimals: int, price_atto: int) -> UsdMicros:
    """USD value of ``amount`` base units at ``price_atto`` per whole token, rounded *up*.

    Rounding up is the conservative choice for a spending control: a spend is never valued
    below what it is worth, so a budget can only deny early, never allow over.
    """
    numerator = amount * price_atto
    denominator = 10 ** (decimals + 12)
    rounded_up: int = -(-numerator // denominator)
    return rounded_up


@dataclass(frozen=True, slots=True)
class Asset:
    """A token (or native coin) on one chain.

    ``id`` is the stable handle used in policies and requests, conventionally
    ``"<chain>:<SYMBOL>"`` such as ``"base:USDC"``. ``address`` is ``None`` for the native coin.
    ``price_source`` is ``"fixed"`` (a peg, only for assets explicitly listed as stablecoins)
    or ``"manual"`` (an admin-set price that goes stale after ``max_price_age_s``).
    """

    id: str
    chain: str
    symbol: str
    decimals: int
    address: str | None = None
    price_source: str = "manual"
    fixed_price_atto: int | None = None
    max_price_age_s: int = 3600

    @property
    def is_native(self) -> bool:
        return self.address is None


def decimal_to_text(value: Decimal) -> str:
    """Plain (non-exponent) text of a finite Decimal; used when exporting config."""
    return format(value, "f")
