"""Values of logical operations on the client: the shared encoding plus exceptions.

The encoding of arguments, results and exceptions lives in
:mod:`session_proxy.wire.values`, which the server uses too; this module
re-exports it and adds :func:`decode_exception`, which rebuilds an
operation's exception on the caller's side, with this client's DBAPI error
classes (:mod:`session_proxy.errors`) for database errors and
:class:`~session_proxy.errors.RemoteOperationError` for a class this
process cannot rebuild.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc as sa_exc

from . import errors as shim_errors
from .errors import RemoteOperationError
from .wire import codec
from .wire.values import (
    UnsafePayload,
    encode_exception,
    from_wire,
    known_exception_class,
    pickles_allowed,
    register_exception,
    to_wire,
)

__all__ = [
    "UnsafePayload",
    "decode_exception",
    "encode_exception",
    "from_wire",
    "pickles_allowed",
    "register_exception",
    "to_wire",
]


def decode_exception(body: dict[str, Any], where: str = "") -> BaseException:
    """Rebuild an operation's exception on the caller's side."""
    type_name = str(body.get("type", "builtins:Exception"))
    message = str(body.get("message", ""))
    cls = known_exception_class(type_name)
    if cls is not None and issubclass(cls, sa_exc.DBAPIError):
        orig_body = body.get("orig") or {}
        pep249 = shim_errors.DBAPI_CLASSES.get(
            cls.__name__, shim_errors.DatabaseError
        )
        orig = pep249(orig_body.get("message", message))
        orig.sqlstate = orig_body.get("sqlstate")
        orig.errno = orig_body.get("errno")
        return cls(body.get("statement"), None, orig)
    if cls is not None:
        try:
            args = codec.from_wire(body.get("args", [message]))
            return cls(*args)
        except Exception:  # noqa: BLE001 - fall back to the message alone
            try:
                return cls(message)
            except Exception:  # noqa: BLE001
                pass
    return RemoteOperationError(type_name.replace(":", "."), message + where)
