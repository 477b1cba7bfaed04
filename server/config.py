"""Server settings, from keyword arguments, the CLI or the environment.

:class:`ServerConfig` declares each setting once, as a dataclass field whose
metadata (an :class:`Option`) gives its command-line flag, help text and
group.  The CLI (:func:`add_arguments`, :meth:`ServerConfig.from_args`) and
the environment loader (:meth:`ServerConfig.from_env`, used by
:mod:`session_proxy_server.wsgi` under gunicorn) both walk the fields, so a new field gets
its ``--flag`` and its ``SESSION_PROXY_<FIELD>`` variable by being declared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "SESSION_PROXY_"

#: The argparse group of the reliability settings.
RELIABILITY = "reliability and scaling"
#: The argparse group of the session pooling settings.
SESSIONS = "session pooling"


#: Settings whose 0 means "derive it from another setting" rather than a bad value.
ZERO_MEANS_DERIVED = frozenset({"max_sessions_per_subject"})


@dataclasses.dataclass(frozen=True)
class Option:
    """How one :class:`ServerConfig` field appears on the command line.

    :param help: the ``--help`` text (``%(default)s`` is the field's default).
    :param flag: the flag, when it is not ``--`` plus the field name with dashes.
    :param metavar: the value's name in ``--help``.
    :param group: the ``--help`` group (empty: the main list).
    """

    help: str
    flag: str = ""
    metavar: str | None = None
    group: str = ""


def _option(default: Any, help: str, **option: Any) -> Any:
    """A :class:`ServerConfig` field with its command-line :class:`Option`."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **option)})


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything a server instance needs besides its database URL.

    :param lease_seconds: idle time after which an open transaction is rolled
        back and its connection returned to the pool.
    :param max_transactions: open transactions (leased connections) at most;
        one more request gets 503 with ``Retry-After``.
    :param page_size: rows sent with a statement's response and per fetch.
    :param max_body_bytes: largest request body accepted (413 above it).
    :param expired_memory_seconds: how long an expired transaction id is
        remembered, so its client is told "expired" rather than "unknown".
    :param lock_wait_seconds: how long a request waits for another request
        on the same transaction to finish (409 after that).
    :param pre_ping_idle_seconds: a pooled connection idle longer than this
        is pinged before a lease uses it (a dead one is replaced); a
        connection used more recently is trusted, saving a round trip.
    :param statement_timeout_seconds: longest a single statement may run;
        the database cancels it (PostgreSQL ``statement_timeout``, MariaDB
        ``max_statement_time``, MySQL ``max_execution_time`` for SELECTs,
        SQLite through an interrupt) and the client gets the database's
        error.  The transaction stays open for the client to roll back.
    :param max_transaction_seconds: longest a transaction may stay open,
        however busy; past it the server rolls it back.
    :param max_transactions_per_subject: open transactions one token
        subject may hold at once (429 above it).
    :param outcome_window_seconds: how long the outcome of a finished
        request is kept for a retry to find (see :mod:`session_proxy_server.outcomes`).
    :param outcome_memory_bytes: response bytes the in-memory outcome store
        keeps at most (oldest dropped first); commits stay answerable from
        their database record.
    :param drain_seconds: on shutdown, how long requests in flight may take
        to finish before open transactions are rolled back.
    :param instance: this server instance's name, carried (as a tag) in its
        transaction ids; instances behind one address need distinct names.
        Empty means the host name.
    :param advertise_url: the address at which clients reach this instance
        directly; responses that open a transaction name it as ``base_url``.
    :param session_pooling: let clients that ask (URL option
        ``pooling=session``) hold one database connection for the life of a
        client connection, as PgBouncer's session pooling: temporary tables
        and session settings persist across its transactions.
    :param max_sessions: sessions held at once (each holds a database
        connection, on top of the ``max_transactions`` pool); one more gets
        503 ``too_many_sessions``.
    :param max_sessions_per_subject: sessions one token subject may hold at
        once (429 ``subject_limit`` above it); 0, the default, means half of
        ``max_sessions`` (at least 1), so no single subject can hold every
        session and starve the others.
    :param session_idle_seconds: a session with no open transaction that ran
        no statement this long is closed (its connection reset and pooled
        again); its client then gets 410 ``session_closed`` saying so.
    """

    lease_seconds: float = _option(
        60.0, "roll back a transaction idle this long (default %(default)s)"
    )
    max_transactions: int = _option(
        64, "open transactions at most; more get 503 (default %(default)s)"
    )
    page_size: int = _option(5000, "rows per response page (default %(default)s)")
    max_body_bytes: int = _option(
        32 * 1024 * 1024, "largest request body accepted (default %(default)s)"
    )
    expired_memory_seconds: float = _option(
        600.0,
        "remember an expired transaction this long, so its client hears "
        "'expired' rather than 'unknown' (default %(default)s)",
        metavar="SECONDS",
    )
    lock_wait_seconds: float = _option(
        30.0,
        "wait this long for another request on the same transaction to finish; "
        "409 after that (default %(default)s)",
        metavar="SECONDS",
    )
    pre_ping_idle_seconds: float = _option(
        10.0,
        "check a pooled database connection with a ping before use only when it "
        "sat idle longer than this (default %(default)s)",
        metavar="SECONDS",
    )
    statement_timeout_seconds: float = _option(
        300.0,
        "cancel a statement running longer (default %(default)s)",
        flag="--statement-timeout",
        metavar="SECONDS",
    )
    max_transaction_seconds: float = _option(
        900.0, "roll back a transaction open longer, busy or not (default %(default)s)"
    )
    max_transactions_per_subject: int = _option(
        32, "open transactions one token subject may hold (default %(default)s)"
    )
    outcome_window_seconds: float = _option(
        3600.0,
        "keep finished requests' outcomes this long for retries to find (default %(default)s)",
        flag="--outcome-window",
        metavar="SECONDS",
        group=RELIABILITY,
    )
    outcome_memory_bytes: int = _option(
        64 * 1024 * 1024,
        "response bytes the in-memory outcome store keeps at most, oldest "
        "dropped first; committed answers stay in the database (default %(default)s)",
        metavar="BYTES",
        group=RELIABILITY,
    )
    drain_seconds: float = _option(
        30.0,
        "on SIGTERM, let work in flight finish this long before rolling "
        "back what is still open (default %(default)s)",
        group=RELIABILITY,
    )
    instance: str = _option(
        "",
        "this instance's name, unique among instances behind one address "
        "(default HOSTNAME:PORT; under gunicorn HOSTNAME)",
        group=RELIABILITY,
    )
    advertise_url: str = _option(
        "",
        "the address clients reach this instance at directly; a transaction's "
        "follow-up requests go there (needed behind a load balancer)",
        metavar="URL",
        group=RELIABILITY,
    )

    session_pooling: bool = _option(
        False,
        "let clients asking for it (URL option pooling=session) hold one database "
        "connection for the life of a client connection, so temporary tables and "
        "session settings persist (PgBouncer's session pooling)",
        group=SESSIONS,
    )
    max_sessions: int = _option(
        16,
        "sessions held at once, each with a database connection of its own beside "
        "the --max-transactions pool; more get 503 (default %(default)s)",
        group=SESSIONS,
    )
    max_sessions_per_subject: int = _option(
        0,
        "sessions one token subject may hold at once; more get 429 (default 0: half "
        "of --max-sessions, at least 1, so no one subject can hold them all)",
        group=SESSIONS,
    )
    session_idle_seconds: float = _option(
        600.0,
        "close a session with no open transaction that ran no statement this long; "
        "its client hears why on next use (default %(default)s)",
        metavar="SECONDS",
        group=SESSIONS,
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (str, bool)):
                continue
            if field.name in ZERO_MEANS_DERIVED and value == 0:
                continue  # the default: derived from another setting
            if value <= 0:
                raise ValueError(f"{field.name} must be positive, got {value!r}")
        if self.advertise_url and not self.advertise_url.startswith(("http://", "https://")):
            raise ValueError(
                f"advertise_url must start with http:// or https://, got {self.advertise_url!r}"
            )

    @property
    def sessions_per_subject(self) -> int:
        """:attr:`max_sessions_per_subject`, or half of :attr:`max_sessions` when 0."""
        return self.max_sessions_per_subject or max(1, self.max_sessions // 2)

    @property
    def instance_name(self) -> str:
        """:attr:`instance`, or the host name when it is empty."""
        return self.instance or socket.gethostname()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Read ``SESSION_PROXY_<FIELD>`` variables (e.g. ``SESSION_PROXY_PAGE_SIZE``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(env_variable(field))
            if raw is None:
                continue
            try:
                values[field.name] = value_parser(field)(raw)
            except ValueError:
                raise ValueError(
                    f"{env_variable(field)}={raw!r} is not a valid {field.type}"
                ) from None
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> ServerConfig:
        """The config of a namespace parsed with :func:`add_arguments`' flags."""
        values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)}
        values.update(overrides)
        return cls(**values)


def option_of(field: dataclasses.Field) -> Option:
    """The command-line :class:`Option` of a :class:`ServerConfig` field."""
    return field.metadata["option"]


def flag(field: dataclasses.Field) -> str:
    """A field's command-line flag, e.g. ``--lease-seconds``."""
    return option_of(field).flag or "--" + field.name.replace("_", "-")


def env_variable(field: dataclasses.Field) -> str:
    """A field's environment variable, e.g. ``SESSION_PROXY_LEASE_SECONDS``."""
    return ENV_PREFIX + field.name.upper()


def _boolean(text: str) -> bool:
    """A boolean setting's text: 1/true/yes/on or 0/false/no/off."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "str": str, "bool": _boolean
}


def value_parser(field: dataclasses.Field) -> Callable[[str], Any]:
    """What turns a flag's or a variable's text into the field's value."""
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    return _PARSERS[kind]


def add_arguments(
    parser: argparse.ArgumentParser, groups: Mapping[str, Any] | None = None
) -> None:
    """Add a flag for every :class:`ServerConfig` field to ``parser``.

    ``groups`` maps an :attr:`Option.group` name to the argparse group its
    flags go in (by default one is made per name).
    """
    made: dict[str, Any] = {"": parser, **(groups or {})}
    for field in dataclasses.fields(ServerConfig):
        option = option_of(field)
        if option.group not in made:
            made[option.group] = parser.add_argument_group(option.group)
        if field.type in ("bool", bool):
            made[option.group].add_argument(
                flag(field), dest=field.name, action="store_true", default=field.default,
                help=option.help,
            )
            continue
        made[option.group].add_argument(
            flag(field),
            dest=field.name,
            type=value_parser(field),
            default=field.default,
            metavar=option.metavar,
            help=option.help,
        )
