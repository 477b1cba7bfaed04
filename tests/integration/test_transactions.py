"""Transactions behave the same direct and through the proxy.

Rollback, savepoints, isolation between two clients and row locks, on every
backend and in both modes; plus exact round-trip counts in proxy mode.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy import ProxySession, background
from tests.conftest import wait_for
from tests.models import Base, Item


@pytest.fixture
def schema(direct_engine: sa.Engine) -> None:
    Base.metadata.drop_all(direct_engine)
    Base.metadata.create_all(direct_engine)
    with direct_engine.begin() as conn:
        conn.execute(sa.insert(Item), [{"id": i, "value": i * 10} for i in range(1, 4)])


@pytest.fixture
def Session(engine: sa.Engine, schema: None) -> sessionmaker:
    return sessionmaker(class_=ProxySession, bind=engine)


def _values(session) -> dict[int, int]:
    return dict(session.execute(sa.select(Item.id, Item.value).order_by(Item.id)).all())


def test_rollback_discards(Session: sessionmaker) -> None:
    with Session() as session:
        session.add(Item(id=99, value=1))
        session.get(Item, 1).value = -1
        session.flush()
        assert _values(session)[99] == 1
        session.rollback()
        assert _values(session) == {1: 10, 2: 20, 3: 30}


def test_savepoints(Session: sessionmaker) -> None:
    with Session() as session:
        session.add(Item(id=10, value=100))
        with session.begin_nested():
            session.add(Item(id=11, value=110))
        savepoint = session.begin_nested()
        session.add(Item(id=12, value=120))
        session.flush()
        savepoint.rollback()
        inner = session.begin_nested()
        session.get(Item, 1).value = 11
        inner.commit()
        session.commit()
    with Session() as session:
        values = _values(session)
    assert values == {1: 11, 2: 20, 3: 30, 10: 100, 11: 110}


def test_savepoint_rollback_after_integrity_error(Session: sessionmaker) -> None:
    with Session() as session:
        session.add(Item(id=20, value=1))
        session.flush()
        with pytest.raises(sa_exc.IntegrityError):
            with session.begin_nested():
                session.add(Item(id=1, value=0))  # duplicate key
        session.commit()
    with Session() as session:
        assert _values(session)[20] == 1


def test_uncommitted_work_is_invisible_to_another_client(
    Session: sessionmaker, make_engine
) -> None:
    other = sessionmaker(bind=make_engine())
    with Session() as writer:
        writer.get(Item, 2).value = 222
        writer.flush()
        with other() as reader:
            assert _values(reader)[2] == 20
        writer.commit()
    with other() as reader:
        assert _values(reader)[2] == 222


def _lock_waiters(direct_engine: sa.Engine, backend: str) -> int:
    query = {
        "postgresql": "SELECT count(*) FROM pg_locks WHERE NOT granted",
        "mysql": "SELECT count(*) FROM information_schema.innodb_trx "
        "WHERE trx_state = 'LOCK WAIT'",
    }[backend]
    with direct_engine.connect() as conn:
        return conn.execute(sa.text(query)).scalar_one()


def test_for_update_blocks_second_client_until_commit(
    Session: sessionmaker, make_engine, backend: str, direct_engine: sa.Engine
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no row locks (SELECT ... FOR UPDATE is ignored)")
    other = sessionmaker(bind=make_engine())
    seen: list[int] = []
    errors: list[BaseException] = []

    def second_client() -> None:
        try:
            with other() as session:
                row = session.scalars(
                    sa.select(Item).where(Item.id == 3).with_for_update()
                ).one()
                seen.append(row.value)
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    with Session() as holder:
        locked = holder.scalars(sa.select(Item).where(Item.id == 3).with_for_update()).one()
        # NOWAIT from another client fails while the lock is held ...
        with other() as probe, pytest.raises(sa_exc.OperationalError):
            probe.scalars(
                sa.select(Item).where(Item.id == 3).with_for_update(nowait=True)
            ).one()
        # ... and a plain FOR UPDATE waits for it.
        thread = threading.Thread(target=second_client)
        thread.start()
        # InnoDB refreshes INNODB_TRX only when it was not read for 100 ms.
        wait_for(lambda: errors or _lock_waiters(direct_engine, backend) >= 1, interval=0.25)
        assert not errors, errors
        assert seen == []
        locked.value = 333
        holder.commit()
    thread.join(30)
    assert not errors
    assert seen == [333]  # it read the row only after the holder's commit


def test_round_trips_get_by_pk_then_commit(Session: sessionmaker, mode: str) -> None:
    if mode != "proxy":
        pytest.skip("round trips are counted by the proxy transport")
    session = Session()
    engine = session.get_bind()
    with engine.connect():
        pass  # the dialect's first-connect queries are not part of the scenario
    assert background.drain(10)  # nor is the end of their transaction
    before = session_proxy.stats(engine).snapshot()
    assert session.get(Item, 1).value == 10
    session.commit()
    session.close()
    assert background.drain(10)
    spent = session_proxy.stats(engine).snapshot() - before
    # one request: begin + SELECT; the COMMIT of a transaction that only
    # read goes without waiting
    assert (spent.round_trips, spent.statements) == (1, 1)
    assert (spent.background_round_trips, spent.background_failures) == (1, 0)

    before = session_proxy.stats(engine).snapshot()
    with Session() as session:
        session.add(Item(id=50, value=5))
        session.commit()
    spent = session_proxy.stats(engine).snapshot() - before
    # begin + INSERT + COMMIT in one request; closing an ended transaction is free
    assert (spent.round_trips, spent.statements) == (1, 1)

    before = session_proxy.stats(engine).snapshot()
    with Session() as session:
        session.get(Item, 2)
    assert background.drain(10)
    spent = session_proxy.stats(engine).snapshot() - before
    # begin + SELECT; the ROLLBACK of closing the session goes without waiting
    assert (spent.round_trips, spent.statements) == (1, 1)
    assert spent.background_round_trips == 1
    assert session.proxy_stats.round_trips == session_proxy.stats(engine).round_trips


def test_results_after_a_rollback_to_savepoint(proxy_engine: sa.Engine, backend: str) -> None:
    """ROLLBACK TO SAVEPOINT closes the server-side cursors declared since.

    The next query must not try to reuse (and CLOSE) one of them: SQLAlchemy's
    own savepoint tests failed so ("cursor "_sp_0" does not exist").
    """
    with proxy_engine.connect() as conn:
        outer = conn.execute(sa.text("SELECT 1 + 1")).scalar()
        savepoint = conn.begin_nested()
        inside = conn.execute(sa.text("SELECT 1 + 1")).scalar()
        savepoint.rollback()
        again = [conn.execute(sa.text("SELECT 3")).scalar() for _ in range(3)]
        conn.rollback()
    assert (outer, inside, again) == (2, 2, [3, 3, 3])
