"""What every proxy dialect shares.

A proxy dialect is the server's real *driver* dialect (``pysqlite``,
``psycopg``, ``pymysql``) with its DBAPI swapped for
:mod:`session_proxy.dbapi`.  Compilation, paramstyle, RETURNING,
insertmanyvalues, rowcount flags and type processors all come from the real
driver dialect, so SQLAlchemy sends exactly the SQL and parameter values that
dialect would have given the driver in-process.  The mixin here replaces the
few methods that would touch the driver itself: connection arguments,
isolation level and other connection options (sent with ``begin`` instead of
set on a socket the client doesn't have), ping and disconnect detection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import util
from sqlalchemy.engine import URL

from .. import dbapi as shim
from ..errors import ProtocolMismatch, ProxyTimeout, ServerUnreachable
from ..transport import HTTPTransport

DEFAULT_PORT = 8765


class ProxyDialectMixin:
    """Mixed in front of a real driver dialect class."""

    driver = "sessionproxy"
    supports_statement_cache = True
    supports_server_side_cursors = False

    #: The driver the server must use for this dialect's SQL to be right.
    proxied_driver: str = ""

    transport: HTTPTransport | None = None

    def __init__(
        self,
        proxy_token: str | None = None,
        proxy_timeout: float = 30.0,
        proxy_verify: bool | str = True,
        **kwargs: Any,
    ) -> None:
        self._explicit_paramstyle = "paramstyle" in kwargs
        kwargs.setdefault("paramstyle", self.default_paramstyle)
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.proxy_token = proxy_token
        self.proxy_timeout = float(proxy_timeout)
        self.proxy_verify = proxy_verify

    @classmethod
    def import_dbapi(cls) -> Any:
        return shim

    @classmethod
    def load_provisioning(cls) -> None:
        """Load the real backend's test provisioning (SQLAlchemy's test suites)."""
        for base in cls.__mro__:
            module = base.__module__
            if module.startswith("sqlalchemy.dialects."):
                package = ".".join(module.split(".")[:3])
                try:
                    __import__(package + ".provision")
                except ImportError:
                    pass
                return

    @classmethod
    def get_pool_class(cls, url: URL) -> Any:
        from sqlalchemy.pool import QueuePool

        return QueuePool

    def create_connect_args(self, url: URL) -> Any:
        query = dict(url.query)
        tls = util.asbool(query.pop("tls", False))
        if "timeout" in query:
            self.proxy_timeout = float(query.pop("timeout"))
        if query:
            raise ValueError(
                f"unknown session-proxy URL options {sorted(query)}; "
                "supported: tls, timeout"
            )
        host = url.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        base_url = f"{'https' if tls else 'http'}://{host}:{url.port or DEFAULT_PORT}"
        self.transport = HTTPTransport(
            base_url,
            token=self.proxy_token,
            timeout=self.proxy_timeout,
            verify=self.proxy_verify,
        )
        return [], {"transport": self.transport, "backend": self.name}

    def _check_server_driver(self) -> None:
        assert self.transport is not None
        handshake = self.transport.handshake()
        if handshake.driver != self.proxied_driver:
            raise ProtocolMismatch(
                f"{self.name}+sessionproxy compiles for the {self.proxied_driver!r} "
                f"driver but the server at {self.transport.base_url} uses "
                f"{handshake.driver!r}; run the server with a "
                f"{self.name}+{self.proxied_driver}:// URL"
            )

    def initialize(self, connection: Any) -> None:
        self._check_server_driver()
        self._adopt_server_paramstyle()
        super().initialize(connection)  # type: ignore[misc]

    def _adopt_server_paramstyle(self) -> None:
        """Compile with the paramstyle the server's driver module declares.

        A real driver dialect takes it from ``dbapi.paramstyle`` at
        construction; the proxy learns it from the handshake at first connect,
        before any statement is compiled.
        """
        assert self.transport is not None
        style = self.transport.handshake().paramstyle
        if self._explicit_paramstyle or style == self.paramstyle:
            return
        self.paramstyle = style
        self.positional = style in ("qmark", "format", "numeric", "numeric_dollar")

    def on_connect(self) -> None:
        # The server's own engine already ran its driver dialect's connect
        # hooks (functions, charset, adapters) on the real connection.
        return None

    # -- connection options, applied by the server at ``begin`` ---------------

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        dbapi_connection.set_option("isolation_level", level)

    def get_isolation_level(self, dbapi_connection: Any) -> Any:
        was_idle = not dbapi_connection.in_transaction
        value = self._backend_get_isolation_level(dbapi_connection)
        if was_idle:
            dbapi_connection.rollback()
        return value

    def _backend_get_isolation_level(self, dbapi_connection: Any) -> Any:
        raise NotImplementedError

    def detect_autocommit_setting(self, dbapi_connection: Any) -> bool:
        return dbapi_connection.options.get("isolation_level") == "AUTOCOMMIT"

    # -- liveness -------------------------------------------------------------

    def do_ping(self, dbapi_connection: Any) -> bool:
        dbapi_connection.transport.ping()
        return True

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        return isinstance(e, (ServerUnreachable, ProxyTimeout))

    def do_begin_twophase(self, connection: Any, xid: Any) -> None:
        raise NotImplementedError("two-phase commit is not supported through session-proxy")
