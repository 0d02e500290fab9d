"""Shared fixtures: a movable clock and a store per backend (SQLite file, PostgreSQL schema).

PostgreSQL tests run when ``TREASURER_TEST_POSTGRES_URL`` is set (CI sets it; they must not
skip there). Each PostgreSQL test gets a fresh schema, selected through the connection's
``search_path``, and drops it afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from tests.fakes import FakeClock

PG_URL = os.environ.get("TREASURER_TEST_POSTGRES_URL")


@pytest.fixture
def clock() -> FakeClock:
    """A clock at 2026-06-15 12:00 UTC."""
    return FakeClock()


def pg_schema_url(base: str, schema: str) -> str:
    """``base`` with ``search_path`` pinned to ``schema`` (works for psycopg and SQLAlchemy)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL on a fresh schema; skipped locally when no server is configured."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TREASURER_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("TREASURER_TEST_POSTGRES_URL is not set")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(PG_URL, schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'treasurer.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store contract test runs once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'treasurer.db'}"
    else:
        yield request.getfixturevalue("pg_url")
