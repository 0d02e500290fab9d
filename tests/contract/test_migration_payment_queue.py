"""Migration 8 (the payment queue) from a database at revision 7, on every store.

A payment row written under revision 7 must survive the table rebuild SQLite needs (its
CHECK constraint cannot be altered in place), keep its unique idempotency key and indexes,
read as a transfer, and be able to move to ``cancelled``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from treasurer.adapters.sql import migrate as migrate_module
from treasurer.adapters.sql.migrate import _engine_url, migrate
from treasurer.adapters.sql.payment_store import SqlPaymentStore
from treasurer.adapters.sql.store import SqlStore
from treasurer.domain.payment import PaymentState

_ROW = {
    "id": "pay_old",
    "authorization_id": "auth_old",
    "agent_id": "agent_a",
    "wallet_id": "hot",
    "chain": "evm-local",
    "asset_id": "evm-local:DUSD",
    "recipient": "0x5555555555555555555555555555555555555555",
    "amount": "123456789012345678901234567890",
    "state": "queued",
    "tier": "delay",
    "idempotency_key": "k1",
    "request_hash": "h",
    "created_us": 1,
    "updated_us": 1,
}


def _insert(conn: sa.Connection, **changes: Any) -> None:
    row = {**_ROW, **changes}
    columns = ", ".join(row)
    conn.execute(
        sa.text(f"INSERT INTO payments ({columns}) VALUES ({', '.join(':' + c for c in row)})"),
        row,
    )


def test_upgrade_from_revision_7_keeps_rows_and_constraints(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = migrate_module._revisions()
    monkeypatch.setattr(
        migrate_module, "_revisions", lambda: [m for m in every if int(m.REVISION) <= 7]
    )
    assert migrate(database_url) == 7
    engine = sa.create_engine(_engine_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            _insert(conn)
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                _insert(conn, id="pay_new", state="cancelled")  # not a state yet
        monkeypatch.setattr(migrate_module, "_revisions", lambda: every)
        assert migrate(database_url) >= 8
        with engine.begin() as conn:
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                _insert(conn, id="pay_dup")  # same agent, same idempotency key
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                _insert(conn, id="pay_bad", idempotency_key="k2", state="lost")
            names = {i["name"] for i in sa.inspect(conn).get_indexes("payments")}
        assert {"payments_state_created", "payments_authorization", "payments_claimed"} <= names
    finally:
        engine.dispose()
    store = SqlStore(database_url)
    try:
        payments = SqlPaymentStore(store.db)
        old = payments.get("pay_old")
        assert old is not None
        assert (old.kind, old.to, old.data, old.value) == ("transfer", None, None, None)
        assert old.amount == 123456789012345678901234567890
        assert payments.update(replace(old, state=PaymentState.CANCELLED), PaymentState.QUEUED)
        reread = payments.get("pay_old")
        assert reread is not None and reread.state is PaymentState.CANCELLED
    finally:
        store.close()
