"""Versioned schema migrations, applied in order by :mod:`treasurer.adapters.sql.migrate`.

Each module ``vNNNN_*.py`` has ``REVISION`` and ``upgrade(op)`` written with alembic
operations, so one migration serves SQLite and PostgreSQL. Never edit a released migration;
add the next one.
"""

import pkgutil


def latest_revision() -> int:
    """The newest revision shipped, read from module names (``v0003_…`` → 3) without
    importing them, so an up-to-date database is checked without loading alembic."""
    return max(
        (int(m.name[1:5]) for m in pkgutil.iter_modules(__path__) if m.name[:1] == "v"),
        default=0,
    )
