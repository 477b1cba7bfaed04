"""Typed JSON: the value codec shared by client and server.

Every value that crosses the wire (statement parameters, result rows, error
arguments) goes through :func:`to_wire` before it is serialized and through
:func:`from_wire` after it is parsed.  Values JSON represents exactly
(``None``, ``bool``, ``str``, ints within +/-2**53, finite floats, lists and
string-keyed dicts) are sent as themselves.  Everything else is sent as a
tagged object ``{"$t": TAG, "v": ...}``, so it comes back as the same type:

=============  ======================================================
tag            Python value
=============  ======================================================
``int``        int beyond 2**53, as a decimal string
``float``      ``nan``, ``inf``, ``-inf``
``bytes``      bytes, bytearray, memoryview (base64)
``dec``        :class:`decimal.Decimal` (its exact string form)
``date``       :class:`datetime.date`
``time``       :class:`datetime.time`, naive or with an offset / zone
``dt``         :class:`datetime.datetime`, naive or with an offset / zone
``td``         :class:`datetime.timedelta` (days, seconds, microseconds)
``uuid``       :class:`uuid.UUID`
``tuple``      tuple (a plain list stays a list)
``dict``       a dict that has non-string keys or a ``"$t"`` key
``ip4``...     :mod:`ipaddress` addresses, interfaces and networks
``json``       :class:`JSONParam`, a JSON document bound as JSON/JSONB
=============  ======================================================

A time zone from :mod:`zoneinfo` travels by name (``"z"``), so an aware
datetime never comes back naive and never loses its zone.  A value of any other
type raises :class:`TypeError` naming the type before anything is sent.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import ipaddress
import math
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["ENCODED_TYPES", "JSONParam", "from_wire", "plain_column", "to_wire"]

TAG = "$t"
_SAFE_INT = 2**53


class JSONParam:
    """A JSON document bound to a ``JSON`` / ``JSONB`` parameter.

    ``text`` is the already-serialized document; ``binary`` says JSONB.  The
    server hands it to its driver's own JSON adapter, so the statement binds
    exactly as it would have with the driver in-process.
    """

    __slots__ = ("text", "binary")

    def __init__(self, text: str, binary: bool = False) -> None:
        self.text = text
        self.binary = binary

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, JSONParam)
            and other.text == self.text
            and other.binary == self.binary
        )

    def __repr__(self) -> str:
        kind = "JSONB" if self.binary else "JSON"
        return f"JSONParam({self.text!r}, {kind})"


def _encode_tz(value: datetime.datetime | datetime.time, body: dict) -> dict:
    tz = value.tzinfo
    if isinstance(tz, ZoneInfo) and tz.key:
        body["z"] = tz.key
    if value.fold:
        body["fold"] = 1
    return body


def _encode_datetime(value: datetime.datetime) -> dict:
    tz = value.tzinfo
    if isinstance(tz, ZoneInfo) and tz.key:
        naive = value.replace(tzinfo=None, fold=0)
        return _encode_tz(value, {TAG: "dt", "v": naive.isoformat()})
    if tz is not None and not isinstance(tz, datetime.timezone):
        offset = value.utcoffset()
        if offset is None:
            raise TypeError(
                f"cannot encode datetime with tzinfo {type(tz).__name__} "
                "that reports no UTC offset"
            )
        value = value.replace(tzinfo=datetime.timezone(offset))
    return _encode_tz(value, {TAG: "dt", "v": value.isoformat()})


def _encode_time(value: datetime.time) -> dict:
    tz = value.tzinfo
    if isinstance(tz, ZoneInfo) and tz.key:
        return _encode_tz(value, {TAG: "time", "v": value.replace(tzinfo=None).isoformat()})
    if tz is not None and not isinstance(tz, datetime.timezone):
        offset = value.utcoffset()
        if offset is None:
            raise TypeError(
                f"cannot encode time with tzinfo {type(tz).__name__} "
                "that reports no UTC offset"
            )
        value = value.replace(tzinfo=datetime.timezone(offset))
    return _encode_tz(value, {TAG: "time", "v": value.isoformat()})


def _encode_int(value: int) -> Any:
    if -_SAFE_INT <= value <= _SAFE_INT:
        return value
    try:
        return {TAG: "int", "v": str(value)}
    except ValueError as exc:  # beyond sys.get_int_max_str_digits()
        raise TypeError(f"session-proxy cannot send this int: {exc}") from None


def _encode_float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {TAG: "float", "v": repr(value)}


def _encode_bytes(value: bytes | bytearray | memoryview) -> dict:
    return {TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}


def _encode_dict(value: dict) -> Any:
    if TAG in value or not all(type(key) is str for key in value):
        return {TAG: "dict", "v": [[to_wire(k), to_wire(v)] for k, v in value.items()]}
    return {key: to_wire(item) for key, item in value.items()}


def _encode_timedelta(value: datetime.timedelta) -> dict:
    return {TAG: "td", "v": [value.days, value.seconds, value.microseconds]}


def _encode_json_param(value: JSONParam) -> dict:
    return {TAG: "json", "v": value.text, "b": value.binary}


def _encode_ip(tag: str) -> Callable[[Any], dict]:
    def encode(value: Any) -> dict:
        return {TAG: tag, "v": str(value)}

    return encode


_PLAIN = (str, bool, type(None))

_ENCODERS: dict[type, Callable[[Any], Any]] = {
    # Subclasses of str (SQLAlchemy's quoted_name, str enums) travel as str.
    str: str.__str__,
    int: lambda v: _encode_int(int(v)),
    float: lambda v: _encode_float(float(v)),
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
    memoryview: _encode_bytes,
    decimal.Decimal: lambda v: {TAG: "dec", "v": str(v)},
    datetime.datetime: _encode_datetime,
    datetime.date: lambda v: {TAG: "date", "v": v.isoformat()},
    datetime.time: _encode_time,
    datetime.timedelta: _encode_timedelta,
    uuid.UUID: lambda v: {TAG: "uuid", "v": str(v)},
    list: lambda v: [to_wire(item) for item in v],
    tuple: lambda v: {TAG: "tuple", "v": [to_wire(item) for item in v]},
    dict: _encode_dict,
    JSONParam: _encode_json_param,
    ipaddress.IPv4Address: _encode_ip("ip4"),
    ipaddress.IPv6Address: _encode_ip("ip6"),
    ipaddress.IPv4Interface: _encode_ip("if4"),
    ipaddress.IPv6Interface: _encode_ip("if6"),
    ipaddress.IPv4Network: _encode_ip("net4"),
    ipaddress.IPv6Network: _encode_ip("net6"),
}


#: The exact types :func:`to_wire` encodes (subclasses are found through their bases).
ENCODED_TYPES: frozenset[type] = frozenset(_ENCODERS)


def _encoder_for(kind: type) -> Callable[[Any], Any] | None:
    for base in kind.__mro__:
        encoder = _ENCODERS.get(base)
        if encoder is not None:
            return encoder
    return None


def to_wire(value: Any) -> Any:
    """Turn ``value`` into a structure ``json.dumps`` can write exactly.

    Raises :class:`TypeError` naming the type of a value the codec cannot
    represent.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    encoder = _ENCODERS.get(kind) or _encoder_for(kind)
    if encoder is None:
        raise TypeError(
            f"session-proxy cannot send a value of type "
            f"{kind.__module__}.{kind.__qualname__}: {value!r:.80}"
        )
    return encoder(value)


def _decode_tz(body: dict, value: Any) -> Any:
    zone = body.get("z")
    if zone is not None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    if body.get("fold"):
        value = value.replace(fold=1)
    return value


def _decode_float(body: dict) -> float:
    text = _text(body)
    if text not in ("nan", "inf", "-inf"):
        raise ValueError(f"bad float value {text!r}")
    return float(text)


def _text(body: dict) -> str:
    value = body["v"]
    if type(value) is not str:
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _decode_timedelta(body: dict) -> datetime.timedelta:
    parts = body["v"]
    if type(parts) is not list or len(parts) != 3 or any(type(p) is not int for p in parts):
        raise ValueError("expected [days, seconds, microseconds] integers")
    return datetime.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])


def _decode_json(body: dict) -> JSONParam:
    return JSONParam(_text(body), bool(body.get("b")))


_DECODERS: dict[str, Callable[[dict], Any]] = {
    "int": lambda b: int(_text(b)),
    "float": _decode_float,
    "bytes": lambda b: base64.b64decode(_text(b), validate=True),
    "dec": lambda b: decimal.Decimal(_text(b)),
    "date": lambda b: datetime.date.fromisoformat(_text(b)),
    "time": lambda b: _decode_tz(b, datetime.time.fromisoformat(_text(b))),
    "dt": lambda b: _decode_tz(b, datetime.datetime.fromisoformat(_text(b))),
    "td": _decode_timedelta,
    "uuid": lambda b: uuid.UUID(_text(b)),
    "tuple": lambda b: tuple(from_wire(item) for item in b["v"]),
    "dict": lambda b: {from_wire(k): from_wire(v) for k, v in b["v"]},
    "json": _decode_json,
    "ip4": lambda b: ipaddress.IPv4Address(_text(b)),
    "ip6": lambda b: ipaddress.IPv6Address(_text(b)),
    "if4": lambda b: ipaddress.IPv4Interface(_text(b)),
    "if6": lambda b: ipaddress.IPv6Interface(_text(b)),
    "net4": lambda b: ipaddress.IPv4Network(_text(b)),
    "net6": lambda b: ipaddress.IPv6Network(_text(b)),
}


#: Deepest nesting of lists and objects :func:`from_wire` accepts.
MAX_NESTING = 64


def from_wire(value: Any, _depth: int = 0) -> Any:
    """Rebuild the Python value that :func:`to_wire` encoded.

    Raises :class:`ValueError` on a malformed or unknown tagged value, or on
    lists and objects nested deeper than :data:`MAX_NESTING`.
    """
    kind = type(value)
    if kind is list or (kind is dict and TAG not in value):
        if _depth >= MAX_NESTING:
            raise ValueError(f"values nest deeper than {MAX_NESTING} levels")
        if kind is list:
            return [from_wire(item, _depth + 1) for item in value]
        return {key: from_wire(item, _depth + 1) for key, item in value.items()}
    if kind is not dict:
        return value
    tag = value[TAG]
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        if tag in ("dill", "pickle"):
            raise ValueError(f"pickled ({tag}) values are never accepted as statement values")
        raise ValueError(f"unknown value tag {tag!r}")
    try:
        return decoder(value)
    except (
        KeyError,
        TypeError,
        IndexError,
        ValueError,
        AttributeError,
        ArithmeticError,
    ) as exc:
        raise ValueError(f"malformed {tag!r} value: {exc}") from None


_PLAIN_KINDS = frozenset({str, bool, int, float, type(None)})


def plain_column(column: tuple) -> bool:
    """Whether every value of a result column is sent as itself."""
    kinds = set(map(type, column))
    if not kinds <= _PLAIN_KINDS:
        return False
    if int in kinds:
        ints = column if kinds == {int} else [v for v in column if type(v) is int]
        if max(ints) > _SAFE_INT or min(ints) < -_SAFE_INT:
            return False
    if float in kinds:
        floats = column if kinds == {float} else [v for v in column if type(v) is float]
        if not all(map(math.isfinite, floats)):
            return False
    return True


def encode_rows(rows: list) -> tuple[list, list[int] | None]:
    """Encode a page of result rows column by column.

    Returns the rows and the indexes of the columns that hold tagged values
    (``None`` when every value travels as itself, the common case, which
    costs a few C-level passes over each column and no per-row work).
    """
    if not rows:
        return [], None
    columns = zip(*rows, strict=True)
    tagged = [i for i, column in enumerate(columns) if not plain_column(column)]
    if not tagged:
        return rows if type(rows) is list else list(rows), None
    encoded = []
    for row in rows:
        row = list(row)
        for i in tagged:
            row[i] = to_wire(row[i])
        encoded.append(row)
    return encoded, tagged


def decode_rows(rows: list, tagged: list[int] | None) -> list[tuple]:
    """Rebuild the rows :func:`encode_rows` encoded, as tuples."""
    if not tagged:
        return list(map(tuple, rows))
    for row in rows:
        for i in tagged:
            row[i] = from_wire(row[i])
    return list(map(tuple, rows))


try:  # orjson, when installed, encodes and parses several times faster
    import orjson as _orjson

    def dumps(value: Any) -> bytes:
        """Serialize a message (values already passed through :func:`to_wire`)."""
        # Parameter names may be str subclasses (SQLAlchemy's quoted_name).
        return _orjson.dumps(value, option=_orjson.OPT_NON_STR_KEYS)

    def loads(data: bytes | str) -> Any:
        """Parse a message; raises ValueError on malformed JSON."""
        return _orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a declared dependency
    import json as _json

    def dumps(value: Any) -> bytes:
        """Serialize a message (values already passed through :func:`to_wire`)."""
        return _json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    def loads(data: bytes | str) -> Any:
        """Parse a message; raises ValueError on malformed JSON."""
        return _json.loads(data)
