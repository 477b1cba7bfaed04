"""Arguments, results and exceptions of logical operations on the wire.

The half of the logical API's value encoding both sides share (the client's
:mod:`session_proxy.values` adds rebuilding exceptions as the client's own
classes).  Builds on :mod:`.codec` with two things only the logical API
needs:

- **ORM instances** travel as ``{"$t": "orm", "cls": "module:Class", "v":
  {column attribute: value}}`` and come back as *detached* instances of the
  same mapped class, their column attributes loaded and nothing else.  An
  unloaded relationship raises
  :class:`sqlalchemy.orm.exc.DetachedInstanceError` when touched, never a
  silent empty list.  A class is looked up among the mapped classes this
  process has already imported; a name never causes an import
  (:mod:`.instances` keeps what it found per class).
- **A list of instances** of one class with the same loaded columns (an
  operation's query result) travels as one block, ``{"$t": "orms", "cls":
  ..., "cols": [names], "rows": [[values]], "tagged": [indexes], "dt":
  [[index, zone name or null]]}``, encoded column by column as the proxy's result rows are: a
  column of strings, small ints, floats, booleans and nulls costs no
  per-value work, a column of datetimes (naive, with fixed offsets, or all
  in one zone, whose name is sent once) travels as ISO text, and only the
  other columns tag each value.  It decodes to the same list of detached
  instances as the items sent one by one.
- **Exceptions** travel as their type name, message and args
  (:func:`encode_exception`); :func:`known_exception_class` finds the class
  a name stands for among builtins, SQLAlchemy's exceptions and classes
  registered with :func:`register_exception`.

Pickles are off by default.  Inside :func:`pickles_allowed`, a value the
codec cannot represent travels as ``{"$t": "dill", "v": base64}`` and such
values are unpickled on arrival.  Unpickling runs code chosen by the sender,
so a server accepts them only when started with ``--trusted-clients``;
otherwise a pickled value is refused with :class:`UnsafePayload` before
anything is unpickled.

Unlike the rest of the wire package this module uses SQLAlchemy (for ORM
instances and its exception classes); import it only where logical
operations are sent or run.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import contextvars
import datetime
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy.exc as sa_exc
import sqlalchemy.orm.exc as orm_exc
from sqlalchemy.orm.base import instance_state

from . import codec, instances

__all__ = [
    "UnsafePayload",
    "encode_exception",
    "from_wire",
    "known_exception_class",
    "pickles_allowed",
    "register_exception",
    "to_wire",
]

_PICKLES: contextvars.ContextVar[bool] = contextvars.ContextVar("pickles", default=False)


class UnsafePayload(ValueError):
    """A pickled value arrived where pickles are not allowed."""


@contextlib.contextmanager
def pickles_allowed(allowed: bool = True) -> Iterator[None]:
    """Within the block, send unencodable values as dill pickles and accept them."""
    token = _PICKLES.set(allowed)
    try:
        yield
    finally:
        _PICKLES.reset(token)


def _encode_pickle(value: Any) -> dict:
    import dill

    return {codec.TAG: "dill", "v": base64.b64encode(dill.dumps(value)).decode("ascii")}


def _decode_pickle(body: dict) -> Any:
    if not _PICKLES.get():
        raise UnsafePayload(
            "a pickled (dill) value was refused: unpickling runs code chosen by the "
            "sender; the server accepts pickles only when started with --trusted-clients"
        )
    import dill

    data = base64.b64decode(body["v"], validate=True)
    try:
        return dill.loads(data)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad value
        raise ValueError(f"cannot unpickle: {type(exc).__name__}: {exc}") from None

_registered_exceptions: dict[str, type[BaseException]] = {}


_type_name = instances.type_name


def register_exception(cls: type[BaseException]) -> type[BaseException]:
    """Let ``cls`` raised by an operation reach callers as itself.

    Register it on both client and server (usually by importing the module
    that defines it and decorates it).  Usable as a class decorator.
    """
    _registered_exceptions[_type_name(cls)] = cls
    return cls


def _encode_instance(value: Any, mapped: instances.MappedClass) -> dict:
    columns = {key: to_wire(item) for key, item in mapped.loaded_columns(value).items()}
    return {codec.TAG: "orm", "cls": _wire_name(value, mapped), "v": columns}


def _wire_name(value: Any, mapped: instances.MappedClass) -> str:
    # An instance of an unmapped subclass is named as itself (and refused on arrival).
    kind = type(value)
    return mapped.name if mapped.cls is kind else _type_name(kind)


def _same_loaded_columns(mapped: instances.MappedClass, loaded: list[dict]) -> tuple | None:
    """The column keys every instance has loaded, if they all have the same ones."""
    keys = tuple(key for key in mapped.column_keys if key in loaded[0])
    if not keys:
        return None
    if len(keys) < len(mapped.column_keys):
        for columns in loaded:
            if tuple(key for key in mapped.column_keys if key in columns) != keys:
                return None
    return keys


def _encode_instances(items: list) -> dict | None:
    """A list of instances of one mapped class with the same loaded columns, as rows.

    None when ``items`` is anything else; it is then sent item by item.
    """
    kind = type(items[0])
    if kind in _NOT_MAPPED:
        return None
    mapped = instances.mapped_class_of(items[0])
    if mapped is None or mapped.cls is not kind:
        return None
    for item in items:
        if type(item) is not kind:
            return None
    loaded = [instance_state(item).dict for item in items]
    keys = _same_loaded_columns(mapped, loaded)
    if keys is None:
        return None
    try:
        columns = [[columns_of[key] for columns_of in loaded] for key in keys]
    except KeyError:  # an instance missing a column the first one has loaded
        return None
    body = {codec.TAG: "orms", "cls": mapped.name, "cols": list(keys)}
    tagged: list[int] = []
    datetimes: list[list] = []
    for index, column in enumerate(columns):
        if codec.plain_column(column):
            continue
        zone = _datetime_column_zone(column)
        if zone is _NOT_ISO:
            tagged.append(index)
            columns[index] = [to_wire(v) for v in column]
        elif zone is None:
            datetimes.append([index, None])
            columns[index] = [None if v is None else v.isoformat() for v in column]
        else:
            datetimes.append([index, zone])
            columns[index] = [None if v is None else v.replace(tzinfo=None).isoformat()
                              for v in column]
    body["rows"] = list(zip(*columns, strict=True))
    if tagged:
        body["tagged"] = tagged
    if datetimes:
        body["dt"] = datetimes
    return body


_NOT_ISO = "not ISO text"


def _datetime_column_zone(column: list) -> str | None:
    """How ISO 8601 text brings every value of the column back exactly.

    For datetimes (and ``None``) that are naive or have a fixed offset, the
    text alone (``None``); for datetimes all in one :mod:`zoneinfo` zone,
    their wall time and the zone's name once for the column (the name).  Any
    other column (other types, several zones, a ``fold``) is :data:`_NOT_ISO`:
    its values need their own tags.
    """
    zone: str | None = _NOT_ISO
    for value in column:
        if value is None:
            continue
        if type(value) is not datetime.datetime or value.fold:
            return _NOT_ISO
        tz = value.tzinfo
        if tz is None or type(tz) is datetime.timezone:
            name = None
        elif type(tz) is ZoneInfo and tz.key:
            name = tz.key
        else:
            return _NOT_ISO
        if zone is _NOT_ISO:
            zone = name
        elif name != zone:
            return _NOT_ISO
    return zone


def _decode_instance(body: dict, depth: int) -> Any:
    mapped = instances.class_named(_string(body, "cls"))
    columns = body["v"]
    if type(columns) is not dict:
        raise ValueError("'v' must be an object of column values")
    for key in columns:
        if key not in mapped.known_keys:
            raise ValueError(f"{mapped.name} has no column attribute {key!r}")
    return mapped.detached(
        {key: from_wire(item, depth + 1) for key, item in columns.items()}
    )


def _decode_instances(body: dict, depth: int) -> list:
    mapped = instances.class_named(_string(body, "cls"))
    keys, rows = body["cols"], body["rows"]
    if type(keys) is not list or not keys or any(type(key) is not str for key in keys):
        raise ValueError("'cols' must be a non-empty list of column attribute names")
    for key in keys:
        if key not in mapped.known_keys:
            raise ValueError(f"{mapped.name} has no column attribute {key!r}")
    if len(set(keys)) != len(keys):
        raise ValueError("'cols' names a column twice")
    width = len(keys)
    if type(rows) is not list or any(type(row) is not list or len(row) != width
                                     for row in rows):
        raise ValueError(f"'rows' must be a list of rows of {width} values")
    tagged = _column_indexes(body.get("tagged") or [], "tagged", width)
    datetimes = _datetime_columns(body.get("dt") or [], width)
    if not tagged.isdisjoint(datetimes):
        raise ValueError("a column is both 'tagged' and 'dt'")
    columns = list(zip(*rows, strict=True))
    for index, column in enumerate(columns):
        if index in tagged:
            columns[index] = [from_wire(value, depth + 1) for value in column]
        elif index in datetimes:
            zone = datetimes[index]
            columns[index] = [_datetime(value, zone) for value in column]
        elif not set(map(type, column)) <= _UNTAGGED:
            raise ValueError(f"column {keys[index]!r} holds a value that is not tagged")
    detached = mapped.detached
    return [detached(dict(zip(keys, row, strict=True))) for row in zip(*columns, strict=True)]


def _column_indexes(indexes: Any, key: str, width: int) -> set[int]:
    if (type(indexes) is not list or len(set(indexes)) != len(indexes)
            or any(type(i) is not int or not 0 <= i < width for i in indexes)):
        raise ValueError(f"{key!r} must list distinct column indexes below {width}")
    return set(indexes)


def _datetime_columns(pairs: Any, width: int) -> dict[int, ZoneInfo | None]:
    """``"dt"``'s ``[[index, zone name or null], ...]`` as ``{index: zone}``."""
    if type(pairs) is not list or any(type(p) is not list or len(p) != 2 for p in pairs):
        raise ValueError("'dt' must list [column index, zone name or null] pairs")
    if any(zone is not None and type(zone) is not str for _, zone in pairs):
        raise ValueError("a 'dt' zone must be a zone name or null")
    _column_indexes([index for index, _ in pairs], "dt", width)
    return {index: None if zone is None else ZoneInfo(zone) for index, zone in pairs}


def _datetime(value: Any, zone: ZoneInfo | None) -> datetime.datetime | None:
    if value is None:
        return None
    if type(value) is not str:
        raise ValueError(f"a 'dt' column holds a {type(value).__name__}, not ISO 8601 text")
    parsed = datetime.datetime.fromisoformat(value)
    if zone is None:
        return parsed
    if parsed.tzinfo is not None:
        raise ValueError(f"a 'dt' column in zone {zone.key!r} holds an offset: {value!r}")
    return parsed.replace(tzinfo=zone)


def _string(body: dict, key: str) -> str:
    value = body[key]
    if type(value) is not str:
        raise ValueError(f"{key!r} must be a string")
    return value


def to_wire(value: Any) -> Any:
    """:func:`session_proxy.wire.codec.to_wire` plus ORM instances."""
    kind = type(value)
    if kind is list:
        batch = _encode_instances(value) if value else None
        return batch if batch is not None else [to_wire(item) for item in value]
    if kind is tuple:
        return {codec.TAG: "tuple", "v": [to_wire(item) for item in value]}
    if kind is dict and codec.TAG not in value and all(type(k) is str for k in value):
        return {key: to_wire(item) for key, item in value.items()}
    if kind is dict:
        return {codec.TAG: "dict", "v": [[to_wire(k), to_wire(v)] for k, v in value.items()]}
    if kind not in _NOT_MAPPED:
        mapped = instances.mapped_class_of(value)
        if mapped is not None:
            return _encode_instance(value, mapped)
    try:
        return codec.to_wire(value)
    except TypeError:
        if _PICKLES.get():
            return _encode_pickle(value)
        raise


def from_wire(value: Any, _depth: int = 0) -> Any:
    """:func:`session_proxy.wire.codec.from_wire` plus ORM instances."""
    kind = type(value)
    if kind is not list and kind is not dict:
        return value
    if _depth >= codec.MAX_NESTING:
        raise ValueError(f"values nest deeper than {codec.MAX_NESTING} levels")
    if kind is list:
        return [from_wire(item, _depth + 1) for item in value]
    tag = value.get(codec.TAG)
    if tag is None:
        return {key: from_wire(item, _depth + 1) for key, item in value.items()}
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        return codec.from_wire(value)
    try:
        return decoder(value, _depth)
    except UnsafePayload:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, binascii.Error) as exc:
        raise ValueError(f"malformed {tag!r} value: {exc!r}") from None


#: Types the codec encodes exactly (builtins and the standard library's),
#: which are never mapped: checked before asking whether a value is mapped.
_NOT_MAPPED = codec.ENCODED_TYPES | {str, bool, type(None)}
#: What a column not listed in ``"tagged"`` may hold: values JSON gives back as themselves.
_UNTAGGED = frozenset({str, bool, int, float, type(None)})

_DECODERS: dict[str, Callable[[dict, int], Any]] = {
    "dill": lambda body, depth: _decode_pickle(body),
    "orm": _decode_instance,
    "orms": _decode_instances,
    "tuple": lambda body, depth: tuple(from_wire(item, depth + 1) for item in body["v"]),
    "dict": lambda body, depth: {
        from_wire(k, depth + 1): from_wire(v, depth + 1) for k, v in body["v"]
    },
}


# -- exceptions ---------------------------------------------------------------


def encode_exception(exc: BaseException) -> dict[str, Any]:
    """The wire form of an exception raised by an operation."""
    body: dict[str, Any] = {"type": _type_name(type(exc)), "message": str(exc)}
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        body["statement"] = exc.statement
        body["orig"] = {
            "message": str(orig),
            "sqlstate": getattr(orig, "sqlstate", None),
            "errno": orig.args[0] if orig is not None and orig.args
            and type(orig.args[0]) is int else None,
        }
    else:
        try:
            body["args"] = codec.to_wire(list(exc.args))
        except TypeError:
            body["args"] = [str(exc)]
    return body


def known_exception_class(type_name: str) -> type[BaseException] | None:
    """The class ``module:Qualname`` names, if it may be rebuilt on this side."""
    if type_name in _registered_exceptions:
        return _registered_exceptions[type_name]
    module, _, qualname = type_name.partition(":")
    namespace = {
        "builtins": builtins,
        "sqlalchemy.exc": sa_exc,
        "sqlalchemy.orm.exc": orm_exc,
    }.get(module)
    cls = getattr(namespace, qualname, None) if namespace is not None else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls
    return None
