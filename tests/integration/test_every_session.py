"""Pipelining for every Session on a proxy engine, and commits of readers without waiting.

A plain ``sqlalchemy.orm.Session`` and an application's own subclass, on a
proxy engine in front of a real server process, on SQLite, PostgreSQL and
MariaDB.  Round trips are counted by the engine's transport
(``session_proxy.stats``): ``round_trips`` counts what the caller waited
for, ``background_round_trips`` what it did not.  Behaviour is compared with
the same code on a direct engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import session_proxy
from session_proxy import background
from session_proxy.stats import StatsSnapshot

from ..conftest import ServerProcess, wait_for


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "sp_every_thing"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(40))


class Other(Base):
    __tablename__ = "sp_every_other"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class AppSession(Session):
    """An application's own Session subclass, knowing nothing of the proxy."""

    def flush(self, objects: Any = None) -> None:
        super().flush(objects)


SESSION_CLASSES = [Session, AppSession]


@pytest.fixture
def schema(direct_engine: sa.Engine) -> None:
    Base.metadata.drop_all(direct_engine)
    Base.metadata.create_all(direct_engine)
    with direct_engine.begin() as conn:
        conn.execute(sa.insert(Thing), [{"id": i, "name": f"t{i}"} for i in range(1, 4)])


@pytest.fixture
def ready(engine: sa.Engine, schema: None) -> sa.Engine:
    """The engine under test, connected once (first-connect queries not counted)."""
    with engine.connect():
        pass
    background.drain(10)
    return engine


@pytest.fixture(params=SESSION_CLASSES, ids=lambda cls: cls.__name__)
def session_class(request: pytest.FixtureRequest) -> type[Session]:
    return request.param


def _names(direct_engine: sa.Engine) -> dict[int, str]:
    with direct_engine.connect() as conn:
        return dict(conn.execute(sa.select(Thing.id, Thing.name)).all())


def _spent(engine: sa.Engine, block: Callable[[], Any]) -> StatsSnapshot:
    """What ``block`` cost, once the requests nobody waited for were answered."""
    background.drain(10)
    before = session_proxy.stats(engine).snapshot()
    block()
    assert background.drain(10)
    return session_proxy.stats(engine).snapshot() - before


def _only_proxy(mode: str) -> None:
    if mode != "proxy":
        pytest.skip("round trips are counted by the proxy transport")


# -- round trips -------------------------------------------------------------------


def test_thousand_objects_and_commit_is_one_round_trip(
    ready: sa.Engine, mode: str, session_class: type[Session], direct_engine: sa.Engine
) -> None:
    _only_proxy(mode)

    def add_and_commit() -> None:
        with session_class(ready) as session:
            session.add_all([Thing(id=1000 + i, name=f"n{i}") for i in range(1000)])
            session.commit()

    spent = _spent(ready, add_and_commit)
    assert (spent.round_trips, spent.background_round_trips) == (1, 0)
    assert len(_names(direct_engine)) == 3 + 1000


def test_get_and_commit_is_one_waiting_round_trip(
    ready: sa.Engine, mode: str, session_class: type[Session], server: ServerProcess
) -> None:
    _only_proxy(mode)

    def get_and_commit() -> None:
        with session_class(ready) as session:
            assert session.get(Thing, 1).name == "t1"
            session.commit()

    spent = _spent(ready, get_and_commit)
    assert (spent.round_trips, spent.statements) == (1, 1)
    # The COMMIT went all the same, and the server ended the transaction.
    assert (spent.background_round_trips, spent.background_failures) == (1, 0)
    wait_for(lambda: server.metric("session_proxy_open_transactions") == 0)


def test_a_transaction_that_wrote_or_locked_commits_and_waits(
    ready: sa.Engine, mode: str, db_url: str, direct_engine: sa.Engine
) -> None:
    _only_proxy(mode)

    def write() -> None:
        with Session(ready) as session:
            session.get(Thing, 1).name = "changed"
            session.commit()

    spent = _spent(ready, write)
    # the SELECT; the UPDATE rides with the COMMIT, which is waited for
    assert (spent.round_trips, spent.background_round_trips) == (2, 0)
    assert _names(direct_engine)[1] == "changed"

    def lock() -> None:
        with Session(ready) as session:
            session.get(Thing, 2, with_for_update=True)
            session.commit()

    spent = _spent(ready, lock)
    if db_url.startswith("sqlite"):
        # SQLite has no row locks: SQLAlchemy leaves FOR UPDATE out.
        assert (spent.round_trips, spent.background_round_trips) == (1, 1)
    else:
        assert (spent.round_trips, spent.background_round_trips) == (2, 0)


def test_a_serializable_reader_commits_and_waits(
    ready: sa.Engine, mode: str, db_url: str
) -> None:
    """Under SERIALIZABLE a reader's COMMIT can fail and mean something (PostgreSQL)."""
    _only_proxy(mode)
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite readers take a SHARED lock at any level; their COMMIT cannot fail")
    serializable = ready.execution_options(isolation_level="SERIALIZABLE")

    def read() -> None:
        with Session(serializable) as session:
            session.get(Thing, 1)
            session.commit()

    spent = _spent(ready, read)
    assert (spent.round_trips, spent.background_round_trips) == (2, 0)


def test_an_expired_reader_commits_without_raising(
    mode: str, schema: None, db_url: str
) -> None:
    """The background COMMIT fails (lease gone); nothing was written, so nothing is lost."""
    _only_proxy(mode)
    server = ServerProcess(db_url, "--lease-seconds", "1")
    engine = session_proxy.create_engine(server.url, token=server.token)
    try:
        with engine.connect():
            pass
        with Session(engine) as session:
            session.get(Thing, 1)
            wait_for(lambda: server.metric("session_proxy_open_transactions") == 0)
            before = session_proxy.stats(engine).snapshot()
            session.commit()  # does not raise
            assert background.drain(10)
            spent = session_proxy.stats(engine).snapshot() - before
        assert (spent.round_trips, spent.background_failures) == (0, 1)
    finally:
        engine.dispose()
        server.stop()


# -- the same behaviour as without the proxy ---------------------------------------------


def _outcome(action: Callable[[], Any]) -> str:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - compared by class
        return type(exc).__name__
    return "ok"


def test_a_failed_write_at_commit_leaves_a_failed_flush(
    ready: sa.Engine, session_class: type[Session], direct_engine: sa.Engine
) -> None:
    with session_class(ready) as session:
        session.add_all([Thing(id=10, name="a"), Thing(id=2, name="dup"), Thing(id=11, name="b")])
        assert _outcome(session.commit) == "IntegrityError"
        with pytest.raises(sa.exc.PendingRollbackError, match="previous exception during flush"):
            session.get(Thing, 1)
        session.rollback()
        assert session.get(Thing, 1).name == "t1"
    assert set(_names(direct_engine)) == {1, 2, 3}


def test_a_failed_autoflush_raises_from_the_query(
    ready: sa.Engine, session_class: type[Session], direct_engine: sa.Engine
) -> None:
    with session_class(ready) as session:
        session.add(Thing(id=3, name="dup"))
        assert _outcome(lambda: session.scalars(sa.select(Thing)).all()) == "IntegrityError"
        with pytest.raises(sa.exc.PendingRollbackError, match="previous exception during flush"):
            session.get(Thing, 1)
        session.rollback()
    assert _names(direct_engine)[3] == "t3"


def test_an_explicit_flush_raises_where_sqlalchemy_does(
    ready: sa.Engine, session_class: type[Session], direct_engine: sa.Engine
) -> None:
    with session_class(ready) as session:
        session.add(Thing(id=20, name="ok"))
        session.add(Thing(id=1, name="dup"))
        with pytest.raises(sa.exc.IntegrityError):
            session.flush()
        session.rollback()
    assert 20 not in _names(direct_engine)


def test_deferred_flush_errors_without_proxy_session(
    ready: sa.Engine, mode: str, direct_engine: sa.Engine
) -> None:
    """``info={"proxy_defer_flush_errors": True}``: an explicit flush's writes wait too."""
    _only_proxy(mode)
    Factory = sessionmaker(bind=ready, info={"proxy_defer_flush_errors": True})

    def flush_then_commit() -> None:
        with Factory() as session:
            session.get(Thing, 2).name = "deferred"
            session.flush()
            session.commit()

    spent = _spent(ready, flush_then_commit)
    assert spent.round_trips == 2  # the SELECT; the UPDATE and the COMMIT
    with Factory() as session:
        session.add(Thing(id=1, name="dup"))
        session.flush()  # queued: its error waits
        assert _outcome(lambda: session.get(Thing, 3)) == "IntegrityError"
        with pytest.raises(sa.exc.PendingRollbackError, match="previous exception during flush"):
            session.get(Thing, 3)
        session.rollback()
    assert _names(direct_engine)[2] == "deferred"


@pytest.mark.parametrize("join_mode", ["create_savepoint", "rollback_only"])
def test_a_session_joined_to_an_outside_transaction_does_not_commit_it(
    ready: sa.Engine, db_url: str, direct_engine: sa.Engine, join_mode: Any
) -> None:
    """The test-fixture pattern: a Session bound to a Connection whose
    transaction the fixture rolls back.  Its commit must not COMMIT that."""
    if db_url.startswith("sqlite"):
        pytest.skip("pysqlite's SAVEPOINT before BEGIN commits on RELEASE, direct too")
    with ready.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode=join_mode)
        session.add_all([Thing(id=30 + i, name="inside") for i in range(3)])
        session.commit()
        session.close()
        outer.rollback()
    assert not {30, 31, 32} & set(_names(direct_engine))


def test_a_listener_that_dirties_the_session_keeps_one_transaction(
    ready: sa.Engine, direct_engine: sa.Engine
) -> None:
    """An ``after_flush_postexec`` listener that adds an object makes the commit
    flush twice; both flushes must commit in one transaction, or neither."""

    class Auditing(Session):
        pass

    @event.listens_for(Auditing, "after_flush_postexec")
    def audit(session: Session, context: Any) -> None:
        if not session.info.get("audited"):
            session.info["audited"] = True
            session.add(Thing(id=session.info["audit_id"], name="audit"))

    with Auditing(ready, info={"audit_id": 42}) as session:
        session.add(Thing(id=40, name="a"))
        session.commit()
    names = _names(direct_engine)
    assert (names[40], names[42]) == ("a", "audit")
    # The second flush fails: the first one's row must not be committed.
    with Auditing(ready, info={"audit_id": 1}) as session:
        session.add(Thing(id=43, name="b"))
        assert _outcome(session.commit) == "IntegrityError"
        session.rollback()
    assert 43 not in _names(direct_engine)


@pytest.fixture
def two_engines(server: ServerProcess, mode: str, db_url: str) -> Iterator[sa.Engine]:
    extra = (
        session_proxy.create_engine(server.url, token=server.token)
        if mode == "proxy"
        else sa.create_engine(db_url)
    )
    yield extra
    extra.dispose()


def test_a_session_on_two_connections_commits_both_or_fails_before_either(
    ready: sa.Engine, two_engines: sa.Engine, direct_engine: sa.Engine, db_url: str
) -> None:
    """With two connections there is no early COMMIT: a failure on the second
    is a flush failure, and the first commits nothing."""
    if db_url.startswith("sqlite"):
        pytest.skip("two writing transactions on one SQLite file wait for each other")
    with Session(binds={Thing: ready, Other: two_engines}) as session:
        session.add(Thing(id=50, name="first"))
        session.add(Other(id=1))
        session.commit()
    with Session(binds={Thing: ready, Other: two_engines}) as session:
        session.add(Thing(id=51, name="first"))
        session.add(Other(id=1))  # duplicate key on the second connection
        assert _outcome(session.commit) == "IntegrityError"
        session.rollback()
    assert 50 in _names(direct_engine) and 51 not in _names(direct_engine)


def test_a_before_commit_listener_that_flushes_keeps_one_transaction(
    ready: sa.Engine, direct_engine: sa.Engine
) -> None:
    """A flush a ``before_commit`` listener runs is not the commit's own flush:
    it must not COMMIT, or the listener's next statement would run apart."""

    class Auditing(Session):
        pass

    @event.listens_for(Auditing, "before_commit")
    def audit(session: Session) -> None:
        session.flush()
        session.execute(sa.insert(Thing).values(id=session.info["audit_id"], name="audit"))

    with Auditing(ready, info={"audit_id": 62}) as session:
        session.add(Thing(id=60, name="a"))
        session.commit()
    assert {60, 62} <= set(_names(direct_engine))
    with Auditing(ready, info={"audit_id": 1}) as session:  # the audit row fails
        session.add(Thing(id=61, name="b"))
        assert _outcome(session.commit) == "IntegrityError"
        session.rollback()
    assert 61 not in _names(direct_engine)


# -- statements SQLAlchemy runs for a flushed one ------------------------------------


class Counted(DeclarativeBase):
    pass


class Fired(Counted):
    """Keys from a sequence fired before each INSERT (no RETURNING to read them)."""

    __tablename__ = "sp_every_fired"
    __table_args__ = {"implicit_returning": False}

    id: Mapped[int] = mapped_column(primary_key=True)
    bar: Mapped[int]
    foo: Mapped[int] = mapped_column(server_default=sa.text("5"))


def test_a_sequence_fired_for_a_flushed_insert_is_read_at_once(
    backend: str, engine: sa.Engine, direct_engine: sa.Engine, session_class: type[Session]
) -> None:
    """SQLAlchemy runs ``nextval()`` with the INSERT's context; it must not be queued."""
    if backend != "postgresql":
        pytest.skip("sequences fired before an INSERT: PostgreSQL's dialect")
    Counted.metadata.drop_all(direct_engine)
    Counted.metadata.create_all(direct_engine)
    try:
        with session_class(engine) as session:
            things = [Fired(bar=6), Fired(bar=7)]
            session.add_all(things)
            session.flush()
            assert sorted(t.id for t in things) == [1, 2]
            session.commit()
        with direct_engine.connect() as conn:
            rows = conn.execute(sa.select(Fired.id, Fired.bar, Fired.foo).order_by(Fired.id))
            assert rows.all() == [(1, 6, 5), (2, 7, 5)]
    finally:
        Counted.metadata.drop_all(direct_engine)
