"""Readers for the raw, YAML-loaded org file: each checks one shape and names the fix.

The org file is written by finance people, so every error says three things: which file, where
in it (``agents[0].budgets[1].limit_usd``, which is also the error's ``field``) and what to
write instead. These helpers do the shape checks (mappings, lists, text, ids, durations) so the
parser above them reads as a description of the format. YAML itself is loaded by the caller:
the service layer never imports a parser.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from treasurer.domain.errors import OrgFileInvalid

#: Ids of departments, agents and wallets: slugs without ':' so that ``agent:<id>`` scopes and
#: ``<chain>:<address>`` wallet references stay unambiguous.
SLUG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
SLUG_RULE = "use 1-64 letters, digits, '_', '-' or '.', like procurement_bot"
#: Nested structures deeper than this are refused (a YAML alias loop would be infinite).
MAX_DEPTH = 32
#: Upper bound on the length of any list in the file ("put a limit on everything").
MAX_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class Reader:
    """The file being read: makes errors that name it, and remembers where each id was
    defined so a duplicate can point at the first one."""

    source: str
    places: dict[str, str] = field(default_factory=dict)

    def error(self, path: str, message: str) -> OrgFileInvalid:
        """``org.yaml: agents[0].id: <message>``, with ``field`` set to the path."""
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        return OrgFileInvalid(where + message, field=path or None)

    def claim(self, kind: str, key: str, path: str, *, what: str = "") -> None:
        """Record that ``kind`` ``key`` is defined at ``path``; refuse a second definition."""
        first = self.places.setdefault(f"{kind}:{key}", path)
        if first != path:
            what = what or f"{kind} id {key!r}"
            message = f"duplicate {what}, first defined at {first}; rename or remove one"
            raise self.error(path, message)


def key_path(path: str, key: str) -> str:
    """``agents[0]`` + ``id`` -> ``agents[0].id`` (a top-level key has no leading dot)."""
    return f"{path}.{key}" if path else key


def kind_of(value: object) -> str:
    """How a YAML value reads to a person: "a float (800.0)", "a list", "nothing"."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a true/false value ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({value!r})"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__


def suggest(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'budgets'?)"`` when a close match exists, else ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def mapping(
    reader: Reader,
    value: object,
    path: str,
    *,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, object]:
    """A mapping with only ``allowed`` keys and every ``required`` key present."""
    if not isinstance(value, dict):
        keys = ", ".join(allowed)
        raise reader.error(path, f"expected a mapping with keys ({keys}), got {kind_of(value)}")
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str) or key not in allowed:
            hint = suggest(str(key), allowed)
            raise reader.error(
                key_path(path, str(key)),
                f"unknown key {key!r}{hint}; allowed keys here: {', '.join(allowed)}",
            )
        out[key] = item
    for key in required:
        if out.get(key) is None:
            where = "to this entry" if path else "to the file"
            raise reader.error(key_path(path, key), f"missing; add `{key}:` {where}")
    return out


def items(reader: Reader, value: object, path: str) -> list[object]:
    """A list (an absent or empty YAML value counts as an empty list)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise reader.error(path, f"expected a list, got {kind_of(value)}")
    if len(value) > MAX_ITEMS:
        raise reader.error(path, f"has {len(value)} entries; at most {MAX_ITEMS} are accepted")
    return list(value)


def text(reader: Reader, value: object, path: str) -> str:
    """Non-empty text. Numbers are refused, not converted: YAML reads an unquoted ``0x12..``
    address as an integer, and silently turning it back into text would change it."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise reader.error(
            path,
            f"expected text, got {kind_of(value)}; put it in quotes (YAML reads an unquoted "
            "0x... address as a number)",
        )
    if value is None:
        raise reader.error(path, "is empty; write a value")
    if not isinstance(value, str):
        raise reader.error(path, f"expected text, got {kind_of(value)}; put it in quotes")
    if not value.strip():
        raise reader.error(path, "is empty; write a value")
    return value


def ident(
    reader: Reader, value: object, path: str, *, pattern: re.Pattern[str] = SLUG, rule: str = ""
) -> str:
    """An id matching ``pattern``."""
    result = text(reader, value, path)
    if not pattern.fullmatch(result):
        raise reader.error(path, f"{result!r} is not a valid id; {rule or SLUG_RULE}")
    return result


def integer(reader: Reader, value: object, path: str, *, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` (true/false are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise reader.error(path, f"expected a whole number, got {kind_of(value)}")
    if not low <= value <= high:
        raise reader.error(path, f"{value} is out of range; use {low}..{high}")
    return value


def boolean(reader: Reader, value: object, path: str) -> bool:
    """true or false; "yes" in quotes is text, not a flag, and is refused."""
    if not isinstance(value, bool):
        raise reader.error(path, f"expected true or false, got {kind_of(value)}")
    return value


def text_list(
    reader: Reader, value: object, path: str, *, allowed: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """Distinct texts, each one of ``allowed`` when given."""
    out: list[str] = []
    for index, item in enumerate(items(reader, value, path)):
        where = f"{path}[{index}]"
        word = text(reader, item, where)
        if allowed is not None and word not in allowed:
            hint = suggest(word, allowed)
            raise reader.error(
                where, f"{word!r} is not allowed{hint}; use any of: {', '.join(allowed)}"
            )
        if word in out:
            raise reader.error(where, f"{word!r} is listed twice; remove one")
        out.append(word)
    return tuple(out)


_DURATION = re.compile(r"([0-9]{1,9})([a-z])")


def duration(
    reader: Reader, value: object, path: str, *, units: Mapping[str, int], low: int, high: int
) -> int:
    """A duration like ``15m`` or ``7y`` in the smallest of ``units`` (seconds or days)."""
    example = ", ".join(f"1{unit}" for unit in units)
    word = text(reader, value, path) if isinstance(value, str) else None
    match = _DURATION.fullmatch(word or "")
    if match is None or match.group(2) not in units:
        raise reader.error(
            path, f"expected a duration with a unit ({example}), got {kind_of(value)}"
        )
    amount = int(match.group(1)) * units[match.group(2)]
    if not low <= amount <= high:
        raise reader.error(path, f"{word} is out of range; allowed is {low}..{high} ({example})")
    return amount


def _money_hint(value: float) -> str:
    if not math.isfinite(value):
        return '"800.00"'
    exact = Decimal(repr(value))
    try:
        cents = exact.quantize(Decimal("0.01"))
    except InvalidOperation:  # too many digits to show in cents: just show it written out
        return f'"{format(exact, "f")}"'
    return f'"{cents if cents == exact else format(exact, "f")}"'


def reject_floats(reader: Reader, value: object, path: str = "", depth: int = 0) -> None:
    """Refuse every float in the file before anything else reads it.

    A float has already lost precision by the time YAML hands it over (``0.1`` is not one tenth),
    so money and amounts must be quoted strings; other numbers are whole. Keys ending in ``usd``
    get the money wording with the quoted form to copy.
    """
    if depth > MAX_DEPTH:
        raise reader.error(path, f"is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, float):
        if path.endswith("usd"):
            raise reader.error(
                path,
                f"got a float ({value!r}); write money as a quoted string like "
                f"{_money_hint(value)}",
            )
        raise reader.error(
            path,
            f"got a float ({value!r}); write a whole number, or a quoted decimal string like "
            f"{_money_hint(value)}",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            reject_floats(reader, item, key_path(path, str(key)), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_floats(reader, item, f"{path}[{index}]", depth + 1)
