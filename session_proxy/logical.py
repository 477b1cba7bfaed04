"""The logical API: coarse operations that run where the database is.

An operation is a plain function taking a ``session`` keyword, decorated
once::

    @remote_operation
    def set_variable(key: str, value: str, *, session: Session) -> None:
        ...

Called with ``session=...``, it simply runs on that session.  Called without
one, what happens depends on the process-wide mode, as with Airflow's
``database_access_isolation``:

- local (the default once :func:`configure_local` named a session factory):
  the function runs on a new session in one transaction, committed on
  success and rolled back on error;
- remote (after :func:`configure_remote`, or with the environment variable
  ``SESSION_PROXY_OPERATIONS_URL`` set): the call is sent to a
  session-proxy server started with ``--operations <module>``, which runs the
  same function on a real session in one transaction and sends the result
  back.  A ``session`` argument the caller passes is not sent.

Arguments and results travel with :mod:`session_proxy.values` (typed JSON
plus detached ORM instances); exceptions come back as the same class where
the caller can rebuild it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from . import values
from .cache import ReadCache
from .config import ClientConfig
from .retry import RetryPolicy
from .stats import ProxyStats
from .transport import HTTPTransport
from .wire.operations import Operation, operations, remote_operation, set_dispatcher

__all__ = [
    "Operation",
    "ReadCache",
    "RemoteClient",
    "configure_local",
    "configure_remote",
    "operation_mode",
    "operations",
    "remote_client",
    "remote_operation",
]

ENV_URL = "SESSION_PROXY_OPERATIONS_URL"
ENV_TOKEN = "SESSION_PROXY_OPERATIONS_TOKEN"


class RemoteClient:
    """Sends logical calls to one server; ``stats`` counts them.

    :param url: the server (``http://host:port``), or a
        :class:`~session_proxy.config.ClientConfig` holding it and the
        settings below (the keywords, when given, override the config's).
    :param token: bearer token for the server.
    :param timeout: seconds to wait for each response (default 30).
    :param verify: verify the server's TLS certificate (``True``, the
        default), with a CA bundle (a path), or not at all (``False``).
    :param pickle_values: send arguments the codec cannot represent as dill
        pickles, and accept pickled results.  The server must run with
        ``--trusted-clients``, which lets every client run code on it.
    :param retry: when to send a call again (:class:`~session_proxy.retry.RetryPolicy`);
        a call carries an idempotency key, so a retry never runs it twice.
    :param cache: answer the reads it declares from a worker-side
        :class:`~session_proxy.cache.ReadCache` (a hit sends nothing); this
        client's calls of the writes it declares drop what they change.
    """

    def __init__(
        self,
        url: str | ClientConfig,
        token: str | None = None,
        timeout: float | None = None,
        verify: bool | str | None = None,
        pickle_values: bool = False,
        retry: RetryPolicy | None = None,
        cache: ReadCache | None = None,
    ) -> None:
        self.config = ClientConfig.coerce(
            url, token=token, timeout=timeout, verify=verify, retry=retry
        )
        self.transport = HTTPTransport(self.config)
        self.pickle_values = pickle_values
        self.cache = cache

    @property
    def stats(self) -> ProxyStats:
        """Round trips, bytes, statements and server time of every call."""
        return self.transport.stats

    def call(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """Run operation ``name`` on the server (or answer it from the cache); its result."""
        if self.cache is not None:
            return self.cache.call(name, args, kwargs, lambda: self._send(name, args, kwargs))
        return self._send(name, args, kwargs)

    def _send(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        with values.pickles_allowed(self.pickle_values):
            return self.transport.call_operation(name, args, kwargs)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.transport.close()


class _Mode:
    def __init__(
        self,
        session_factory: Callable[[], Any] | None = None,
        client: RemoteClient | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.client = client


_mode = _Mode()


def _current_mode() -> _Mode:
    global _mode
    if _mode.client is None and _mode.session_factory is None and os.environ.get(ENV_URL):
        config = ClientConfig(os.environ[ENV_URL]).with_env_token(ENV_TOKEN)
        _mode = _Mode(client=RemoteClient(config))
    return _mode


def configure_local(session_factory: Callable[[], Any]) -> None:
    """Run operations in this process, each on a new session from ``session_factory``."""
    global _mode
    _mode = _Mode(session_factory=session_factory)


def configure_remote(
    url: str | ClientConfig,
    *,
    token: str | None = None,
    timeout: float | None = None,
    verify: bool | str | None = None,
    retry: RetryPolicy | None = None,
    pickle_values: bool = False,
    cache: ReadCache | None = None,
) -> RemoteClient:
    """Send every operation call to the server at ``url``; return the client.

    The arguments are :class:`RemoteClient`'s.
    """
    global _mode
    client = RemoteClient(
        url, token=token, timeout=timeout, verify=verify, retry=retry,
        pickle_values=pickle_values, cache=cache,
    )
    _mode = _Mode(client=client)
    return client


def remote_client() -> RemoteClient | None:
    """The client of the remote mode, or None when operations run locally."""
    return _current_mode().client


@contextlib.contextmanager
def operation_mode(
    *, session_factory: Callable[[], Any] | None = None, client: RemoteClient | None = None
) -> Iterator[None]:
    """Temporarily run operations locally (``session_factory``) or remotely (``client``)."""
    global _mode
    if (session_factory is None) == (client is None):
        raise ValueError("give exactly one of session_factory or client")
    saved = _mode
    _mode = _Mode(session_factory=session_factory, client=client)
    try:
        yield
    finally:
        _mode = saved


def _dispatch(operation: Operation, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run ``operation`` called without a session, in the process-wide mode."""
    mode = _current_mode()
    if mode.client is not None:
        return mode.client.call(operation.name, args, kwargs)
    if mode.session_factory is None:
        raise RuntimeError(
            f"operation {operation.name!r} called without a session and no mode is "
            "configured: pass session=..., or call configure_local() or "
            f"configure_remote() (or set {ENV_URL})"
        )
    return operation.run_in_transaction(mode.session_factory, args, kwargs)


set_dispatcher(_dispatch)
