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
  process has already imported; a name never causes an import.
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
from collections.abc import Iterator
from typing import Any

import sqlalchemy.exc as sa_exc
import sqlalchemy.orm.exc as orm_exc
from sqlalchemy import inspect
from sqlalchemy.orm import attributes, make_transient_to_detached
from sqlalchemy.orm.base import instance_state

from . import codec

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


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_exception(cls: type[BaseException]) -> type[BaseException]:
    """Let ``cls`` raised by an operation reach callers as itself.

    Register it on both client and server (usually by importing the module
    that defines it and decorates it).  Usable as a class decorator.
    """
    _registered_exceptions[_type_name(cls)] = cls
    return cls


def _is_mapped(value: Any) -> bool:
    try:
        return instance_state(value).mapper is not None
    except (AttributeError, orm_exc.UnmappedInstanceError):
        return False


def _mapped_class(name: str) -> type:
    from sqlalchemy.orm import mapperlib

    for registry in list(mapperlib._mapper_registries):
        for mapper in registry.mappers:
            if _type_name(mapper.class_) == name:
                return mapper.class_
    raise ValueError(
        f"no mapped class {name!r} in this process; import the module that defines it"
    )


def _encode_instance(value: Any) -> dict:
    state = inspect(value)
    loaded = state.dict
    columns = {
        prop.key: to_wire(loaded[prop.key])
        for prop in state.mapper.column_attrs
        if prop.key in loaded
    }
    return {codec.TAG: "orm", "cls": _type_name(type(value)), "v": columns}


def _decode_instance(body: dict) -> Any:
    cls = _mapped_class(body["cls"])
    mapper = inspect(cls)
    instance = mapper.class_manager.new_instance()
    known = {prop.key for prop in mapper.column_attrs}
    for key, value in body["v"].items():
        if key not in known:
            raise ValueError(f"{body['cls']} has no column attribute {key!r}")
        attributes.set_committed_value(instance, key, from_wire(value))
    make_transient_to_detached(instance)
    return instance


def to_wire(value: Any) -> Any:
    """:func:`session_proxy.wire.codec.to_wire` plus ORM instances."""
    if _is_mapped(value):
        return _encode_instance(value)
    kind = type(value)
    if kind is list:
        return [to_wire(item) for item in value]
    if kind is tuple:
        return {codec.TAG: "tuple", "v": [to_wire(item) for item in value]}
    if kind is dict and codec.TAG not in value and all(type(k) is str for k in value):
        return {key: to_wire(item) for key, item in value.items()}
    if kind is dict:
        return {codec.TAG: "dict", "v": [[to_wire(k), to_wire(v)] for k, v in value.items()]}
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
        return decoder(value)
    except UnsafePayload:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, binascii.Error) as exc:
        raise ValueError(f"malformed {tag!r} value: {exc!r}") from None


_DECODERS = {
    "dill": _decode_pickle,
    "orm": _decode_instance,
    "tuple": lambda body: tuple(from_wire(item) for item in body["v"]),
    "dict": lambda body: {from_wire(k): from_wire(v) for k, v in body["v"]},
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
