"""The value sections of an org file: the org's timezone, ``settings`` and ``assets``.

These read plain values (durations, action lists, prices) rather than the org tree, so they
live apart from the parser of departments, agents and policies. Durations are written for
people (``7y``, ``15m``, ``1h``) and held in the units :class:`OrgSettings` and
:class:`Asset` use (days, seconds). Prices are exact: a fixed peg is parsed with
:func:`parse_price` and is only allowed on an asset marked ``stablecoin: true``, so nobody pins
ETH to a number by accident.
"""

from __future__ import annotations

import re
import zoneinfo

from treasurer.domain.config import OrgSettings
from treasurer.domain.errors import AmountError
from treasurer.domain.money import Asset, parse_price
from treasurer.service.orgfile_read import (
    Reader,
    boolean,
    duration,
    ident,
    integer,
    mapping,
    suggest,
    text,
    text_list,
)

DECOMMISSION_ACTIONS = ("revoke_sessions", "freeze_wallets", "cancel_pending")
BREACH_ACTIONS = ("block", "alert_finance", "freeze_agent")
DAY_UNITS = {"d": 1, "y": 365}
SECOND_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DEFAULT_PRICE_AGE_S = 3600
MAX_RETENTION_DAYS = 100 * 365
MAX_AUTHORIZATION_TTL_S = 7 * 86_400
MAX_PRICE_AGE_S = 30 * 86_400

_SETTINGS_KEYS = (
    "on_decommission",
    "on_breach",
    "finance_contacts",
    "audit_retention",
    "audit_retention_days",
    "authorization_ttl",
)
_ASSET_KEYS = ("id", "chain", "symbol", "decimals", "address", "price", "stablecoin")
_ASSET_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CHAIN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_SYMBOL = re.compile(r"[A-Za-z0-9_.$-]{1,32}")


def parse_timezone(reader: Reader, value: object, path: str) -> str:
    """An IANA zone name; checked now because calendar budget windows depend on it."""
    name = text(reader, value, path)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = suggest(name, zoneinfo.available_timezones())
        raise reader.error(
            path,
            f"unknown timezone {name!r}{hint}; use an IANA name like America/New_York or UTC",
        ) from None
    return name


def parse_settings(reader: Reader, raw: object) -> OrgSettings:
    """The ``settings`` part; every key is optional and falls back to :class:`OrgSettings`."""
    defaults = OrgSettings()
    if raw is None:
        return defaults
    block = mapping(reader, raw, "settings", allowed=_SETTINGS_KEYS)
    ttl_s = defaults.authorization_ttl_s
    if "authorization_ttl" in block:
        path, value = "settings.authorization_ttl", block["authorization_ttl"]
        high = MAX_AUTHORIZATION_TTL_S
        ttl_s = duration(reader, value, path, units=SECOND_UNITS, low=1, high=high)
    return OrgSettings(
        on_decommission=_actions(
            reader, block, "on_decommission", DECOMMISSION_ACTIONS, defaults.on_decommission
        ),
        on_breach=_actions(reader, block, "on_breach", BREACH_ACTIONS, defaults.on_breach),
        finance_contacts=text_list(
            reader, block.get("finance_contacts"), "settings.finance_contacts"
        ),
        audit_retention_days=_retention_days(reader, block, defaults.audit_retention_days),
        authorization_ttl_s=ttl_s,
    )


def _retention_days(reader: Reader, block: dict[str, object], default: int) -> int:
    """``audit_retention: 7y`` for people, ``audit_retention_days: 2555`` for machines."""
    if "audit_retention" in block and "audit_retention_days" in block:
        raise reader.error(
            "settings.audit_retention_days",
            "set either audit_retention (like 7y) or audit_retention_days, not both",
        )
    if "audit_retention" in block:
        path, value = "settings.audit_retention", block["audit_retention"]
        return duration(reader, value, path, units=DAY_UNITS, low=1, high=MAX_RETENTION_DAYS)
    if "audit_retention_days" in block:
        path, value = "settings.audit_retention_days", block["audit_retention_days"]
        return integer(reader, value, path, low=1, high=MAX_RETENTION_DAYS)
    return default


def _actions(
    reader: Reader,
    block: dict[str, object],
    key: str,
    allowed: tuple[str, ...],
    default: tuple[str, ...],
) -> tuple[str, ...]:
    """A subset of ``allowed``, kept in the canonical order so reordering is not a change."""
    if key not in block:
        return default
    chosen = text_list(reader, block[key], f"settings.{key}", allowed=allowed)
    return tuple(action for action in allowed if action in chosen)


def parse_asset(reader: Reader, raw: object, path: str) -> Asset:
    """One ``assets[i]`` entry; a fixed price needs ``stablecoin: true``."""
    block = mapping(
        reader, raw, path, allowed=_ASSET_KEYS, required=("id", "chain", "symbol", "decimals")
    )
    rule = "use <chain>:<SYMBOL>, like base:USDC"
    asset_id = ident(reader, block["id"], f"{path}.id", pattern=_ASSET_ID, rule=rule)
    chain = parse_chain(reader, block["chain"], f"{path}.chain")
    symbol_rule = "use 1-32 letters, digits, '.', '_', '$' or '-', like USDC"
    symbol = ident(reader, block["symbol"], f"{path}.symbol", pattern=_SYMBOL, rule=symbol_rule)
    decimals = integer(reader, block["decimals"], f"{path}.decimals", low=0, high=36)
    address = None
    if block.get("address") is not None:
        address = text(reader, block["address"], f"{path}.address")
    stablecoin = False
    if block.get("stablecoin") is not None:
        stablecoin = boolean(reader, block["stablecoin"], f"{path}.stablecoin")
    source, fixed, max_age = _price(reader, block.get("price"), f"{path}.price", stablecoin)
    reader.claim("asset", asset_id, f"{path}.id")
    what = f"symbol {symbol!r} on {chain}"
    reader.claim("asset symbol", f"{chain}:{symbol.lower()}", f"{path}.symbol", what=what)
    token = address or "native coin"
    what = f"token {token} on {chain}"
    reader.claim("asset address", f"{chain}:{token.lower()}", f"{path}.address", what=what)
    return Asset(asset_id, chain, symbol, decimals, address, source, fixed, max_age)


def parse_chain(reader: Reader, value: object, path: str) -> str:
    """A chain name as policies and requests spell it (``base``, ``ethereum``)."""
    rule = "use lower-case letters, digits, '_' or '-', like base or ethereum"
    return ident(reader, value, path, pattern=_CHAIN, rule=rule)


def _price(reader: Reader, raw: object, path: str, stablecoin: bool) -> tuple[str, int | None, int]:
    """(source, fixed price in atto-dollars, max age in seconds) of an asset's ``price``."""
    if raw is None:
        return "manual", None, DEFAULT_PRICE_AGE_S
    block = mapping(reader, raw, path, allowed=("source", "usd", "max_age"), required=("source",))
    source = text(reader, block["source"], f"{path}.source")
    max_age = _max_age(reader, block.get("max_age"), f"{path}.max_age")
    if source == "manual":
        if "usd" in block:
            raise reader.error(
                f"{path}.usd", "a manual price is set by an admin later; remove usd or use fixed"
            )
        return "manual", None, max_age
    if source != "fixed":
        raise reader.error(
            f"{path}.source", f"{source!r} is not a price source; use fixed or manual"
        )
    if not stablecoin:
        raise reader.error(
            f"{path}.source",
            "a fixed price is only allowed for a stablecoin; add `stablecoin: true` to this "
            "asset if it is pegged, or use `source: manual`",
        )
    return "fixed", _fixed_price(reader, block.get("usd"), f"{path}.usd"), max_age


def _max_age(reader: Reader, value: object, path: str) -> int:
    """How long a price stays usable; after that spends in the asset are denied."""
    if value is None:
        return DEFAULT_PRICE_AGE_S
    return duration(reader, value, path, units=SECOND_UNITS, low=1, high=MAX_PRICE_AGE_S)


def _fixed_price(reader: Reader, value: object, path: str) -> int:
    if value is None:
        raise reader.error(path, 'missing; a fixed price needs `usd:`, like "1.00"')
    try:
        atto = parse_price(value, field=path)
    except AmountError as exc:
        raise reader.error(path, exc.message.removeprefix(f"{path}: ")) from None
    if atto == 0:
        raise reader.error(path, "a price of zero would make every spend free; write the peg")
    return atto
