"""The messages of the wire protocol as frozen dataclasses.

One class per step of a ``/v1/pipeline`` request (:class:`Begin`,
:class:`Execute`, :class:`ExecuteMany`, :class:`ExecuteScript`, :class:`Fetch`,
:class:`Close`, :class:`Commit`, :class:`Rollback`), the :class:`PipelineReply` that answers
the request, the :class:`StepResult` of one step, the
:class:`ErrorBody` of an error answer (defined in :mod:`.protocol`) and the :class:`Handshake` of
``GET /v1/health``.  Each has one encoder (``to_json``: the JSON object sent,
key for key what travels on the wire) and one decoder (``from_json``).  Step
field names, such as ``expect_rowcount`` and ``check_group``, are spelled here
and nowhere else: :data:`STEP_FIELDS` is derived from the dataclasses.

``from_json`` of a step trusts its input's shape: the server checks a request
first (``server/requests_validation.py``), naming the first bad field, and
only then decodes.  Values inside (parameters, rows) stay encoded with
:mod:`session_proxy.wire.codec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from . import protocol
from .errors import ProtocolError
from .protocol import ErrorBody, omit_none

__all__ = [
    "STEP_FIELDS",
    "STEP_TYPES",
    "Begin",
    "Close",
    "Commit",
    "ErrorBody",
    "Execute",
    "ExecuteMany",
    "ExecuteScript",
    "Expectation",
    "Fetch",
    "Handshake",
    "PipelineReply",
    "Rollback",
    "SessionGrant",
    "Step",
    "StepResult",
    "decode_step",
    "encode_steps",
]


@dataclasses.dataclass(frozen=True)
class Begin:
    """Opens the lease with connection ``options`` (first step only).

    ``session``: the client connection's connect-time statements, run first
    on the leased connection (sent only when there are some).
    """

    op: ClassVar[str] = protocol.BEGIN
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    session: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body = {"op": self.op, "options": dict(self.options)}
        if self.session:
            body["session"] = list(self.session)
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Begin:
        return cls(dict(body.get("options", {})), tuple(body.get("session", ())))


@dataclasses.dataclass(frozen=True)
class Expectation:
    """A rowcount check: ``expect_rowcount`` summed over a ``check_group``."""

    expect_rowcount: int
    check_group: int

    @classmethod
    def of(cls, step: Mapping[str, Any]) -> Expectation | None:
        """The expectation an encoded step carries, or None."""
        if "expect_rowcount" not in step and "check_group" not in step:
            return None
        return cls(step["expect_rowcount"], step["check_group"])


@dataclasses.dataclass(frozen=True)
class Execute:
    """Runs ``sql`` once with ``params`` (encoded values, or None)."""

    op: ClassVar[str] = protocol.EXECUTE
    sql: str
    params: Any = None
    expect_rowcount: int | None = None
    check_group: int | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"op": self.op, "sql": self.sql, "params": self.params}
        return omit_none(
            body, expect_rowcount=self.expect_rowcount, check_group=self.check_group
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Execute:
        return cls(
            body["sql"], body.get("params"), body.get("expect_rowcount"),
            body.get("check_group"),
        )


@dataclasses.dataclass(frozen=True)
class ExecuteMany:
    """Runs ``sql`` once per entry of ``seq_of_params``."""

    op: ClassVar[str] = protocol.EXECUTE_MANY
    sql: str
    seq_of_params: list = dataclasses.field(default_factory=list)
    expect_rowcount: int | None = None
    check_group: int | None = None

    def to_json(self) -> dict[str, Any]:
        body = {"op": self.op, "sql": self.sql, "seq_of_params": self.seq_of_params}
        return omit_none(
            body, expect_rowcount=self.expect_rowcount, check_group=self.check_group
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ExecuteMany:
        return cls(
            body["sql"], list(body["seq_of_params"]), body.get("expect_rowcount"),
            body.get("check_group"),
        )


@dataclasses.dataclass(frozen=True)
class ExecuteScript:
    """Runs the statements of ``sql`` one after another (sqlite3 ``executescript``)."""

    op: ClassVar[str] = protocol.EXECUTE_SCRIPT
    sql: str

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "sql": self.sql}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ExecuteScript:
        return cls(body["sql"])


@dataclasses.dataclass(frozen=True)
class Fetch:
    """Fetches up to ``n`` more rows of server-side ``cursor``."""

    op: ClassVar[str] = protocol.FETCH
    cursor: str
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "cursor": self.cursor, "n": self.n}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Fetch:
        return cls(body["cursor"], body["n"])


@dataclasses.dataclass(frozen=True)
class Close:
    """Closes server-side ``cursor`` early."""

    op: ClassVar[str] = protocol.CLOSE
    cursor: str

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "cursor": self.cursor}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Close:
        return cls(body["cursor"])


@dataclasses.dataclass(frozen=True)
class Commit:
    """Commits and ends the lease (last step only)."""

    op: ClassVar[str] = protocol.COMMIT

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Commit:
        return cls()


@dataclasses.dataclass(frozen=True)
class Rollback:
    """Rolls back and ends the lease (last step only)."""

    op: ClassVar[str] = protocol.ROLLBACK

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Rollback:
        return cls()


Step = Begin | Execute | ExecuteMany | ExecuteScript | Fetch | Close | Commit | Rollback

#: The class of each step op.
STEP_TYPES: dict[str, type[Step]] = {
    cls.op: cls
    for cls in (Begin, Execute, ExecuteMany, ExecuteScript, Fetch, Close, Commit, Rollback)
}
#: The fields each step op may carry; any other key is refused.
STEP_FIELDS: dict[str, frozenset[str]] = {
    op: frozenset({"op", *(field.name for field in dataclasses.fields(cls))})
    for op, cls in STEP_TYPES.items()
}


def decode_step(body: Mapping[str, Any]) -> Step:
    """The message of a checked step object."""
    return STEP_TYPES[body["op"]].from_json(body)


def encode_steps(steps: list[Step]) -> list[dict[str, Any]]:
    """The JSON objects of ``steps``, in order."""
    return [step.to_json() for step in steps]


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one step answered (only the fields a step sets are sent)."""

    description: list | None = None
    rowcount: int | None = None
    lastrowid: Any = None
    rows: list | None = None
    tagged: list[int] | None = None
    cursor: str | None = None
    done: bool | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> StepResult:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in body.items() if key in names})


@dataclasses.dataclass(frozen=True)
class PipelineReply:
    """What a successful ``/v1/pipeline`` request answers.

    ``read_only`` is sent, true, when the transaction stays open and has so
    far run only statements that provably read and took no row locks
    (``session_proxy_server.sql.writes``), at an isolation level whose
    COMMIT of a reader cannot fail in a way that matters (not PostgreSQL's or
    MySQL's ``SERIALIZABLE``).  The client then commits such a transaction
    without waiting for the answer (:mod:`session_proxy.background`).
    """

    txn: str | None
    results: list
    #: The instance holding the lease, on the reply that opened it.
    instance: str | None = None
    #: That instance's own address, when the server was given one.
    base_url: str | None = None
    read_only: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return omit_none(
            {"txn": self.txn, "results": self.results},
            instance=self.instance,
            base_url=self.base_url,
            read_only=self.read_only,
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PipelineReply:
        txn, base_url = body.get("txn"), body.get("base_url")
        instance = body.get("instance")
        return cls(
            txn if isinstance(txn, str) else None,
            body.get("results"),  # type: ignore[arg-type]  # checked by the client
            instance if isinstance(instance, str) else None,
            base_url if isinstance(base_url, str) else None,
            body.get("read_only") is True,
        )


@dataclasses.dataclass(frozen=True)
class SessionGrant:
    """What ``POST /v1/sessions`` answers: a server session held for the client.

    ``session_id`` goes with every pipeline request of the client
    connection; ``idle_seconds`` is how long the session may sit unused
    before the server closes it; ``base_url`` (when the server has one) is
    the instance holding it, where all of its requests go.
    """

    session_id: str
    idle_seconds: float
    instance: str | None = None
    base_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return omit_none(
            {"session_id": self.session_id, "idle_seconds": self.idle_seconds},
            instance=self.instance,
            base_url=self.base_url,
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SessionGrant:
        session_id, idle = body.get("session_id"), body.get("idle_seconds")
        if not isinstance(session_id, str) or type(idle) not in (int, float):
            raise ProtocolError(f"malformed session grant: {sorted(body)}")
        instance, base_url = body.get("instance"), body.get("base_url")
        return cls(
            session_id,
            float(idle),
            instance if isinstance(instance, str) else None,
            base_url if isinstance(base_url, str) else None,
        )


@dataclasses.dataclass(frozen=True)
class Handshake:
    """What ``GET /v1/health`` tells a client about the server."""

    protocol: int
    dialect: str
    driver: str
    server_version_info: tuple
    paramstyle: str
    server_version: str
    page_size: int
    max_body_bytes: int
    lease_seconds: float
    charset: str | None = None
    capabilities: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["server_version_info"] = list(self.server_version_info)
        body["capabilities"] = list(self.capabilities)
        body["status"] = "ok"
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Handshake:
        try:
            return cls(
                protocol=int(body["protocol"]),
                dialect=str(body["dialect"]),
                driver=str(body["driver"]),
                server_version_info=tuple(body["server_version_info"]),
                paramstyle=str(body["paramstyle"]),
                server_version=str(body["server_version"]),
                page_size=int(body["page_size"]),
                max_body_bytes=int(body["max_body_bytes"]),
                lease_seconds=float(body["lease_seconds"]),
                charset=body.get("charset"),
                capabilities=tuple(body.get("capabilities", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed handshake: {exc!r}") from None


