"""Server settings, from keyword arguments, the CLI or the environment."""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

ENV_PREFIX = "SESSION_PROXY_"


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
        request is kept for a retry to find (see :mod:`server.outcomes`).
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
    """

    lease_seconds: float = 60.0
    max_transactions: int = 64
    page_size: int = 5000
    max_body_bytes: int = 32 * 1024 * 1024
    expired_memory_seconds: float = 600.0
    lock_wait_seconds: float = 30.0
    statement_timeout_seconds: float = 300.0
    max_transaction_seconds: float = 900.0
    max_transactions_per_subject: int = 32
    outcome_window_seconds: float = 3600.0
    outcome_memory_bytes: int = 64 * 1024 * 1024
    drain_seconds: float = 30.0
    instance: str = ""
    advertise_url: str = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str):
                continue
            if value <= 0:
                raise ValueError(f"{field.name} must be positive, got {value!r}")
        if self.advertise_url and not self.advertise_url.startswith(("http://", "https://")):
            raise ValueError(
                f"advertise_url must start with http:// or https://, got {self.advertise_url!r}"
            )

    @property
    def instance_name(self) -> str:
        """:attr:`instance`, or the host name when it is empty."""
        return self.instance or socket.gethostname()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerConfig:
        """Read ``SESSION_PROXY_<FIELD>`` variables (e.g. ``SESSION_PROXY_PAGE_SIZE``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            if field.type in ("str", str):
                values[field.name] = raw
                continue
            kind = int if field.type in ("int", int) else float
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a valid "
                    f"{kind.__name__}"
                ) from None
        return cls(**values)
