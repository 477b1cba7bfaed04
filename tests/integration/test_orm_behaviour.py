"""The same ORM behaviour, direct and through the proxy, on every backend.

Each test runs for backend {sqlite, postgresql, mysql} x mode {direct, proxy}
and asserts values computed from its own inputs, so both modes must give
identical results.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.orm import joinedload, selectinload, sessionmaker

import session_proxy
from session_proxy import ProxySession
from tests.models import Base, Child, Item, Parent, Tag, Versioned


@pytest.fixture
def schema(direct_engine: sa.Engine) -> None:
    Base.metadata.drop_all(direct_engine)
    Base.metadata.create_all(direct_engine)


@pytest.fixture
def Session(engine: sa.Engine, schema: None) -> sessionmaker:
    return sessionmaker(class_=ProxySession, bind=engine)


def _family(name: str, n_children: int = 3) -> Parent:
    return Parent(name=name, children=[Child(name=f"{name}-c{i}") for i in range(n_children)])


def test_crud(Session: sessionmaker) -> None:
    with Session() as session:
        session.add_all([_family("alpha"), _family("beta", 2)])
        session.commit()

    with Session() as session:
        alpha = session.scalars(sa.select(Parent).filter_by(name="alpha")).one()
        assert [c.name for c in alpha.children] == ["alpha-c0", "alpha-c1", "alpha-c2"]
        alpha.name = "alpha2"
        alpha.children[0].name = "renamed"
        session.commit()

    with Session() as session:
        names = session.scalars(sa.select(Parent.name).order_by(Parent.name)).all()
        assert names == ["alpha2", "beta"]
        assert session.scalar(sa.select(Child.name).order_by(Child.id).limit(1)) == "renamed"
        session.delete(session.scalars(sa.select(Parent).filter_by(name="beta")).one())
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(Parent)) == 1


@pytest.mark.parametrize("strategy", ["lazy", "joined", "selectin"])
def test_relationship_loading(Session: sessionmaker, strategy: str) -> None:
    with Session() as session:
        tags = [Tag(label=f"t{i}") for i in range(3)]
        for i in range(4):
            family = _family(f"p{i}", n_children=i)
            family.tags = tags[: i % 3 + 1]
            session.add(family)
        session.commit()

    options = {
        "lazy": [],
        "joined": [joinedload(Parent.children), joinedload(Parent.tags)],
        "selectin": [selectinload(Parent.children), selectinload(Parent.tags)],
    }[strategy]
    with Session() as session:
        query = sa.select(Parent).options(*options).order_by(Parent.id)
        parents = session.scalars(query).unique().all()
        loaded = [
            (p.name, [c.name for c in p.children], [t.label for t in p.tags]) for p in parents
        ]
    assert loaded == [
        ("p0", [], ["t0"]),
        ("p1", ["p1-c0"], ["t0", "t1"]),
        ("p2", ["p2-c0", "p2-c1"], ["t0", "t1", "t2"]),
        ("p3", ["p3-c0", "p3-c1", "p3-c2"], ["t0"]),
    ]


def test_lazy_load_is_a_statement(Session: sessionmaker, mode: str) -> None:
    with Session() as session:
        session.add(_family("lazy", 2))
        session.commit()
    with Session() as session:
        parent = session.scalars(sa.select(Parent)).one()
        before = session.proxy_stats.statements
        assert [c.name for c in parent.children] == ["lazy-c0", "lazy-c1"]
        after = session.proxy_stats.statements
    # Through the proxy the lazy load is one more statement on the wire.
    assert after - before == (1 if mode == "proxy" else 0)


def test_expiry_and_refresh(Session: sessionmaker, engine: sa.Engine) -> None:
    with Session() as session:
        parent = _family("exp", 0)
        session.add(parent)
        session.commit()
        parent_id = parent.id
        session.commit()
        with engine.begin() as conn:
            conn.execute(sa.update(Parent).values(counter=41).where(Parent.id == parent_id))
        # expire_on_commit: the next access reloads and sees the other write.
        assert parent.counter == 41
        with engine.begin() as conn:
            conn.execute(sa.update(Parent).values(counter=42).where(Parent.id == parent_id))
        assert parent.counter == 41  # still the loaded value inside this transaction
        session.commit()
        session.refresh(parent)
        assert parent.counter == 42
        session.expire(parent, ["counter"])
        assert "counter" not in parent.__dict__
        assert parent.counter == 42


def test_server_defaults_and_generated_keys(Session: sessionmaker) -> None:
    with Session() as session:
        first, second = Parent(name="d1"), Parent(name="d2")
        session.add_all([first, second])
        session.flush()
        assert isinstance(first.id, int) and second.id == first.id + 1
        assert (first.status, first.counter) == ("new", 0)
        child = Child(name="k", parent_id=second.id)
        session.add(child)
        session.commit()
        assert child.id is not None
        assert session.get(Child, child.id).parent is second


def test_bulk_insert_10000(Session: sessionmaker) -> None:
    rows = 10_000
    with Session() as session:
        session.add_all(Item(id=i, value=i * 3) for i in range(rows))
        session.commit()
    with Session() as session:
        count, total = session.execute(
            sa.select(sa.func.count(), sa.func.sum(Item.value))
        ).one()
    assert (count, int(total)) == (rows, 3 * rows * (rows - 1) // 2)


def test_version_id_col_detects_concurrent_change(
    Session: sessionmaker, make_engine
) -> None:
    with Session() as session:
        session.add(Versioned(id=1, value="v1"))
        session.commit()
    other = sessionmaker(bind=make_engine())
    with Session() as mine, other() as theirs:
        obj = mine.get(Versioned, 1)
        assert obj.version == 1
        concurrent = theirs.get(Versioned, 1)
        concurrent.value = "theirs"
        theirs.commit()
        obj.value = "mine"
        with pytest.raises(orm.exc.StaleDataError, match="expected to update 1 row"):
            mine.flush()
        mine.rollback()
    with Session() as session:
        assert session.get(Versioned, 1).value == "theirs"


def test_delete_cascade(Session: sessionmaker) -> None:
    with Session() as session:
        session.add_all([_family("keep", 2), _family("drop", 3)])
        session.commit()
        session.delete(session.scalars(sa.select(Parent).filter_by(name="drop")).one())
        session.commit()
        remaining = session.scalars(sa.select(Child.name).order_by(Child.name)).all()
    assert remaining == ["keep-c0", "keep-c1"]


def test_integrity_error_same_class_and_session_recovers(
    Session: sessionmaker, backend: str, mode: str
) -> None:
    with Session() as session:
        session.add(Parent(name="dup"))
        session.commit()
        session.add(Parent(name="dup"))
        with pytest.raises(sa_exc.IntegrityError) as caught:
            session.commit()
        session.rollback()
        session.add(Parent(name="fine"))
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(Parent)) == 2
    orig = caught.value.orig
    code = {"postgresql": ("sqlstate", "23505"), "mysql": ("errno", 1062)}.get(backend)
    if code is not None:
        attr, expected = code
        value = orig.args[0] if (attr == "errno" and mode == "direct") else getattr(orig, attr)
        assert value == expected
    assert "dup" in str(caught.value)


@pytest.mark.filterwarnings("ignore:SELECT statement has a cartesian product")
def test_large_select_and_yield_per(
    Session: sessionmaker, engine: sa.Engine, direct_engine: sa.Engine, mode: str
) -> None:
    from tests.models import big, digits

    with direct_engine.begin() as conn:
        conn.execute(digits.insert(), [{"d": d} for d in range(10)])
        a, b, c, d, e, f = (digits.alias(name) for name in "abcdef")
        number = a.c.d + 10 * b.c.d + 100 * c.c.d + 1000 * d.c.d + 10000 * e.c.d
        number = number + 100000 * f.c.d
        cross = a
        for other in (b, c, d, e, f):
            cross = cross.join(other, sa.true())
        source = sa.select(number).select_from(cross).where(f.c.d < 2)
        conn.execute(big.insert().from_select(["id"], source))
    expected_rows = 200_000
    expected_sum = expected_rows * (expected_rows - 1) // 2

    with engine.connect():
        pass  # first connect runs the dialect's initialize queries
    before = session_proxy.stats(engine).snapshot() if mode == "proxy" else None
    with engine.connect() as conn:
        ids = conn.execute(sa.select(big.c.id)).scalars().all()
    assert (len(ids), sum(ids)) == (expected_rows, expected_sum)
    if before is not None:
        spent = session_proxy.stats(engine).snapshot() - before
        # Pages of 5,000 rows: one request for the statement and the first
        # page, then one fetch per further page; the rollback of a
        # transaction that only read goes without waiting.
        assert spent.round_trips == expected_rows // 5000

    with Session() as session:
        seen = count = 0
        result = session.execute(sa.select(big.c.id).execution_options(yield_per=1000))
        for partition in result.partitions():
            assert len(partition) <= 1000
            count += len(partition)
            seen += sum(row.id for row in partition)
    assert (count, seen) == (expected_rows, expected_sum)
