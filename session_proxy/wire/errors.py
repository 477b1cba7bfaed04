"""The error types of the wire protocol, shared by client and server.

:class:`WireError` is the one base that carries what the server tells about a
failed request, as declared fields rather than attributes patched on at run
time: the error ``code`` (see :data:`session_proxy.wire.protocol.ERROR_STATUS`),
the HTTP ``status``, the transaction the server kept open (``txn``), the index
of the failing step (``step``) and the server's ``request_id``.  Every error the
client raises for a server answer derives from it (the PEP 249 classes of
:mod:`session_proxy.errors` and :class:`session_proxy.errors.ProxyError`), and so
do the server's refusals that name a step.

:class:`ProtocolError` is raised for a message that does not follow the
protocol (a malformed request on the server, a malformed handshake on the
client).

Not for database errors themselves: those keep their PEP 249 class.
"""

from __future__ import annotations

from typing import Any

from .protocol import BAD_REQUEST, ERROR_STATUS

__all__ = ["ProtocolError", "WireError"]


class WireError(Exception):
    """An error answer of the protocol, with its context as declared fields.

    All fields default to None (class attributes), so a subclass with its own
    ``__init__`` signature keeps them; :meth:`annotate` fills them in.
    """

    #: The protocol error code (``bad_request``, ``database_error``, ...).
    code: str | None = None
    #: The HTTP status the server answered with.
    status: int | None = None
    #: The transaction the server kept open despite the error.
    txn: str | None = None
    #: The index of the step that failed or was refused.
    step: int | None = None
    #: The server's ``X-Request-Id`` of the failed request.
    request_id: str | None = None

    def annotate(
        self,
        *,
        status: int | None = None,
        txn: Any = None,
        step: Any = None,
        request_id: str | None = None,
    ) -> WireError:
        """Set the context fields from an error answer; malformed ones become None."""
        self.status = status
        self.txn = txn if isinstance(txn, str) else None
        self.step = step if type(step) is int else None
        self.request_id = request_id
        return self


class ProtocolError(WireError, ValueError):
    """A message does not follow the protocol; ``code`` is its error code."""

    def __init__(self, message: str, code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERROR_STATUS.get(code)
