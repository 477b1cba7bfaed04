"""Unit tests of the typed-JSON wire codec (:mod:`session_proxy.wire.codec`).

Every value goes through ``to_wire`` -> ``json.dumps(allow_nan=False)`` ->
``json.loads`` -> ``from_wire``, exactly as it travels between client and
server, and must come back as the same type with the same value.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import ipaddress
import json
import math
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.sql.elements import quoted_name

from session_proxy.wire.codec import JSONParam, decode_rows, encode_rows, from_wire, to_wire

UTC = datetime.timezone.utc
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def wire(value: Any) -> Any:
    """The value after a full trip over the wire."""
    text = json.dumps(to_wire(value), allow_nan=False)
    return from_wire(json.loads(text))


# -- exact comparison ---------------------------------------------------------------


def _same_tz(a: datetime.tzinfo | None, b: datetime.tzinfo | None, probe: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, ZoneInfo) or isinstance(b, ZoneInfo):
        return type(a) is type(b) and a.key == b.key  # type: ignore[union-attr]
    return type(a) is type(b) and a.utcoffset(probe) == b.utcoffset(probe)


def assert_same(got: Any, expected: Any, path: str = "value") -> None:
    """Assert ``got`` is ``expected``: same types, values, zones and folds, recursively."""
    assert type(got) is type(expected), f"{path}: {type(got)} is not {type(expected)}"
    if isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(got), f"{path}: {got!r} is not nan"
        else:
            assert got == expected, f"{path}: {got!r} != {expected!r}"
            assert math.copysign(1.0, got) == math.copysign(1.0, expected), path
    elif isinstance(expected, Decimal):
        # str() tells NaN, -0 and trailing zeros apart; == does not.
        assert str(got) == str(expected), f"{path}: {got!r} != {expected!r}"
    elif isinstance(expected, datetime.datetime):
        assert got.replace(tzinfo=None) == expected.replace(tzinfo=None), (
            f"{path}: {got!r} != {expected!r}"
        )
        assert got.fold == expected.fold, f"{path}: fold {got.fold} != {expected.fold}"
        assert _same_tz(got.tzinfo, expected.tzinfo, expected), (
            f"{path}: tzinfo {got.tzinfo!r} != {expected.tzinfo!r}"
        )
    elif isinstance(expected, datetime.time):
        assert got.replace(tzinfo=None) == expected.replace(tzinfo=None), (
            f"{path}: {got!r} != {expected!r}"
        )
        assert got.fold == expected.fold, f"{path}: fold {got.fold} != {expected.fold}"
        assert _same_tz(got.tzinfo, expected.tzinfo, None), (
            f"{path}: tzinfo {got.tzinfo!r} != {expected.tzinfo!r}"
        )
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{path}: {got!r} != {expected!r}"
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{path}[{index}]")
    elif isinstance(expected, dict):
        assert len(got) == len(expected), f"{path}: {got!r} != {expected!r}"
        for index, ((gk, gv), (ek, ev)) in enumerate(
            zip(got.items(), expected.items(), strict=True)
        ):
            assert_same(gk, ek, f"{path}.key#{index}")
            assert_same(gv, ev, f"{path}[{ek!r}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def test_assert_same_catches_differences() -> None:
    """The comparison helper itself must be strict, or every test below is weak."""
    failing = [
        (1, 1.0),
        (0.0, -0.0),
        (Decimal("1.1"), Decimal("1.10")),
        ((1,), [1]),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        (
            datetime.datetime(2021, 1, 1, tzinfo=UTC),
            datetime.datetime(2021, 1, 1, 5, 30, tzinfo=IST),
        ),
        (
            datetime.datetime(2021, 1, 1, tzinfo=ZoneInfo("UTC")),
            datetime.datetime(2021, 1, 1, tzinfo=UTC),
        ),
        (
            datetime.datetime(2021, 11, 7, 1, 30, tzinfo=NEW_YORK),
            datetime.datetime(2021, 11, 7, 1, 30, tzinfo=NEW_YORK, fold=1),
        ),
        (datetime.time(1, tzinfo=UTC), datetime.time(1)),
    ]
    for got, expected in failing:
        with pytest.raises(AssertionError):
            assert_same(got, expected)


# -- exact round trips ------------------------------------------------------------

ROUND_TRIP = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**53,
    -(2**53),
    2**53 + 1,
    -(2**53) - 1,
    2**63 - 1,
    -(2**63),
    10**40,
    -(10**40),
    0.0,
    1.5,
    -2.25,
    0.1,
    1e308,
    5e-324,
    float("inf"),
    float("-inf"),
    "",
    "plain",
    "unicode: héllo wörld ✓ 日本語 \U0001f600 \x00 \u2028",
    '{"$t": "dec", "v": "1"}',
    b"",
    b"\x00\x01\xfe\xff",
    Decimal("1.10"),
    Decimal("0"),
    Decimal("-0"),
    Decimal("-0.000"),
    Decimal("1E+30"),
    Decimal("12345678901234567890.123456789012345678"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("NaN"),
    Decimal("sNaN"),
    datetime.date(2024, 2, 29),
    datetime.date(1, 1, 1),
    datetime.date(9999, 12, 31),
    datetime.time(0, 0),
    datetime.time(23, 59, 59, 999999),
    datetime.time(12, 30, 15, 123, tzinfo=IST),
    datetime.time(12, 30, tzinfo=UTC),
    datetime.time(12, 30, tzinfo=PARIS),
    datetime.datetime(2024, 2, 29, 13, 14, 15, 161718),
    datetime.datetime(2024, 2, 29, 13, 14, 15, 161718, tzinfo=UTC),
    datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=IST),
    datetime.datetime(2024, 7, 14, 13, 14, 15, 5, tzinfo=PARIS),
    datetime.datetime(2024, 1, 14, 13, 14, 15, tzinfo=PARIS),
    datetime.datetime(2021, 11, 7, 1, 30, tzinfo=NEW_YORK),
    datetime.datetime(2021, 11, 7, 1, 30, tzinfo=NEW_YORK, fold=1),
    datetime.datetime(2021, 11, 7, 1, 30, fold=1),
    datetime.datetime(1, 1, 1),
    datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime.timedelta(0),
    datetime.timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=7),
    datetime.timedelta(microseconds=1),
    datetime.timedelta(microseconds=-1),
    -datetime.timedelta(days=2, seconds=3, microseconds=4),
    datetime.timedelta.max,
    datetime.timedelta.min,
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    uuid.UUID(int=0),
    (),
    [],
    (1, "a", None),
    [1, "a", None],
    ((1, 2), [3, (4,)]),
    [(1, 2), [3, (4,)]],
    {},
    {"a": 1, "b": [1, 2, {"c": (3, Decimal("4.0"))}], "d": {"e": {"f": None}}},
    {1: "one", 2: "two"},
    {None: 0, True: 1, 2.5: "x", (1, 2): "tuple key", "s": "str key"},
    {datetime.date(2020, 1, 1): uuid.UUID(int=1)},
    {"$t": "dec", "v": "1.5"},
    {"$t": "not a tag", "v": 1},
    {"$t": {"$t": "nested"}},
    {"outer": {"$t": "int", "v": "1"}},
    [{"$t": "x"}, ({"$t": "y"},)],
    {"v": "1", "z": "Europe/Paris"},
    ipaddress.IPv4Address("192.0.2.1"),
    ipaddress.IPv6Address("2001:db8::1"),
    ipaddress.IPv4Interface("192.0.2.1/24"),
    ipaddress.IPv6Interface("2001:db8::1/64"),
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv6Network("2001:db8::/32"),
    JSONParam('{"a": [1, 2, null]}'),
    JSONParam('{"$t": "dec"}', binary=True),
    JSONParam("[]", binary=False),
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: f"{type(v).__name__}:{v!r:.40}")
def test_round_trip(value: Any) -> None:
    assert_same(wire(value), value)


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: f"{type(v).__name__}:{v!r:.40}")
def test_encoded_form_is_strict_json(value: Any) -> None:
    """``to_wire`` output serializes with allow_nan=False and is pure JSON types."""

    def check(node: Any) -> None:
        assert type(node) in (type(None), bool, int, float, str, list, dict), node
        if type(node) is int:
            assert -(2**53) <= node <= 2**53
        if type(node) is float:
            assert math.isfinite(node)
        if type(node) is list:
            for item in node:
                check(item)
        if type(node) is dict:
            for key, item in node.items():
                assert type(key) is str
                check(item)

    encoded = to_wire(value)
    check(encoded)
    json.dumps(encoded, allow_nan=False)


def test_nan() -> None:
    got = wire(float("nan"))
    assert type(got) is float
    assert math.isnan(got)


def test_infinities() -> None:
    assert wire(float("inf")) == math.inf
    assert wire(float("-inf")) == -math.inf


def test_negative_zero_keeps_its_sign() -> None:
    got = wire(-0.0)
    assert type(got) is float
    assert got == 0.0
    assert math.copysign(1.0, got) == -1.0
    assert math.copysign(1.0, wire(0.0)) == 1.0


@pytest.mark.parametrize("value", [2**53 + 1, -(2**63), 10**40, -(10**40) - 7])
def test_big_ints_are_exact(value: int) -> None:
    got = wire(value)
    assert type(got) is int
    assert got == value


@pytest.mark.parametrize(
    "value", [b"\x00abc\xff", bytearray(b"\x00abc\xff"), memoryview(b"\x00abc\xff")]
)
def test_binary_types_come_back_as_bytes(value: Any) -> None:
    got = wire(value)
    assert type(got) is bytes
    assert got == b"\x00abc\xff"


@pytest.mark.parametrize("text", ["1.10", "NaN", "-0", "1E+30", "0.000001", "-1234.5000"])
def test_decimal_keeps_exact_form(text: str) -> None:
    got = wire(Decimal(text))
    assert type(got) is Decimal
    assert str(got) == text


def test_decimal_never_comes_back_as_float() -> None:
    assert type(wire(Decimal("1.5"))) is Decimal
    assert type(wire(Decimal("0.1"))) is Decimal
    assert type(wire([Decimal("2")])[0]) is Decimal
    assert type(wire((Decimal("2"),))[0]) is Decimal
    assert type(wire({"a": Decimal("3")})["a"]) is Decimal
    assert type(wire({1: Decimal("3")})[1]) is Decimal


def test_aware_datetime_never_comes_back_naive() -> None:
    for tz in (UTC, IST, PARIS, NEW_YORK, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")):
        value = datetime.datetime(2022, 3, 27, 2, 30, tzinfo=tz)
        got = wire(value)
        assert got.tzinfo is not None
        assert got.utcoffset() == value.utcoffset()
        assert got == value


def test_zoneinfo_travels_by_key() -> None:
    value = datetime.datetime(2024, 7, 14, 12, 0, tzinfo=PARIS)
    got = wire(value)
    assert isinstance(got.tzinfo, ZoneInfo)
    assert got.tzinfo.key == "Europe/Paris"
    assert got.utcoffset() == datetime.timedelta(hours=2)
    # The zone, not just the offset, came back: winter time is +01:00 again.
    winter = got + datetime.timedelta(days=180)
    assert winter.utcoffset() == datetime.timedelta(hours=1)


def test_time_with_zoneinfo_travels_by_key() -> None:
    got = wire(datetime.time(8, 15, tzinfo=PARIS))
    assert isinstance(got.tzinfo, ZoneInfo)
    assert got.tzinfo.key == "Europe/Paris"


def test_fixed_offsets() -> None:
    got = wire(datetime.datetime(2024, 1, 1, 12, tzinfo=IST))
    assert got.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    got = wire(datetime.time(12, tzinfo=IST))
    assert got.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    got = wire(datetime.datetime(2024, 1, 1, 12, tzinfo=UTC))
    assert got.tzinfo == UTC
    assert got.utcoffset() == datetime.timedelta(0)


def test_fold_in_ambiguous_hour() -> None:
    first = datetime.datetime(2021, 11, 7, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert first.utcoffset() != second.utcoffset()
    got_first, got_second = wire(first), wire(second)
    assert (got_first.fold, got_second.fold) == (0, 1)
    assert got_first.utcoffset() == datetime.timedelta(hours=-4)
    assert got_second.utcoffset() == datetime.timedelta(hours=-5)
    assert got_first.tzinfo.key == got_second.tzinfo.key == "America/New_York"
    assert got_second.timestamp() - got_first.timestamp() == 3600


@pytest.mark.parametrize(
    "value",
    [
        datetime.timedelta(days=-1),
        datetime.timedelta(seconds=-1),
        datetime.timedelta(microseconds=-1),
        datetime.timedelta(days=1, microseconds=1),
        datetime.timedelta(days=-3, seconds=5, microseconds=999999),
    ],
)
def test_timedeltas(value: datetime.timedelta) -> None:
    got = wire(value)
    assert type(got) is datetime.timedelta
    assert got == value


def test_tuple_and_list_stay_distinct() -> None:
    got = wire([(1, 2), [1, 2], ((),), [[]]])
    assert type(got) is list
    assert type(got[0]) is tuple
    assert type(got[1]) is list
    assert type(got[2]) is tuple and type(got[2][0]) is tuple
    assert type(got[3]) is list and type(got[3][0]) is list
    assert type(wire((1,))) is tuple


def test_dict_with_tag_key_is_not_a_tagged_value() -> None:
    looks_tagged = {"$t": "dec", "v": "1.5"}
    got = wire(looks_tagged)
    assert type(got) is dict
    assert got == looks_tagged
    assert type(got["v"]) is str
    nested = {"doc": {"$t": "bytes", "v": "AAAA"}, "list": [{"$t": "uuid", "v": "x"}]}
    assert_same(wire(nested), nested)


def test_dict_with_non_string_keys() -> None:
    value = {1: "a", 2**60: "b", (1, "x"): "c", None: "d", Decimal("1.5"): "e"}
    got = wire(value)
    assert_same(got, value)
    assert list(got) == list(value)


@pytest.mark.parametrize(
    "value",
    [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::ffff:10.1.2.3"),
        ipaddress.ip_interface("10.1.2.3/8"),
        ipaddress.ip_interface("fe80::1/10"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fe80::/10"),
    ],
)
def test_ipaddress_types(value: Any) -> None:
    got = wire(value)
    assert type(got) is type(value)
    assert got == value
    assert str(got) == str(value)


def test_json_param() -> None:
    for param in (JSONParam('{"a": 1}'), JSONParam('{"a": 1}', binary=True)):
        got = wire(param)
        assert type(got) is JSONParam
        assert got.text == param.text
        assert got.binary is param.binary
    assert JSONParam("1") != JSONParam("1", binary=True)


def test_encode_decode_row() -> None:
    row = (
        1,
        2**60,
        "s",
        None,
        True,
        1.5,
        float("nan"),
        Decimal("1.10"),
        b"\x00",
        datetime.datetime(2024, 1, 1, tzinfo=PARIS),
        {"$t": 1},
        [1, (2,)],
    )
    rows, tagged = encode_rows([row])
    encoded = json.loads(json.dumps(rows, allow_nan=False))
    (got,) = decode_rows(encoded, tagged)
    assert type(got) is tuple
    assert_same(list(got), list(row))
    # Only the columns holding values that are not plain JSON are tagged.
    assert tagged == [1, 6, 7, 8, 9, 10, 11]


def test_plain_page_is_sent_untouched() -> None:
    rows = [(1, "a", 1.5, None, True), (2, None, -0.0, "x", False)]
    encoded, tagged = encode_rows(rows)
    assert tagged is None and encoded is rows
    assert decode_rows(json.loads(json.dumps(encoded)), tagged) == rows


# -- subclasses of str / int / float travel as their base type -------------------------


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2**60
    LOW = 1


class LoudFloat(float):
    def __repr__(self) -> str:
        return f"LoudFloat({float(self)!r})"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (quoted_name("Name", True), "Name"),
        (Color.RED, "red"),
        (Level.HIGH, 2**60),
        (Level.LOW, 1),
        (LoudFloat(1.5), 1.5),
        (LoudFloat("inf"), math.inf),
    ],
    ids=["quoted_name", "str-enum", "big-int-enum", "small-int-enum", "float-sub", "inf-sub"],
)
def test_subclasses_travel_as_base_type(value: Any, expected: Any) -> None:
    got = wire(value)
    assert_same(got, expected)


def test_float_subclass_nan_travels_as_nan() -> None:
    got = wire(LoudFloat("nan"))
    assert type(got) is float
    assert math.isnan(got)


# -- errors -----------------------------------------------------------------------


class Custom:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (object(), "object"),
        ({1, 2}, "set"),
        (frozenset({1}), "frozenset"),
        (Custom(), "Custom"),
        ([1, {"a": Custom()}], "Custom"),
        ({"k": (1, {2})}, "set"),
        ({Custom(): 1}, "Custom"),
        (1 + 2j, "complex"),
    ],
)
def test_to_wire_rejects_unknown_types(value: Any, name: str) -> None:
    with pytest.raises(TypeError) as info:
        to_wire(value)
    assert name in str(info.value)


def test_to_wire_rejects_datetime_with_offsetless_tzinfo() -> None:
    class NoOffset(datetime.tzinfo):
        def utcoffset(self, dt: Any) -> None:
            return None

    with pytest.raises(TypeError, match="NoOffset"):
        to_wire(datetime.datetime(2024, 1, 1, tzinfo=NoOffset()))
    with pytest.raises(TypeError, match="NoOffset"):
        to_wire(datetime.time(1, tzinfo=NoOffset()))


@pytest.mark.parametrize(
    "value",
    [
        {"$t": "nope", "v": 1},
        {"$t": "", "v": 1},
        {"$t": 1, "v": 1},
        {"$t": True},
    ],
)
def test_from_wire_rejects_unknown_tags(value: Any) -> None:
    with pytest.raises(ValueError, match="unknown value tag"):
        from_wire(value)


@pytest.mark.parametrize(
    "value",
    [
        {"$t": "dec", "v": "abc"},
        {"$t": "dec"},
        {"$t": "float", "v": "1.5"},
        {"$t": "float", "v": "NaN"},
        {"$t": "float", "v": 1.5},
        {"$t": "bytes", "v": "!!"},
        {"$t": "bytes", "v": "AAA"},
        {"$t": "bytes", "v": 5},
        {"$t": "int", "v": "abc"},
        {"$t": "date", "v": "2024-02-30"},
        {"$t": "time", "v": "25:00"},
        {"$t": "dt", "v": "yesterday"},
        {"$t": "dt", "v": "2024-01-01T00:00", "z": "No/Such_Zone"},
        {"$t": "dt", "v": "2024-01-01T00:00", "z": "../../etc/passwd"},
        {"$t": "dt", "v": "2024-01-01T00:00", "z": 5},
        {"$t": "td", "v": [1, 2]},
        {"$t": "td", "v": "1 day"},
        {"$t": "td", "v": [10**12, 0, 0]},
        {"$t": "uuid", "v": "not-a-uuid"},
        {"$t": "tuple", "v": 5},
        {"$t": "tuple", "v": [{"$t": "nope"}]},
        {"$t": "dict", "v": [[1]]},
        {"$t": "dict", "v": [[[1], 2]]},
        {"$t": "dict", "v": 3},
        {"$t": "ip4", "v": "1.2.3"},
        {"$t": "ip6", "v": "1.2.3.4"},
        {"$t": "net4", "v": "10.0.0.1/8"},
        [1, {"$t": "dec", "v": "x"}],
        {"outer": {"$t": "uuid", "v": 1}},
        {"$t": ["dec"], "v": "1"},
        {"$t": {"a": 1}, "v": "1"},
    ],
)
def test_from_wire_rejects_malformed_values(value: Any) -> None:
    with pytest.raises(ValueError):
        from_wire(value)


# -- property test ----------------------------------------------------------------

_MAX_OFFSET = datetime.timedelta(hours=24) - datetime.timedelta(microseconds=1)
fixed_offsets = st.builds(
    datetime.timezone, st.timedeltas(min_value=-_MAX_OFFSET, max_value=_MAX_OFFSET)
)
any_tz = st.one_of(st.none(), st.just(UTC), fixed_offsets, st.timezones())

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False),
    st.sampled_from([Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN")]),
    st.dates(),
    st.times(timezones=any_tz),
    st.datetimes(timezones=any_tz),
    st.timedeltas(),
    st.uuids(),
)

values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=5), children, max_size=5),
        st.dictionaries(st.integers(), children, max_size=5),
        st.dictionaries(st.sampled_from(["$t", "v", "z"]), children, max_size=3),
    ),
    max_leaves=20,
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(values)
def test_property_round_trip(value: Any) -> None:
    assert_same(wire(value), value)


@settings(max_examples=100, deadline=None, database=None)
@given(st.datetimes(timezones=st.timezones()))
def test_property_zoneinfo_datetime_keeps_key_fold_and_instant(
    value: datetime.datetime,
) -> None:
    got = wire(value)
    assert got.tzinfo.key == value.tzinfo.key
    assert got.fold == value.fold
    assert got.utcoffset() == value.utcoffset()


def test_decimal_context_does_not_round() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        value = Decimal("3.14159265358979323846264338327950288")
        got = wire(value)
    assert str(got) == str(value)
