"""Printing for people (rich tables) and for scripts (``--json``), and exit codes by error kind."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from treasurer.domain.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreUnavailable,
    TreasurerError,
    Unauthenticated,
)

console = Console()
errors = Console(stderr=True)

#: Exit codes scripts can rely on. 1 means "the answer was no" (a denied spend), not a failure.
EXIT_OK = 0
EXIT_DENIED = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_AUTH = 5
EXIT_UNAVAILABLE = 6
EXIT_INTERNAL = 70

_EXIT_BY_CLASS: list[tuple[type[TreasurerError], int]] = [
    (InvalidRequest, EXIT_INVALID),
    (NotFound, EXIT_NOT_FOUND),
    (Conflict, EXIT_CONFLICT),
    (Unauthenticated, EXIT_AUTH),
    (Forbidden, EXIT_AUTH),
    (RateLimited, EXIT_UNAVAILABLE),
    (StoreUnavailable, EXIT_UNAVAILABLE),
]


def exit_code_for(error: TreasurerError) -> int:
    for cls, code in _EXIT_BY_CLASS:
        if isinstance(error, cls):
            return code
    return EXIT_INTERNAL


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(view)


def fail(error: TreasurerError, hint: str | None = None) -> int:
    """Print an error with its code and what to do next; return the exit code."""
    errors.print(
        f"[bold red]error[/] {escape(f'[{error.code}]')} {escape(error.message)}",
        markup=True,
        highlight=False,
    )
    if hint:
        errors.print(f"[dim]→ {escape(hint)}[/]", markup=True, highlight=False)
    return exit_code_for(error)


def usd(text: str | None) -> str:
    """``"1498.5"`` as ``$1,498.50`` (sub-cent amounts keep their digits)."""
    if text is None:
        return "-"
    value = Decimal(text)
    cents = value.quantize(Decimal("0.01"))
    return f"${cents:,.2f}" if cents == value else f"${value:,f}"
