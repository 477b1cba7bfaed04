"""What every proxy dialect shares.

A proxy dialect is the server's real *driver* dialect (``pysqlite``,
``psycopg``, ``pymysql``) with its DBAPI swapped for
:mod:`session_proxy.dbapi`.  Compilation, paramstyle, RETURNING,
insertmanyvalues, rowcount flags and type processors all come from the real
driver dialect, so SQLAlchemy sends exactly the SQL and parameter values that
dialect would have given the driver in-process.  The mixin here replaces the
few methods that would touch the driver itself: connection arguments,
isolation level and other connection options (sent with ``begin`` instead of
set on a socket the client doesn't have), ping and disconnect detection, and
statement execution, which may queue a statement instead of sending it
(:mod:`session_proxy.pipeline`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL

from .. import dbapi as shim
from .. import pipeline, session_events
from ..config import DEFAULT_PORT as DEFAULT_PORT
from ..config import DEFAULT_TIMEOUT, ClientConfig
from ..errors import ProtocolMismatch, ProxyTimeout, ServerUnreachable, SessionClosed
from ..retry import RetryPolicy
from ..transport import HTTPTransport
from . import neutral

#: The ``create_engine`` keywords a proxy dialect takes for itself.
PROXY_ARGUMENTS = (
    "proxy_config",
    "proxy_token",
    "proxy_timeout",
    "proxy_verify",
    "proxy_pipeline_dml",
    "proxy_defer_flush_errors",
    "proxy_retry",
)


def _end_connect_phase(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    end = getattr(dbapi_connection, "end_connect_phase", None)
    if end is not None:
        end()


class ProxyDialectMixin:
    """Mixed in front of a real driver dialect class."""

    driver = "sessionproxy"
    supports_statement_cache = True
    supports_server_side_cursors = False

    #: The driver the server must use for this dialect's SQL to be right.
    proxied_driver: str = ""

    transport: HTTPTransport | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        context = getattr(cls, "execution_ctx_cls", None)
        if context is not None and not issubclass(context, ProxyExecutionContextMixin):
            cls.execution_ctx_cls = proxy_execution_context(context)

    def __init__(
        self,
        proxy_token: str | None = None,
        proxy_timeout: float | None = None,
        proxy_verify: bool | str | None = None,
        proxy_pipeline_dml: bool = False,
        proxy_retry: RetryPolicy | None = None,
        proxy_config: ClientConfig | None = None,
        proxy_defer_flush_errors: bool = False,
        **kwargs: Any,
    ) -> None:
        # The explicit names let create_engine() route these keywords here.
        self._explicit_paramstyle = "paramstyle" in kwargs
        kwargs.setdefault("paramstyle", self.default_paramstyle)
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self._set_proxy_arguments(
            proxy_token, proxy_timeout, proxy_verify, proxy_pipeline_dml, proxy_retry,
            proxy_config, proxy_defer_flush_errors,
        )

    @staticmethod
    def _pop_proxy_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
        return {name: kwargs.pop(name) for name in PROXY_ARGUMENTS if name in kwargs}

    def _set_proxy_arguments(
        self,
        proxy_token: str | None = None,
        proxy_timeout: float | None = None,
        proxy_verify: bool | str | None = None,
        proxy_pipeline_dml: bool = False,
        proxy_retry: RetryPolicy | None = None,
        proxy_config: ClientConfig | None = None,
        proxy_defer_flush_errors: bool = False,
    ) -> None:
        """The proxy's own ``create_engine`` arguments.

        :param proxy_config: the client settings
            (:class:`~session_proxy.config.ClientConfig`); its ``url`` is
            replaced by the engine URL's host, port and ``tls``.
        :param proxy_token: bearer token sent to the server (overrides the config's).
        :param proxy_timeout: seconds to wait for each response (overrides the config's).
        :param proxy_verify: TLS verification: ``True``, ``False`` or a CA
            bundle (overrides the config's).
        :param proxy_retry: when to send a request again
            (:class:`~session_proxy.retry.RetryPolicy`; overrides the config's).
        :param proxy_pipeline_dml: queue Core INSERT/UPDATE/DELETE statements
            without RETURNING to ride with the next request (see
            :mod:`session_proxy.pipeline`).
        :param proxy_defer_flush_errors: let an explicit ``Session.flush()``
            leave its writes queued too, for every session on this engine
            (their errors then come from the next statement or the commit).

        The engine URL's options (``timeout``, ``retries``, ``ca``) win over
        all of these; :meth:`create_connect_args` settles them into
        :attr:`proxy_config`.
        """
        if proxy_config is not None and not isinstance(proxy_config, ClientConfig):
            raise TypeError(
                f"proxy_config must be a ClientConfig, got {type(proxy_config).__name__}"
            )
        self._proxy_base = proxy_config
        self._proxy_overrides = {
            "token": proxy_token,
            "timeout": proxy_timeout,
            "verify": proxy_verify,
            "retry": proxy_retry,
        }
        self.proxy_config: ClientConfig | None = None
        self.proxy_pipeline_dml = bool(proxy_pipeline_dml)
        self.proxy_defer_flush_errors = bool(proxy_defer_flush_errors)

    def _proxy_setting(self, name: str) -> Any:
        """A setting as it stands: settled by the URL once connected, else as given."""
        if self.proxy_config is not None:
            return getattr(self.proxy_config, name)
        if self._proxy_overrides[name] is not None:
            return self._proxy_overrides[name]
        if self._proxy_base is not None:
            return getattr(self._proxy_base, name)
        defaults = {"token": None, "timeout": DEFAULT_TIMEOUT, "verify": True}
        return RetryPolicy() if name == "retry" else defaults[name]

    proxy_token = property(lambda self: self._proxy_setting("token"), doc="The bearer token.")
    proxy_timeout = property(lambda self: self._proxy_setting("timeout"), doc="Response timeout.")
    proxy_verify = property(lambda self: self._proxy_setting("verify"), doc="TLS verification.")
    proxy_retry = property(lambda self: self._proxy_setting("retry"), doc="The retry policy.")

    @classmethod
    def engine_created(cls, engine: Any) -> None:
        """Pipelined flushes for every ORM session on ``engine`` (see
        :mod:`session_proxy.session_events`), and the end of each shim
        connection's connect phase at its pool checkout.

        ``connect`` event handlers have run by then; the session statements
        they ran (``SET ...``, ``PRAGMA ...``) are what the connection
        re-applies at the start of every lease (:mod:`session_proxy.session_statements`).
        """
        super().engine_created(engine)  # type: ignore[misc]
        session_events.install()
        session_events.watch_engine(engine)
        from sqlalchemy import event

        event.listen(engine, "checkout", _end_connect_phase)

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
        """The transport for ``url``.

        ``backend+sessionproxy://[:TOKEN@]host:port/[?tls=true&ca=PATH&timeout=S&retries=N&pooling=session]``
        (see :meth:`ClientConfig.from_dialect_url
        <session_proxy.config.ClientConfig.from_dialect_url>`).
        """
        self.proxy_config = ClientConfig.from_dialect_url(
            url, self._proxy_base, **self._proxy_overrides
        )
        if neutral.is_neutral(url):
            # Its handshake used $SESSION_PROXY_TOKEN when nothing else gave one.
            self.proxy_config = self.proxy_config.with_env_token()
        self.transport = HTTPTransport(self.proxy_config)
        known = neutral.cached_handshake(url)
        if known is not None:
            # ``sessionproxy://`` fetched it to pick this class: not twice.
            self.transport._handshake = known
        return [], {
            "transport": self.transport,
            "backend": self.name,
            "pooling": self.proxy_config.pooling,
        }

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

    # -- execution: queue what can wait, report late failures as SQLAlchemy would

    def do_execute(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        if pipeline.defer_if_possible(self, cursor, statement, parameters, context, False):
            return
        with pipeline.sqlalchemy_errors():
            cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        with pipeline.sqlalchemy_errors():
            cursor.execute(statement)

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        if pipeline.defer_if_possible(self, cursor, statement, parameters, context, True):
            return
        with pipeline.sqlalchemy_errors():
            cursor.executemany(statement, parameters)

    def do_rollback_to_savepoint(self, connection: Any, name: str) -> None:
        # Everything queued was issued after the newest savepoint, so this
        # undoes it all, a failed statement included.
        dbapi_connection = connection.connection.dbapi_connection
        if isinstance(dbapi_connection, shim.Connection):
            dbapi_connection.discard_queue()
        super().do_rollback_to_savepoint(connection, name)  # type: ignore[misc]

    def do_commit(self, dbapi_connection: Any) -> None:
        with pipeline.sqlalchemy_errors():
            dbapi_connection.commit()

    # -- liveness -------------------------------------------------------------

    def do_ping(self, dbapi_connection: Any) -> bool:
        dbapi_connection.transport.ping()
        return True

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        # A closed server session is a lost connection: the pool replaces it.
        return isinstance(e, (ServerUnreachable, ProxyTimeout, SessionClosed))

    def do_begin_twophase(self, connection: Any, xid: Any) -> None:
        raise NotImplementedError("two-phase commit is not supported through session-proxy")


class ProxyExecutionContextMixin:
    """Reads the rowcount of a queued Core DML statement only when asked."""

    _proxy_lazy_rowcount = False

    def _setup_result_proxy(self) -> Any:
        if self._proxy_lazy_rowcount:
            self._rowcount = _PENDING_ROWCOUNT  # keep SQLAlchemy from reading it now
        return super()._setup_result_proxy()  # type: ignore[misc]

    @property
    def rowcount(self) -> int:
        if self._rowcount is _PENDING_ROWCOUNT:
            with pipeline.sqlalchemy_errors():
                self.cursor.resolve()
            self._rowcount = self.cursor.rowcount
        return super().rowcount  # type: ignore[misc]


class _PendingRowcount(int):
    """A marker rowcount for a statement still queued."""


_PENDING_ROWCOUNT = _PendingRowcount(-1)


def proxy_execution_context(base: type) -> type:
    """The execution context class of a proxy dialect built on ``base``'s."""
    return type(
        "Proxy" + base.__name__, (ProxyExecutionContextMixin, base), {}
    )
