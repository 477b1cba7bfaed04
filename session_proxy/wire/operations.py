"""Logical operations as both sides know them: the registry and :class:`Operation`.

A module of operations decorates each function once with
:func:`remote_operation`; importing the module registers them by name.  The
server (``--operations <module>``) looks them up with :func:`operations` and
runs one on a real session with :meth:`Operation.run_in_transaction`.  The
client's :mod:`session_proxy.logical` decides what a call *without* a
session does (run locally, or send it to a server) and plugs that decision
in with :func:`set_dispatcher`; until it does, such a call raises.

This module imports neither the client nor the server.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from . import protocol

__all__ = ["Dispatcher", "Operation", "operations", "remote_operation", "set_dispatcher"]

F = TypeVar("F", bound=Callable[..., Any])

_OPERATIONS: dict[str, Operation] = {}


class Dispatcher(Protocol):
    """Runs an operation called without a session (the client's modes)."""

    def __call__(self, operation: Operation, args: tuple, kwargs: dict[str, Any]) -> Any: ...


def _no_dispatcher(operation: Operation, args: tuple, kwargs: dict[str, Any]) -> Any:
    raise RuntimeError(
        f"operation {operation.name!r} called without a session: pass session=..., "
        "or import session_proxy.logical and configure a mode"
    )


_dispatch: Dispatcher = _no_dispatcher


def set_dispatcher(dispatcher: Dispatcher) -> None:
    """Decide what calling an operation without a ``session`` does."""
    global _dispatch
    _dispatch = dispatcher


class Operation:
    """A function registered as a logical operation; call it like the function."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        signature = inspect.signature(fn)
        if "session" not in signature.parameters:
            raise TypeError(f"operation {name!r} must take a 'session' keyword argument")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name
        self.signature = signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("session") is not None:
            return self.fn(*args, **kwargs)
        kwargs.pop("session", None)
        return _dispatch(self, args, kwargs)

    def check_arguments(self, args: tuple, kwargs: dict[str, Any]) -> None:
        """Raise TypeError if the arguments don't fit the function's signature."""
        if "session" in kwargs:
            raise TypeError("the 'session' argument is supplied by the server")
        self.signature.bind(*args, session=None, **kwargs)

    def run_in_transaction(
        self,
        session_factory: Callable[[], Any],
        args: tuple,
        kwargs: dict[str, Any],
        encode: Callable[[Any], Any] | None = None,
        before_commit: Callable[[Any, Any], None] | None = None,
    ) -> Any:
        """Run on a new session in one transaction; commit on success.

        ``encode`` turns the result into its wire form inside the
        transaction, so a result that cannot be sent rolls the work back.
        ``before_commit(session, result)`` runs last inside the transaction
        (the server records the call's outcome there); if it raises, the
        work is rolled back.
        """
        with session_factory() as session:
            session.expire_on_commit = False
            with session.begin():
                result = self.fn(*args, session=session, **kwargs)
                if encode is not None:
                    result = encode(result)
                if before_commit is not None:
                    session.flush()
                    before_commit(session, result)
        return result

    def __repr__(self) -> str:
        return f"<remote operation {self.name}>"


def remote_operation(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register ``fn`` as a logical operation (usable with or without arguments).

    ``name`` defaults to ``module.function``; it is what the server exposes at
    ``POST /v1/operations/<name>``.
    """

    def decorate(function: F) -> Operation:
        op_name = name or f"{function.__module__}.{function.__qualname__}"
        if not protocol.OPERATION_NAME.fullmatch(op_name):
            raise ValueError(f"invalid operation name {op_name!r}")
        operation = Operation(function, op_name)
        _OPERATIONS[op_name] = operation
        return operation

    return decorate(fn) if fn is not None else decorate


def operations() -> dict[str, Operation]:
    """Every operation registered in this process, by name."""
    return dict(_OPERATIONS)
