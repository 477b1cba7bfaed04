"""Every codec-relevant type through a real column, direct and through the proxy.

Each test runs for backend {sqlite, postgresql, mysql} x mode {direct, proxy}.
Rows are written and read through ``engine`` and read again through
``direct_engine``; what ``engine`` returns must be exactly what the direct
engine returns (same Python types, same values, same time zones), and equal to
what was inserted wherever the backend stores the value losslessly.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import math
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from tests.client.test_codec import assert_same

TABLE = "sp_types"

UTC = datetime.timezone.utc
PARIS = ZoneInfo("Europe/Paris")
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))

JSON_DOC = {
    "$t": "dec",
    "v": "1.5",
    "list": [1, 2.5, None, True, False, "x", {"$t": "bytes"}],
    "nested": {"a": {"b": [[], {}]}, "big": 2**60, "neg": -(2**53) - 1},
    "unicode": "héllo ✓ 日本 \U0001f600",
}


def _mysql_fsp(kind: type) -> Any:
    """DATETIME/TIME with microseconds on MySQL (its default precision is seconds)."""
    return kind(fsp=6)


def build_table(backend: str) -> sa.Table:
    metadata = sa.MetaData()
    columns = [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("i", sa.Integer),
        sa.Column("bi", sa.BigInteger),
        sa.Column("f", sa.Float),
        sa.Column("dbl", sa.Double),
        sa.Column("n", sa.Numeric(20, 6, asdecimal=True)),
        sa.Column("s", sa.String(200)),
        sa.Column("t", sa.Text),
        sa.Column("b", sa.LargeBinary),
        sa.Column("bo", sa.Boolean),
        sa.Column("d", sa.Date),
        sa.Column("tm", sa.Time().with_variant(_mysql_fsp(mysql.TIME), "mysql")),
        sa.Column("dt", sa.DateTime().with_variant(_mysql_fsp(mysql.DATETIME), "mysql")),
        sa.Column(
            "dtz",
            sa.DateTime(timezone=True).with_variant(_mysql_fsp(mysql.DATETIME), "mysql"),
        ),
        sa.Column("iv", sa.Interval),
        sa.Column("u", sa.Uuid),
        sa.Column("j", sa.JSON),
    ]
    if backend == "postgresql":
        columns += [
            sa.Column("jb", postgresql.JSONB),
            sa.Column("arr", postgresql.ARRAY(sa.Integer)),
            sa.Column("inet", postgresql.INET),
            sa.Column("tstz", postgresql.TIMESTAMP(timezone=True)),
            sa.Column("ttz", postgresql.TIME(timezone=True)),
            sa.Column("cidr", postgresql.CIDR),
        ]
    return sa.Table(TABLE, metadata, *columns, mysql_charset="utf8mb4")


def rows_for(backend: str) -> list[dict[str, Any]]:
    """Rows to insert: typical values, edge values, (PostgreSQL) non-finite, all NULL."""
    typical = {
        "id": 1,
        "i": -123456,
        "bi": 2**62 + 1,
        "f": 1.5,
        "dbl": 1 / 3,
        "n": Decimal("12345678901234.123456"),
        "s": "héllo wörld ✓ 日本語",
        "t": "line 1\nline 2\ttab 'quote' \"dq\" \\ back ✓ " + "x" * 5000,
        "b": b"\x00\x01binary\xfe\xff",
        "bo": True,
        "d": datetime.date(2024, 2, 29),
        "tm": datetime.time(13, 14, 15, 161718),
        "dt": datetime.datetime(2024, 2, 29, 13, 14, 15, 161718),
        "dtz": datetime.datetime(2024, 7, 14, 13, 14, 15, 161718, tzinfo=PARIS),
        "iv": datetime.timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=7),
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "j": JSON_DOC,
    }
    edge = {
        "id": 2,
        "i": -(2**31),
        "bi": -(2**63),
        "f": -2.25,
        "dbl": -0.0 if backend == "postgresql" else 1e300,
        "n": Decimal("-0.000001"),
        "s": "",
        "t": "",
        "b": b"",
        "bo": False,
        "d": datetime.date(1, 1, 1) if backend != "mysql" else datetime.date(1000, 1, 1),
        "tm": datetime.time(0, 0),
        "dt": datetime.datetime(1999, 12, 31, 23, 59, 59),
        "dtz": datetime.datetime(2021, 11, 7, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1),
        "iv": -datetime.timedelta(hours=1, seconds=1),
        "u": uuid.UUID(int=0),
        "j": [1, "two", {"$t": "tuple", "v": [1]}],
    }
    if backend == "postgresql":
        typical.update(
            jb=JSON_DOC,
            arr=[1, -2, 2**31 - 1],
            inet=ipaddress.ip_interface("192.0.2.1/24"),
            tstz=datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=IST),
            ttz=datetime.time(13, 14, 15, 161718, tzinfo=IST),
            cidr=ipaddress.ip_network("10.0.0.0/8"),
        )
        edge.update(
            jb=[{"$t": "dict", "v": []}],
            arr=[],
            inet=ipaddress.ip_address("2001:db8::1"),
            tstz=datetime.datetime(2024, 7, 14, 12, tzinfo=PARIS),
            ttz=datetime.time(0, 0, tzinfo=UTC),
            cidr=ipaddress.ip_network("2001:db8::/32"),
        )
    rows = [typical, edge]
    if backend == "postgresql":
        rows += [
            {"id": 3, "f": math.nan, "dbl": math.inf, "n": Decimal("NaN")},
            {"id": 4, "f": -math.inf, "dbl": math.nan},
        ]
    rows.append({"id": 9})  # every column NULL
    names = list(typical)
    return [{name: row.get(name) for name in names} for row in rows]


# Columns whose stored value is not the inserted one on that backend; for these
# only "proxy returns exactly what direct returns" is checked.
LOSSY = {
    # SQLite stores NUMERIC as a double: 20 significant digits do not fit.
    ("sqlite", "n"),
    # No time zone storage: the aware value comes back naive.
    ("sqlite", "dtz"),
    ("mysql", "dtz"),
    # PostgreSQL returns timestamptz in the session zone (an equal instant),
    # checked separately below.
    ("postgresql", "dtz"),
    ("postgresql", "tstz"),
    # sa.Interval is a DATETIME (no fractional seconds) on MySQL.
    ("mysql", "iv"),
}


@pytest.fixture
def table(backend: str, direct_engine: sa.Engine) -> Any:
    tbl = build_table(backend)
    tbl.metadata.drop_all(direct_engine)
    tbl.metadata.create_all(direct_engine)
    yield tbl
    tbl.metadata.drop_all(direct_engine)


def _read(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(table.c.id))]


def _compare(got: list[tuple], expected: list[tuple], names: list[str]) -> None:
    assert len(got) == len(expected)
    for got_row, expected_row in zip(got, expected, strict=True):
        for name, g, e in zip(names, got_row, expected_row, strict=True):
            assert_same(g, e, f"row id={expected_row[0]} column {name!r}")


@pytest.fixture
def inserted(engine: sa.Engine, table: sa.Table, backend: str) -> list[dict[str, Any]]:
    rows = rows_for(backend)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return rows


def test_values_and_types_match_direct(
    engine: sa.Engine,
    direct_engine: sa.Engine,
    table: sa.Table,
    inserted: list[dict[str, Any]],
    backend: str,
) -> None:
    names = [c.name for c in table.columns]
    through_engine = _read(engine, table)
    through_direct = _read(direct_engine, table)
    _compare(through_engine, through_direct, names)

    for row, values in zip(through_engine, inserted, strict=True):
        for name, got in zip(names, row, strict=True):
            expected = values[name]
            if (backend, name) in LOSSY:
                continue
            if name == "jb":
                # JSONB keeps no key order.
                assert got == expected, (name, got, expected)
                continue
            if isinstance(expected, float) and math.isnan(expected):
                assert type(got) is float and math.isnan(got), (name, got)
                continue
            assert_same(got, expected, f"row id={values['id']} column {name!r}")


def test_single_row_insert_and_scalar_reads(
    engine: sa.Engine, direct_engine: sa.Engine, table: sa.Table, backend: str
) -> None:
    """``insert().values(...)`` (execute, not executemany) and one-column selects."""
    (row,) = [r for r in rows_for(backend) if r["id"] == 1]
    with engine.begin() as conn:
        conn.execute(table.insert().values(**row))
    for column in table.columns:
        query = sa.select(column).where(table.c.id == 1)
        with engine.connect() as conn:
            got = conn.execute(query).scalar_one()
        with direct_engine.connect() as conn:
            expected = conn.execute(query).scalar_one()
        assert_same(got, expected, f"column {column.name!r}")


def test_aware_datetimes(
    engine: sa.Engine, table: sa.Table, inserted: list[dict[str, Any]], backend: str
) -> None:
    with engine.connect() as conn:
        got = conn.execute(sa.select(table.c.dtz).order_by(table.c.id)).scalars().all()
    if backend == "postgresql":
        for value, row in zip(got, inserted, strict=True):
            if row["dtz"] is None:
                assert value is None
                continue
            assert value.tzinfo is not None, value
            assert value.utcoffset() is not None
            # Same instant (``==`` across zones is False for a fold=1 value).
            assert value.astimezone(UTC) == row["dtz"].astimezone(UTC)
        with engine.connect() as conn:
            tstz = conn.execute(sa.select(table.c.tstz).where(table.c.id == 1)).scalar_one()
        assert tstz.tzinfo is not None
        assert tstz.astimezone(UTC) == inserted[0]["tstz"].astimezone(UTC)
    else:
        # No time zone storage: the wall-clock time comes back, naive.
        assert got[0] == inserted[0]["dtz"].replace(tzinfo=None)
        assert got[0].tzinfo is None


def test_proxy_reads_rows_written_directly(
    proxy_engine: sa.Engine, direct_engine: sa.Engine, table: sa.Table, backend: str
) -> None:
    with direct_engine.begin() as conn:
        conn.execute(table.insert(), rows_for(backend))
    names = [c.name for c in table.columns]
    _compare(_read(proxy_engine, table), _read(direct_engine, table), names)


def test_postgresql_inet(
    engine: sa.Engine, table: sa.Table, inserted: list[dict[str, Any]], backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL INET")
    with engine.connect() as conn:
        got = conn.execute(sa.select(table.c.inet).order_by(table.c.id)).scalars().all()
    assert got[0] == ipaddress.ip_interface("192.0.2.1/24")
    assert type(got[0]) is ipaddress.IPv4Interface
    assert got[1] == ipaddress.ip_address("2001:db8::1")
    assert type(got[1]) is ipaddress.IPv6Address


# Columns that cannot be compared with "=" on that backend.
NOT_COMPARABLE = {"j"}


def _bind_values(
    direct_engine: sa.Engine, table: sa.Table, row: dict[str, Any], backend: str
) -> dict[str, Any]:
    """The inserted values, or what the backend stored where it changes them."""
    with direct_engine.connect() as conn:
        stored = conn.execute(sa.select(table).where(table.c.id == row["id"])).one()._mapping
    return {
        name: stored[name] if (backend, name) in LOSSY else value for name, value in row.items()
    }


def test_where_binds_each_type(
    engine: sa.Engine,
    direct_engine: sa.Engine,
    table: sa.Table,
    inserted: list[dict[str, Any]],
    backend: str,
) -> None:
    """``WHERE column = :value`` finds the row, for every column type, in both modes."""
    found: dict[str, list[int]] = {}
    found_direct: dict[str, list[int]] = {}
    expected: dict[str, list[int]] = {}
    typical = _bind_values(direct_engine, table, inserted[0], backend)
    for column in table.columns:
        if column.name in NOT_COMPARABLE:
            continue
        query = sa.select(table.c.id).where(column == typical[column.name]).order_by(table.c.id)
        with engine.connect() as conn:
            found[column.name] = list(conn.execute(query).scalars())
        with direct_engine.connect() as conn:
            found_direct[column.name] = list(conn.execute(query).scalars())
        expected[column.name] = [1]
    assert found == found_direct
    assert found == expected


def test_where_binds_edge_values(
    engine: sa.Engine,
    direct_engine: sa.Engine,
    table: sa.Table,
    inserted: list[dict[str, Any]],
    backend: str,
) -> None:
    found: dict[str, list[int]] = {}
    found_direct: dict[str, list[int]] = {}
    edge = _bind_values(direct_engine, table, inserted[1], backend)
    for column in table.columns:
        if column.name in NOT_COMPARABLE or column.name == "id":
            continue
        query = sa.select(table.c.id).where(column == edge[column.name]).order_by(table.c.id)
        with engine.connect() as conn:
            found[column.name] = list(conn.execute(query).scalars())
        with direct_engine.connect() as conn:
            found_direct[column.name] = list(conn.execute(query).scalars())
    assert found == found_direct
    assert all(2 in ids for ids in found.values()), found


def test_where_in_and_null(
    engine: sa.Engine, table: sa.Table, inserted: list[dict[str, Any]]
) -> None:
    typical, edge = inserted[0], inserted[1]
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(table.c.id)
                .where(table.c.u.in_([typical["u"], edge["u"]]))
                .where(table.c.bi.in_([typical["bi"], edge["bi"]]))
                .where(table.c.n.in_([typical["n"], edge["n"]]))
                .order_by(table.c.id)
            )
            .scalars()
            .all()
        )
        null_ids = (
            conn.execute(
                sa.select(table.c.id).where(table.c.dt.is_(None)).where(table.c.b.is_(None))
            )
            .scalars()
            .all()
        )
    assert ids == [1, 2]
    assert 9 in null_ids


def test_returning(
    engine: sa.Engine, direct_engine: sa.Engine, table: sa.Table, backend: str
) -> None:
    if not engine.dialect.insert_returning:
        pytest.skip(f"{backend} has no INSERT ... RETURNING here")
    rows = [r for r in rows_for(backend) if r["id"] in (1, 2)]
    with engine.begin() as conn:
        returned = [
            tuple(conn.execute(table.insert().values(**row).returning(*table.columns)).one())
            for row in rows
        ]
    names = [c.name for c in table.columns]
    _compare(returned, _read(direct_engine, table), names)


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2**62 + 1


def test_str_and_int_subclass_parameters_bind_like_direct(
    engine: sa.Engine, direct_engine: sa.Engine, table: sa.Table
) -> None:
    """A str-mixin Enum member or an IntEnum member bound to a plain column.

    The driver decides what such a value stores (pymysql writes ``str(value)``,
    psycopg and sqlite3 write the string content), so the row written through
    ``engine`` must hold exactly what the same row written directly holds.
    """
    row = {"s": Color.RED, "t": Color.RED, "bi": Level.HIGH}
    with direct_engine.begin() as conn:
        conn.execute(table.insert().values(id=1, **row))
    with engine.begin() as conn:
        conn.execute(table.insert().values(id=2, **row))
    query = sa.select(table.c.s, table.c.t, table.c.bi).order_by(table.c.id)
    with direct_engine.connect() as conn:
        written_directly, written_by_engine = [tuple(r) for r in conn.execute(query)]
    assert_same(written_by_engine, written_directly)
    assert written_directly[2] == 2**62 + 1
