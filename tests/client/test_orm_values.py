"""What the logical API's wire gives back for ORM instances (:mod:`session_proxy.wire.values`).

Instances are loaded from a real SQLite database by a plain session, as an
operation's result is on the server, then go through ``to_wire`` -> JSON ->
``from_wire`` as they travel.  What comes back must be what the caller would
have had in-process: detached instances of the same class with the same
identity, every loaded column committed with the same value *and type*,
nothing else loaded, an unloaded relationship or deferred column raising
:class:`~sqlalchemy.orm.exc.DetachedInstanceError` when touched.  A list of
instances of one class travels as one block of rows (``"orms"``) and must
decode exactly as the same instances sent one by one; a malformed block is a
ValueError naming what is wrong, before any instance is built.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    deferred,
    mapped_column,
    relationship,
    undefer,
)
from sqlalchemy.orm.exc import DetachedInstanceError

from session_proxy.wire import codec, values

UTC = datetime.timezone.utc
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
PARIS = ZoneInfo("Europe/Paris")


class Base(DeclarativeBase):
    """This module's own tables."""


class Run(Base):
    __tablename__ = "sp_orm_values_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    items: Mapped[list[Item]] = relationship(back_populates="run")


class Item(Base):
    """One column of each kind the wire treats differently."""

    __tablename__ = "sp_orm_values_item"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey(Run.id), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    count: Mapped[int | None]
    big: Mapped[int | None] = mapped_column(sa.BigInteger)
    ratio: Mapped[float | None]
    flag: Mapped[bool | None]
    amount: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(20, 6))
    ident: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    day: Mapped[datetime.date | None]
    # A type decorator hands back whatever datetime it was given; SQLite stores text.
    at: Mapped[datetime.datetime | None] = mapped_column(sa.PickleType)
    payload: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    blob: Mapped[bytes | None] = deferred(mapped_column(sa.LargeBinary))
    run: Mapped[Run] = relationship(back_populates="items")


ITEMS: list[dict[str, Any]] = [
    dict(key="aware utc", count=1, big=2**60, ratio=0.5, flag=True,
         amount=decimal.Decimal("1.500000"), ident=uuid.UUID(int=1), day=datetime.date(2026, 1, 2),
         at=datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), payload={"a": [1, 2]},
         blob=b"\x00\xff"),
    dict(key="fixed offset", count=-1, big=None, ratio=float("inf"), flag=False,
         amount=None, ident=None, day=None, at=datetime.datetime(2026, 1, 2, 3, 4, tzinfo=IST),
         payload=None, blob=None),
    dict(key="naive", count=None, big=-(2**60), ratio=None, flag=None,
         amount=decimal.Decimal("-0.000001"), ident=uuid.UUID(int=2), day=datetime.date(1, 1, 1),
         at=datetime.datetime(2026, 1, 2, 3, 4), payload=[{"$t": "not a tag"}], blob=b""),
    dict(key="no value", count=0, big=0, ratio=-0.0, flag=True, amount=None, ident=None,
         day=None, at=None, payload="text", blob=None),
]
# A fold needs the datetime's own tag: not ISO text.
ZONED = dict(key="zoned", count=5, at=datetime.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS))
# One zone for the whole column: ISO wall times and the zone's name once.
IN_PARIS = [dict(key=f"paris {n}", at=datetime.datetime(2026, 7, n, 12, tzinfo=PARIS))
            for n in (1, 2)]


@pytest.fixture(scope="module")
def engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Run(id=1, name="first"))
        session.add_all(Item(run_id=1, **values) for values in [*ITEMS, ZONED, *IN_PARIS])
        session.commit()
    yield engine
    engine.dispose()


def load(engine: sa.Engine, *keys: str, with_blob: bool = True) -> list[Item]:
    """Items by key, loaded as an operation's session loads them, then detached."""
    query = sa.select(Item).where(Item.key.in_(keys))
    if with_blob:
        query = query.options(undefer(Item.blob))
    with Session(engine, expire_on_commit=False) as session:
        by_key = {item.key: item for item in session.scalars(query)}
    return [by_key[key] for key in keys]


def travel(value: Any) -> Any:
    """``value`` after a trip over the wire, as a logical call's result makes it."""
    return values.from_wire(codec.loads(codec.dumps({"result": values.to_wire(value)}))["result"])


def column_values(instance: Any) -> dict[str, Any]:
    """The loaded column values (the instance's committed state)."""
    state = sa.inspect(instance)
    return {key: state.dict[key] for key in state.mapper.column_attrs.keys() if key in state.dict}


def assert_same_instance(got: Any, sent: Any) -> None:
    """``got`` is what the caller would have had in-process for ``sent``."""
    assert type(got) is type(sent)
    state, sent_state = sa.inspect(got), sa.inspect(sent)
    assert state.detached and not state.modified
    assert state.identity == sent_state.identity
    assert state.key == sent_state.key
    expected = column_values(sent)
    assert column_values(got) == expected
    for key, value in expected.items():
        assert type(state.dict[key]) is type(value), key
        if isinstance(value, datetime.datetime):
            assert (state.dict[key].tzinfo, state.dict[key].fold) == (value.tzinfo, value.fold)
    # Committed: no history, and the instance would merge as persistent and clean.
    for key in expected:
        assert not state.attrs[key].history.has_changes(), key
    # Nothing else came: every other attribute is unloaded.
    assert set(state.unloaded) == set(sent_state.unloaded)
    assert set(state.dict) - {"_sa_instance_state"} == set(expected)


def test_a_list_of_instances_comes_back_as_the_same_detached_instances(
    engine: sa.Engine,
) -> None:
    sent = load(engine, *(item["key"] for item in ITEMS))
    got = travel(sent)
    assert type(got) is list and len(got) == len(sent)
    for got_item, sent_item in zip(got, sent, strict=True):
        assert_same_instance(got_item, sent_item)
    # The relationship was never loaded: touching it raises, it never reads as empty.
    with pytest.raises(DetachedInstanceError):
        _ = got[0].run
    assert got[0].key == "aware utc" and got[0].at.tzinfo is UTC and got[0].blob == b"\x00\xff"


def test_a_list_travels_as_one_block_of_rows_with_plain_and_iso_columns(
    engine: sa.Engine,
) -> None:
    sent = load(engine, *(item["key"] for item in ITEMS))
    encoded = values.to_wire(sent)
    assert encoded[codec.TAG] == "orms"
    assert encoded["cls"] == f"{__name__}:Item"
    assert len(encoded["rows"]) == len(ITEMS)
    columns = encoded["cols"]
    # Strings, small ints and bools travel as themselves; datetimes as ISO text;
    # only the rest carries a tag per value.
    assert encoded["dt"] == [[columns.index("at"), None]]
    plain = {"run_id", "key", "count", "flag"}
    assert not {columns[i] for i in encoded["tagged"]} & plain
    assert {columns[i] for i in encoded["tagged"]} == {
        "big", "ratio", "amount", "ident", "day", "payload", "blob"}
    # The same instances sent one by one decode to the same thing.
    one_by_one = [travel(item) for item in sent]
    for batch_item, single_item in zip(travel(sent), one_by_one, strict=True):
        assert column_values(batch_item) == column_values(single_item)
        assert sa.inspect(batch_item).unloaded == sa.inspect(single_item).unloaded


def test_a_column_in_one_zone_sends_the_zone_once(engine: sa.Engine) -> None:
    sent = load(engine, "paris 1", "paris 2")
    encoded = values.to_wire(sent)
    at = encoded["cols"].index("at")
    assert encoded["dt"] == [[at, "Europe/Paris"]]
    assert [row[at] for row in encoded["rows"]] == ["2026-07-01T12:00:00", "2026-07-02T12:00:00"]
    got = travel(sent)
    for got_item, sent_item in zip(got, sent, strict=True):
        assert_same_instance(got_item, sent_item)
        assert got_item.at.tzinfo is PARIS


@pytest.mark.parametrize("keys", [("naive", "zoned"), ("paris 1", "zoned"), ("paris 1", "naive"),
                                  ("aware utc", "paris 1")],
                         ids=["a fold", "a fold in the zone", "naive and zoned", "two zones"])
def test_datetimes_iso_text_cannot_bring_back_keep_their_tags(
    engine: sa.Engine, keys: tuple[str, str]
) -> None:
    sent = load(engine, *keys)
    encoded = values.to_wire(sent)
    assert "dt" not in encoded and encoded["cols"].index("at") in encoded["tagged"]
    got = travel(sent)
    for got_item, sent_item in zip(got, sent, strict=True):
        assert_same_instance(got_item, sent_item)
    if keys[1] == "zoned":
        assert got[1].at.tzinfo is PARIS and got[1].at.fold == 1


def test_a_deferred_column_stays_unloaded(engine: sa.Engine) -> None:
    sent = load(engine, "aware utc", "naive", with_blob=False)
    got = travel(sent)
    for got_item, sent_item in zip(got, sent, strict=True):
        assert_same_instance(got_item, sent_item)
        assert "blob" in sa.inspect(got_item).unloaded
        with pytest.raises(DetachedInstanceError):
            _ = got_item.blob


def test_lists_that_are_not_one_block_go_item_by_item(engine: sa.Engine) -> None:
    full = load(engine, "aware utc")[0]
    partial = load(engine, "naive", with_blob=False)[0]
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(Run, 1)
    mixed = [[full, partial], [partial, full], [full, run], [full, 1, None]]
    for sent in mixed:
        encoded = values.to_wire(sent)
        assert type(encoded) is list
        got = travel(sent)
        for got_item, sent_item in zip(got, sent, strict=True):
            if sa.inspect(sent_item, raiseerr=False) is None:
                assert got_item == sent_item
            else:
                assert_same_instance(got_item, sent_item)
    assert travel([]) == []


def test_a_transient_instance_arrives_detached_with_its_identity() -> None:
    item = Item(run_id=7, key="new", count=3)
    got = travel([item, Item(run_id=7, key="other")])
    assert sa.inspect(got[0]).detached and sa.inspect(got[0]).identity == (7, "new")
    assert column_values(got[0]) == {"run_id": 7, "key": "new", "count": 3}


def block(**changes: Any) -> dict[str, Any]:
    body = {codec.TAG: "orms", "cls": f"{__name__}:Item", "cols": ["run_id", "key", "at"],
            "rows": [[1, "a", "2026-01-02T03:04:05+00:00"], [1, "b", None]], "dt": [[2, None]]}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


MALFORMED_BLOCKS: list[tuple[str, Any, str]] = [
    ("unknown class", block(cls="nowhere:Nothing"), "no mapped class"),
    ("class not a string", block(cls=["x"]), "'cls' must be a string"),
    ("unknown column", block(cols=["run_id", "key", "bogus"]), "no column attribute 'bogus'"),
    ("relationship as column", block(cols=["run_id", "key", "run"]), "no column attribute"),
    ("column named twice", block(cols=["run_id", "key", "key"]), "twice"),
    ("no columns", block(cols=[], rows=[]), "non-empty list"),
    ("columns not names", block(cols=[1, 2, 3]), "column attribute names"),
    ("short row", block(rows=[[1, "a"]]), "rows of 3 values"),
    ("row not a list", block(rows=[{"run_id": 1}]), "rows of 3 values"),
    ("rows not a list", block(rows="abc"), "rows of 3 values"),
    ("index out of range", block(tagged=[3]), "'tagged' must list"),
    ("index not an int", block(dt=[[True, None]]), "'dt' must list"),
    ("index twice", block(tagged=[0, 0]), "'tagged' must list"),
    ("dt index twice", block(dt=[[2, None], [2, "UTC"]]), "'dt' must list"),
    ("dt not pairs", block(dt=[2]), "pairs"),
    ("dt zone not a name", block(dt=[[2, 5]]), "zone name or null"),
    ("dt unknown zone", block(dt=[[2, "Nowhere/Nothing"]]), "Nowhere/Nothing"),
    ("dt zone as a path", block(dt=[[2, "/etc/passwd"]]), "absolute"),
    ("dt offset in a zoned column", block(dt=[[2, "Europe/Paris"]]), "holds an offset"),
    ("tagged and dt", block(tagged=[2]), "both"),
    ("tagged not a list", block(tagged={"0": 1}), "'tagged' must list"),
    ("untagged object", block(rows=[[1, {"$t": "dec", "v": "1"}, None]]), "not tagged"),
    ("untagged list", block(rows=[[1, [1, 2], None]]), "not tagged"),
    ("dt column of ints", block(rows=[[1, "a", 5]]), "not ISO 8601"),
    ("dt column of bad text", block(rows=[[1, "a", "yesterday"]]), "isoformat"),
    ("bad tagged value", block(tagged=[0], rows=[[{"$t": "dec", "v": "x"}, "a", None]]), "dec"),
    ("no rows", block(rows=...), "malformed 'orms'"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in MALFORMED_BLOCKS],
                         ids=[label for label, _, _ in MALFORMED_BLOCKS])
def test_a_malformed_block_is_refused_with_what_is_wrong(body: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        values.from_wire(body)


def test_a_well_formed_block_decodes(engine: sa.Engine) -> None:
    got = values.from_wire(block())
    assert [(item.key, item.at) for item in got] == [
        ("a", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)), ("b", None)]
    assert all(sa.inspect(item).detached for item in got)


def test_nesting_inside_tagged_values_is_bounded() -> None:
    value: Any = 1
    for _ in range(codec.MAX_NESTING + 5):
        value = {codec.TAG: "tuple", "v": [value]}
    with pytest.raises(ValueError, match="nest deeper"):
        values.from_wire(value)
