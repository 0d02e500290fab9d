"""Versioned schema migrations, applied in order by :mod:`treasurer.adapters.sql.migrate`.

Each module ``vNNNN_*.py`` has ``REVISION`` and ``upgrade(op)`` written with alembic
operations, so one migration serves SQLite and PostgreSQL. Never edit a released migration;
add the next one.
"""
