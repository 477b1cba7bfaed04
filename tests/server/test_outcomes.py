"""The outcome store on a real SQLite file: recording, lookup, purging."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from session_proxy_server.outcomes import Outcome, OutcomeStore


def test_recorded_outcomes_are_found_then_purged_after_the_window(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    store = OutcomeStore(engine, window_seconds=60)
    try:
        raw = engine.raw_connection()
        try:
            store.record_on(raw.dbapi_connection, "worker-1", "k" * 20, Outcome(200, b'{"a":1}'))
            raw.commit()
        finally:
            raw.close()
        with sa.orm.Session(engine) as session, session.begin():
            store.record_in_session(session, "worker-1", "s" * 20, Outcome(200, b'{"b":2}'))

        found = store.find("worker-1", "k" * 20)
        assert found is not None and (found.status, found.body) == (200, b'{"a":1}')
        assert store.find("worker-2", "k" * 20) is None  # keys are per subject
        assert store.purge() == 0  # nothing old yet

        with engine.begin() as conn:  # age one row past the window
            conn.execute(store.table.update().where(store.table.c.idem_key == "k" * 20)
                         .values(created=time.time() - 120))
        assert store.find("worker-1", "k" * 20) is None  # outside the window
        assert store.purge() == 1
        with engine.connect() as conn:
            keys = conn.execute(sa.select(store.table.c.idem_key)).scalars().all()
        assert keys == ["s" * 20]
    finally:
        store.stop()
        engine.dispose()


def test_remembered_outcomes_expire_with_the_window(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    store = OutcomeStore(engine, window_seconds=60)
    try:
        store.remember("worker-1", "m" * 20, Outcome(422, b"{}"))
        assert store.recall("worker-1", "m" * 20).status == 422
        store.window_seconds = -1  # everything remembered from now on is already old
        store.remember("worker-1", "n" * 20, Outcome(200, b"{}"))
        assert store.recall("worker-1", "n" * 20) is None
    finally:
        store.stop()
        engine.dispose()
