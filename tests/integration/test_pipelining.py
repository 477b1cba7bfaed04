"""Pipelined flushes: fewer round trips, and the same behaviour as without them.

Round trips are counted exactly in proxy mode.  Every behaviour test runs
in both modes and compares what the proxy does (exception class and text,
session state, rows left in the database) with what plain SQLAlchemy does
on a direct connection.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.orm import exc as orm_exc

import session_proxy
from session_proxy import ProxySession
from session_proxy.errors import PipelineAborted


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "sp_pipe_row"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(40))
    n: Mapped[int] = mapped_column(default=0)


class Serial(Base):
    __tablename__ = "sp_pipe_serial"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))


class Versioned(Base):
    __tablename__ = "sp_pipe_versioned"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[int] = mapped_column(nullable=False)
    __mapper_args__ = {"version_id_col": version}


@pytest.fixture
def schema(direct_engine: sa.Engine) -> None:
    Base.metadata.drop_all(direct_engine)
    Base.metadata.create_all(direct_engine)
    with direct_engine.begin() as conn:
        conn.execute(sa.insert(Row), [{"id": i, "name": f"r{i}", "n": i} for i in range(1, 6)])
        conn.execute(sa.insert(Versioned), [{"id": 1, "name": "v", "version": 1}])


@pytest.fixture
def Session(engine: sa.Engine, schema: None) -> sessionmaker:
    with engine.connect():
        pass  # first-connect queries are not part of any count
    return sessionmaker(class_=ProxySession, bind=engine)


def _rows(direct_engine: sa.Engine) -> dict[int, tuple[str, int]]:
    with direct_engine.connect() as conn:
        return {r.id: (r.name, r.n) for r in conn.execute(sa.select(Row).order_by(Row.id))}


class Counter:
    """Round trips and statements spent inside a block (proxy mode only)."""

    def __init__(self, engine: sa.Engine, mode: str) -> None:
        self.engine, self.mode = engine, mode
        self.round_trips = self.statements = None

    def __enter__(self) -> Counter:
        self._before = session_proxy.stats(self.engine).snapshot() if self.mode == "proxy" else None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._before is not None:
            spent = session_proxy.stats(self.engine).snapshot() - self._before
            self.round_trips, self.statements = spent.round_trips, spent.statements


def _only_proxy(mode: str) -> None:
    if mode != "proxy":
        pytest.skip("round trips are counted by the proxy transport")


# -- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 100, 10_000])
def test_add_with_client_keys_and_commit_is_one_round_trip(
    Session: sessionmaker, engine: sa.Engine, mode: str, direct_engine: sa.Engine, n: int
) -> None:
    _only_proxy(mode)
    with Session() as session, Counter(engine, mode) as spent:
        session.add_all([Row(id=1000 + i, name=f"new{i}", n=i) for i in range(n)])
        session.commit()
    assert spent.round_trips == 1
    rows = _rows(direct_engine)
    assert len(rows) == 5 + n
    assert rows[1000 + n - 1] == (f"new{n - 1}", n - 1)


def test_updates_ride_with_the_commit(
    Session: sessionmaker, engine: sa.Engine, mode: str, direct_engine: sa.Engine
) -> None:
    _only_proxy(mode)
    with Session() as session, Counter(engine, mode) as spent:
        rows = session.scalars(sa.select(Row).order_by(Row.id)).all()
        for row in rows:
            row.n += 100
        session.delete(rows[0])
        session.commit()
    # the SELECT (with BEGIN), then UPDATE x4 + DELETE + COMMIT
    assert (spent.round_trips, spent.statements) == (2, 3)
    assert _rows(direct_engine) == {i: (f"r{i}", i + 100) for i in range(2, 6)}


def test_autoflush_writes_ride_with_the_query_that_needs_them(
    Session: sessionmaker, engine: sa.Engine, mode: str
) -> None:
    _only_proxy(mode)
    with Session() as session, Counter(engine, mode) as spent:
        session.add(Row(id=77, name="auto"))
        session.get(Row, 1).name = "changed"  # identity map miss: a SELECT
        names = session.scalars(sa.select(Row.name).where(Row.id.in_([1, 77]))).all()
        session.rollback()
    # get(): BEGIN + SELECT; scalars(): INSERT + UPDATE + SELECT; ROLLBACK
    assert spent.round_trips == 3
    assert sorted(names) == ["auto", "changed"]


def test_explicit_flush_sends_its_writes_unless_errors_may_wait(
    engine: sa.Engine, schema: None, mode: str
) -> None:
    _only_proxy(mode)
    with engine.connect():
        pass
    for defer, expected in ((False, 3), (True, 2)):
        Session = sessionmaker(class_=ProxySession, bind=engine, defer_flush_errors=defer)
        with Session() as session, Counter(engine, mode) as spent:
            session.get(Row, 2).n += 1
            session.flush()
            session.commit()
        assert spent.round_trips == expected, defer


def test_key_generating_insert_is_sent_at_once(
    Session: sessionmaker, engine: sa.Engine, mode: str
) -> None:
    _only_proxy(mode)
    with Session() as session, Counter(engine, mode) as spent:
        session.get(Row, 3).n = 33
        serial = Serial(name="s")
        session.add(serial)
        session.flush()  # UPDATE rides in front of the INSERT that returns the key
        assert serial.id is not None
        session.commit()
    # get, then UPDATE + INSERT, then COMMIT
    assert spent.round_trips == 3


def test_pipelined_core_dml_rides_with_the_commit(
    engine: sa.Engine, schema: None, mode: str, server: Any, direct_engine: sa.Engine
) -> None:
    _only_proxy(mode)
    pipelined = session_proxy.create_engine(
        server.url, token=server.token, proxy_pipeline_dml=True
    )
    try:
        with pipelined.connect():
            pass
        Session = sessionmaker(class_=ProxySession, bind=pipelined)
        with Session() as session, Counter(pipelined, mode) as spent:
            session.scalars(sa.select(Row)).all()
            result = session.execute(sa.update(Row).where(Row.id > 3).values(n=0))
            session.execute(sa.delete(Row).where(Row.id == 1))
            session.commit()
        assert spent.round_trips == 2
        assert _rows(direct_engine)[4] == ("r4", 0)
        assert 1 not in _rows(direct_engine)
        # Reading a pipelined statement's rowcount sends the queue.
        with Session() as session, Counter(pipelined, mode) as spent:
            session.scalars(sa.select(Row)).all()
            result = session.execute(sa.update(Row).values(n=7))
            assert result.rowcount == 4
            session.commit()
        assert spent.round_trips == 3
        with Session() as session:
            result = session.execute(
                sa.update(Row).values(n=8).execution_options(proxy_pipeline=False)
            )
            assert session.connection().connection.dbapi_connection.queued == 0
            session.rollback()
    finally:
        pipelined.dispose()


# -- the same behaviour as SQLAlchemy without the proxy --------------------------


def _outcome(action: Callable[[], Any]) -> tuple[str, str]:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - compared by class and text
        text = str(exc).split("\n")[0]
        return type(exc).__name__, text.replace("session_proxy.errors.", "")
    return "ok", ""


def test_error_in_the_middle_of_a_batch_at_commit(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        session.add_all([Row(id=10, name="a"), Row(id=2, name="dup"), Row(id=11, name="b")])
        kind, text = _outcome(session.commit)
        assert kind == "IntegrityError"
        # Like a failed flush: the session wants a rollback and restored its state.
        next_kind, next_text = _outcome(lambda: session.get(Row, 1))
        assert next_kind == "PendingRollbackError"
        assert "previous exception during flush" in next_text
        session.rollback()
        assert session.get(Row, 1).name == "r1"
    assert set(_rows(direct_engine)) == {1, 2, 3, 4, 5}


def test_explicit_flush_raises_where_sqlalchemy_does(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        session.add(Row(id=20, name="ok"))
        session.add(Row(id=3, name="dup"))
        with pytest.raises(sa_exc.IntegrityError) as raised:
            session.flush()
        assert "sp_pipe_row" in str(raised.value) or "PRIMARY" in str(raised.value)
        with pytest.raises(sa_exc.PendingRollbackError):
            session.get(Row, 1)
        session.rollback()
    assert 20 not in _rows(direct_engine)


def test_autoflush_error_raises_from_the_query(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        session.add(Row(id=4, name="dup"))
        with pytest.raises(sa_exc.IntegrityError):
            session.scalars(sa.select(Row)).all()
        with pytest.raises(sa_exc.PendingRollbackError):
            session.get(Row, 1)
        session.rollback()
        assert session.get(Row, 4).name == "r4"
    assert _rows(direct_engine)[4] == ("r4", 4)


def _stale_update(Session: sessionmaker, direct_engine: sa.Engine, model: type) -> tuple:
    with Session() as session:
        rows = session.scalars(sa.select(model).order_by(model.id)).all()
        with direct_engine.begin() as conn:  # another client deletes one row
            conn.execute(sa.delete(model).where(model.id == rows[0].id))
        for row in rows:
            row.name = "stale?"
        outcome = _outcome(session.commit)
        after = _outcome(lambda: session.get(model, 1))
        session.rollback()
    return outcome, after


def test_stale_update_raises_sqlalchemys_error(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    (kind, text), after = _stale_update(Session, direct_engine, Row)
    assert kind == "StaleDataError"
    assert text == (
        "UPDATE statement on table 'sp_pipe_row' expected to update 5 row(s); 4 were matched."
    )
    assert after[0] == "PendingRollbackError"
    assert {name for name, _ in _rows(direct_engine).values()} == {"r2", "r3", "r4", "r5"}


def test_stale_versioned_update_raises_sqlalchemys_error(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        row = session.get(Versioned, 1)
        with direct_engine.begin() as conn:  # another client bumps the version
            conn.execute(sa.update(Versioned).values(version=5))
        row.name = "mine"
        with pytest.raises(orm_exc.StaleDataError) as raised:
            session.commit()
        assert str(raised.value) == (
            "UPDATE statement on table 'sp_pipe_versioned' expected to update 1 row(s); "
            "0 were matched."
        )
        session.rollback()
    with direct_engine.connect() as conn:
        assert conn.execute(sa.select(Versioned.name)).scalar() == "v"


def test_deleting_a_vanished_row_warns_like_sqlalchemy(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        row = session.get(Row, 5)
        with direct_engine.begin() as conn:
            conn.execute(sa.delete(Row).where(Row.id == 5))
        session.delete(row)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session.commit()
    messages = [str(w.message) for w in caught if issubclass(w.category, sa_exc.SAWarning)]
    assert messages == [
        "DELETE statement on table 'sp_pipe_row' expected to delete 1 row(s); 0 were "
        "matched.  Please set confirm_deleted_rows=False within the mapper configuration "
        "to prevent this warning."
    ]


def test_savepoint_keeps_outer_queued_writes(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        session.get(Row, 1).name = "outer"
        session.add(Row(id=30, name="outer-new"))
        with pytest.raises(sa_exc.IntegrityError):
            with session.begin_nested():
                session.add(Row(id=31, name="inner-ok"))
                session.add(Row(id=2, name="inner-dup"))
        session.add(Row(id=32, name="after"))
        session.commit()
    rows = _rows(direct_engine)
    assert rows[1][0] == "outer" and rows[30][0] == "outer-new" and rows[32][0] == "after"
    assert 31 not in rows and rows[2][0] == "r2"


def test_nested_rollback_to_savepoint_discards_queued_inner_writes(
    Session: sessionmaker, direct_engine: sa.Engine
) -> None:
    with Session() as session:
        session.add(Row(id=40, name="outer"))
        nested = session.begin_nested()
        session.add(Row(id=41, name="inner"))
        session.flush()
        nested.rollback()
        session.commit()
    rows = _rows(direct_engine)
    assert 40 in rows and 41 not in rows


def test_failed_queued_statement_refuses_commit_on_a_plain_connection(
    engine: sa.Engine, schema: None, mode: str, direct_engine: sa.Engine
) -> None:
    _only_proxy(mode)
    Session = sessionmaker(class_=ProxySession, bind=engine, defer_flush_errors=True)
    session = Session()
    session.add(Row(id=50, name="fine"))
    session.add(Row(id=1, name="dup"))
    session.flush()  # queued: errors may wait
    connection = session.connection()
    dbapi_connection = connection.connection.dbapi_connection
    # Straight on the DBAPI connection, under SQLAlchemy's error handling
    # (which would fail the session like a flush and roll back).
    with pytest.raises(session_proxy.dbapi.IntegrityError):
        dbapi_connection.cursor().execute("SELECT 1")
    with pytest.raises(PipelineAborted, match="must be rolled back"):
        dbapi_connection.commit()
    session.rollback()
    session.close()
    assert 50 not in _rows(direct_engine)


def test_queued_writes_are_visible_to_reads_in_the_same_request(
    Session: sessionmaker,
) -> None:
    with Session() as session:
        session.add_all([Row(id=60 + i, name="v") for i in range(3)])
        session.flush()
        count = session.scalar(sa.select(sa.func.count()).select_from(Row).where(Row.name == "v"))
        assert count == 3
        session.rollback()
