"""The session-proxy wire protocol, defined once for client and server.

Everything is JSON over HTTP.  Values inside messages (parameters, rows, error
arguments) are encoded with :mod:`session_proxy.codec`.

``GET /v1/health``
    Liveness and handshake.  Without a token it answers only ``{"status":
    "ok", "protocol": 1}`` (503 ``shutting_down`` while draining); with a
    valid token (the client sends one) it adds the handshake: backend
    dialect and driver, server version info, paramstyle and the server's
    limits (see :class:`Handshake`).  A bad token is 401.

``GET /v1/metrics``
    Prometheus text, for the roles allowed to read it (``--metrics-role``,
    default ``admin``, or ``"metrics": true`` in the policy); others get 403.

``POST /v1/pipeline``
    ``{"protocol": 1, "txn": null | ID, "steps": [STEP, ...]}`` runs the steps
    in order on one server-held connection and answers ``{"txn": ID | null,
    "results": [RESULT, ...]}``.  A request without ``txn`` leases a new
    connection; the answer names it, and later requests send that id back.
    ``commit``/``rollback`` end the lease.  Steps:

    - ``{"op": "begin", "options": {...}}`` sets connection options
      (``isolation_level``: one of :data:`ISOLATION_LEVELS` the backend has;
      ``read_only``, ``deferrable``: booleans, PostgreSQL only) for the lease;
      allowed only as the first step of a request that opens the lease.

    A step may carry only the fields listed here (:data:`STEP_FIELDS`), each
    of its type; anything else is a 400 naming the field, and nothing runs.
    - ``{"op": "execute", "sql": S, "params": P}`` and
      ``{"op": "execute_many", "sql": S, "seq_of_params": [P, ...]}``.
      The result carries ``description``, ``rowcount``, ``lastrowid``, up to
      one page of ``rows`` and, when more rows remain, a ``cursor`` id.
      ``"tagged": [i, ...]`` lists the columns whose values may be tagged
      (:func:`session_proxy.codec.encode_rows`); without it every value is
      plain JSON.  Either may carry ``"expect_rowcount": N`` and ``"check_group": G``:
      consecutive steps with the same group are a rowcount check; once the
      group's last step has run, the sum of their rowcounts must equal the
      sum of their expected counts, or the request fails with
      ``rowcount_mismatch`` (naming both sums) before any later step runs.
      Pipelined flushes use this to move the ORM's stale-data check to the
      server.
    - ``{"op": "fetch", "cursor": C, "n": N}`` returns up to N more rows and
      ``"done": true`` once the cursor is exhausted and closed.
    - ``{"op": "close", "cursor": C}`` closes a server-side cursor early.
    - ``{"op": "commit"}`` / ``{"op": "rollback"}`` end the transaction and
      return the connection to the server's pool.

    A failing step stops the pipeline: the error names the step index, the
    lease stays open (unless it was lost) and earlier results are discarded.

``POST /v1/operations/<name>``
    ``{"protocol": 1, "args": [...], "kwargs": {...}}`` runs one logical
    operation in one transaction and answers ``{"result": ...}``.  Values use
    :mod:`session_proxy.values` (the codec plus ORM instances).  An exception
    raised by the operation answers ``operation_error`` with ``exception``:
    its type name, message and args.

Idempotency and retries: a client sends ``Idempotency-Key: K`` (a random
key of its own, one per request) on pipeline and operation requests, and the
same key on every retry of that request, with ``X-Retry-Attempt: N``.  The
server never runs one key twice: a retry of a request that already ran on
an open transaction gets that request's recorded response; a commit, or a
logical call, that wrote anything records its response in the database in
the same transaction (table ``session_proxy_outcomes``), so a retry after a
lost response, even on a restarted server, gets the recorded outcome, and
an unknown key on a gone transaction means it did not commit.  Replayed
responses carry ``X-Idempotent-Replay: true``.  A record answers only the
request that made it: same subject, same role and the same method, path
and body bytes; a key that names another request is 409
``idempotency_conflict`` and nothing runs.

Instances: a transaction id names the server instance that holds it
(``INSTANCE-BOOT-RANDOM``); the response that opens a transaction also
carries ``instance`` and, when the server was given one, ``base_url``: the
address of that instance, where the client sends the transaction's
follow-up requests.  An instance that gets a request for another instance's
transaction answers 421 ``wrong_instance``; one that restarted since the
transaction began answers ``unknown_transaction`` saying so.

Every endpoint but health wants ``Authorization: Bearer <token>``, an
Ed25519-signed token (see ``server/auth.py``); without a valid one the
answer is 401 ``unauthorized`` with the reason.  A statement or operation the
caller's role may not run is 403 ``policy_violation`` with the statement's
``fingerprint`` and ``refused_step``; no step of that request runs.

Errors, on every endpoint: ``{"error": {"code": CODE, "message": TEXT, ...}}``
with the HTTP status of :data:`ERROR_STATUS`.  A database error adds
``dbapi_class`` (the PEP 249 class name), ``args``, ``sqlstate`` / ``errno``
where the driver gives one, and ``step``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-Session-Proxy-Protocol"
REQUEST_ID_HEADER = "X-Request-Id"
#: A client-chosen key naming one request; a retry sends the same key.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
#: 1, 2, ... on the retries of a request (absent on its first attempt).
RETRY_ATTEMPT_HEADER = "X-Retry-Attempt"
#: "true" on a response the server answered from its record of an earlier attempt.
REPLAYED_HEADER = "X-Idempotent-Replay"
#: Idempotency keys: 16 to 128 characters of ``[A-Za-z0-9_-]``.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")

HEALTH_PATH = "/v1/health"
PIPELINE_PATH = "/v1/pipeline"
METRICS_PATH = "/v1/metrics"
OPERATIONS_PREFIX = "/v1/operations/"
OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# Response headers with per-request measurements.
SERVER_TIME_HEADER = "X-Server-Time"
STATEMENTS_HEADER = "X-Statements"
TRANSACTION_TIME_HEADER = "X-Transaction-Seconds"

JSON_CONTENT_TYPE = "application/json"

# Step operations.
BEGIN = "begin"
EXECUTE = "execute"
EXECUTE_MANY = "execute_many"
FETCH = "fetch"
CLOSE = "close"
COMMIT = "commit"
ROLLBACK = "rollback"
STEP_OPS = frozenset({BEGIN, EXECUTE, EXECUTE_MANY, FETCH, CLOSE, COMMIT, ROLLBACK})

CONNECTION_OPTIONS = frozenset({"isolation_level", "read_only", "deferrable"})
#: Every isolation level a ``begin`` may name; each backend accepts a subset
#: (the server refuses the others, naming the ones it has).
ISOLATION_LEVELS = frozenset(
    {"AUTOCOMMIT", "READ COMMITTED", "READ UNCOMMITTED", "REPEATABLE READ", "SERIALIZABLE"}
)
#: The fields each step op may carry; any other key is refused.
STEP_FIELDS: dict[str, frozenset[str]] = {
    BEGIN: frozenset({"op", "options"}),
    EXECUTE: frozenset({"op", "sql", "params", "expect_rowcount", "check_group"}),
    EXECUTE_MANY: frozenset({"op", "sql", "seq_of_params", "expect_rowcount", "check_group"}),
    FETCH: frozenset({"op", "cursor", "n"}),
    CLOSE: frozenset({"op", "cursor"}),
    COMMIT: frozenset({"op"}),
    ROLLBACK: frozenset({"op"}),
}
#: The keys of a ``/v1/pipeline`` body.
PIPELINE_FIELDS = frozenset({"protocol", "txn", "steps"})

# Error codes and the HTTP status each is sent with.
BAD_REQUEST = "bad_request"
UNSUPPORTED_PROTOCOL = "unsupported_protocol"
UNKNOWN_TRANSACTION = "unknown_transaction"
TRANSACTION_EXPIRED = "transaction_expired"
UNKNOWN_CURSOR = "unknown_cursor"
TOO_LARGE = "request_too_large"
TOO_MANY_TRANSACTIONS = "too_many_transactions"
TRANSACTION_BUSY = "transaction_busy"
DATABASE_ERROR = "database_error"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
INTERNAL_ERROR = "internal_error"
UNKNOWN_OPERATION = "unknown_operation"
BAD_ARGUMENTS = "bad_arguments"
OPERATION_ERROR = "operation_error"
ROWCOUNT_MISMATCH = "rowcount_mismatch"
UNAUTHORIZED = "unauthorized"
POLICY_VIOLATION = "policy_violation"
SUBJECT_LIMIT = "subject_limit"
UNSAFE_PAYLOAD = "unsafe_payload"
WRONG_INSTANCE = "wrong_instance"
SHUTTING_DOWN = "shutting_down"
STALE_REQUEST = "stale_request"
#: Statement or parameter text the database would read differently from the server.
UNSAFE_STATEMENT = "unsafe_statement"
#: A statement whose effect would outlive its transaction or reach the
#: proxy's own records; refused whatever the policy (server.session_guard).
ISOLATION_VIOLATION = "isolation_violation"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"

ERROR_STATUS: dict[str, int] = {
    BAD_REQUEST: 400,
    UNSUPPORTED_PROTOCOL: 400,
    UNKNOWN_CURSOR: 400,
    BAD_ARGUMENTS: 400,
    UNSAFE_PAYLOAD: 400,
    UNSAFE_STATEMENT: 400,
    UNAUTHORIZED: 401,
    POLICY_VIOLATION: 403,
    ISOLATION_VIOLATION: 403,
    UNKNOWN_OPERATION: 404,
    OPERATION_ERROR: 422,
    UNKNOWN_TRANSACTION: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    TRANSACTION_BUSY: 409,
    STALE_REQUEST: 409,
    IDEMPOTENCY_CONFLICT: 409,
    ROWCOUNT_MISMATCH: 409,
    TRANSACTION_EXPIRED: 410,
    TOO_LARGE: 413,
    DATABASE_ERROR: 422,
    WRONG_INSTANCE: 421,
    SUBJECT_LIMIT: 429,
    INTERNAL_ERROR: 500,
    TOO_MANY_TRANSACTIONS: 503,
    SHUTTING_DOWN: 503,
}

#: Errors after which nothing ran, so any request may be sent again.
RETRYABLE_ERRORS = frozenset({TOO_MANY_TRANSACTIONS, SHUTTING_DOWN, TRANSACTION_BUSY})

# PEP 249 exception class names a database error may carry.
DBAPI_ERROR_CLASSES = (
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
)


def same_backend(first: str, second: str) -> bool:
    """Whether two dialect names address the same kind of server (mysql = mariadb)."""
    family = {"mariadb": "mysql"}
    return family.get(first, first) == family.get(second, second)


class ProtocolError(ValueError):
    """A message does not follow the protocol; ``code`` is its error code."""

    def __init__(self, message: str, code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


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


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    error.update({key: value for key, value in extra.items() if value is not None})
    return {"error": error}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProtocolError(message)


def _check_sql(step: dict, index: int) -> None:
    _require(
        isinstance(step.get("sql"), str) and step["sql"] != "",
        f"step {index} ({step['op']}): 'sql' must be a non-empty string",
    )


def _check_expectation(step: dict, index: int) -> None:
    if "expect_rowcount" not in step and "check_group" not in step:
        return
    expected = step.get("expect_rowcount")
    group = step.get("check_group")
    _require(
        type(expected) is int and expected >= 0,
        f"step {index} ({step['op']}): 'expect_rowcount' must be a non-negative integer",
    )
    _require(
        type(group) is int,
        f"step {index} ({step['op']}): 'check_group' must be an integer",
    )


def _check_cursor(step: dict, index: int) -> None:
    _require(
        isinstance(step.get("cursor"), str),
        f"step {index} ({step['op']}): 'cursor' must be a cursor id string",
    )


def _check_envelope(body: Any) -> None:
    _require(isinstance(body, dict), "request body must be a JSON object")
    version = body.get("protocol")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {_short(version)} in 'protocol'; "
            f"this server speaks version {PROTOCOL_VERSION}",
            UNSUPPORTED_PROTOCOL,
        )


def _check_fields(step: dict, index: int, op: str) -> None:
    unknown = sorted(set(step) - STEP_FIELDS[op])
    _require(
        not unknown,
        f"step {index} ({op}): unknown field {unknown[0]!r}; a {op!r} step has "
        f"{sorted(STEP_FIELDS[op])}" if unknown else "",
    )


def _check_options(step: dict, index: int) -> None:
    options = step.get("options", {})
    _require(
        isinstance(options, dict),
        f"step {index} (begin): 'options' must be an object, got {type(options).__name__}",
    )
    unknown = sorted(set(options) - CONNECTION_OPTIONS)
    _require(
        not unknown,
        f"step {index} (begin): unknown option {unknown[0]!r} in 'options'; "
        f"expected some of {sorted(CONNECTION_OPTIONS)}" if unknown else "",
    )
    if "isolation_level" in options:
        level = options["isolation_level"]
        _require(
            isinstance(level, str) and level in ISOLATION_LEVELS,
            f"step {index} (begin): 'isolation_level' must be one of "
            f"{sorted(ISOLATION_LEVELS)}, got {_short(level)}",
        )
    for name in ("read_only", "deferrable"):
        if name in options:
            _require(
                type(options[name]) is bool,
                f"step {index} (begin): {name!r} must be true or false, "
                f"got {_short(options[name])}",
            )


def _short(value: Any) -> str:
    """``repr(value)``, cut short so an error message stays readable."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_params(params: Any, index: int, op: str, field: str) -> None:
    _require(
        params is None or isinstance(params, (list, dict)),
        f"step {index} ({op}): {field!r} must be a list, an object or null, "
        f"got {type(params).__name__}",
    )


def _check_seq_of_params(step: dict, index: int) -> None:
    seq = step.get("seq_of_params")
    _require(
        isinstance(seq, list),
        f"step {index} (execute_many): 'seq_of_params' must be a list, "
        f"got {type(seq).__name__}",
    )
    kinds = set()
    for position, params in enumerate(seq):
        _require(
            isinstance(params, (list, dict)),
            f"step {index} (execute_many): 'seq_of_params'[{position}] must be a list "
            f"or an object, got {type(params).__name__}",
        )
        kinds.add(type(params))
    _require(
        len(kinds) <= 1,
        f"step {index} (execute_many): 'seq_of_params' mixes lists and objects",
    )


def parse_pipeline_request(body: Any) -> tuple[str | None, list[dict]]:
    """Validate a decoded ``/v1/pipeline`` body; return ``(txn, steps)``.

    Every field of every step is checked (type, allowed values, no unknown
    keys); step parameters are left encoded.  Raises :class:`ProtocolError`
    naming the first problem found and the field; nothing has run then.
    """
    _check_envelope(body)
    unknown = sorted(set(body) - PIPELINE_FIELDS)
    _require(
        not unknown,
        f"unknown field {unknown[0]!r} in the request body; expected "
        f"{sorted(PIPELINE_FIELDS)}" if unknown else "",
    )
    txn = body.get("txn")
    _require(txn is None or isinstance(txn, str), "'txn' must be null or a string")
    steps = body.get("steps")
    _require(
        isinstance(steps, list) and len(steps) > 0, "'steps' must be a non-empty list"
    )
    for index, step in enumerate(steps):
        _require(isinstance(step, dict), f"step {index} must be a JSON object")
        op = step.get("op")
        _require(
            isinstance(op, str) and op in STEP_OPS,
            f"step {index}: unknown 'op' {_short(op)}; expected one of {sorted(STEP_OPS)}",
        )
        _check_fields(step, index, op)
        if op == BEGIN:
            _require(
                index == 0 and txn is None,
                f"step {index}: 'begin' must be the first step of a request "
                "without a transaction id",
            )
            _check_options(step, index)
        elif op == EXECUTE:
            _check_sql(step, index)
            _check_params(step.get("params"), index, op, "params")
            _check_expectation(step, index)
        elif op == EXECUTE_MANY:
            _check_sql(step, index)
            _check_seq_of_params(step, index)
            _check_expectation(step, index)
        elif op == FETCH:
            _check_cursor(step, index)
            n = step.get("n")
            _require(
                type(n) is int and n > 0,
                f"step {index} (fetch): 'n' must be a positive integer, got {_short(n)}",
            )
        elif op == CLOSE:
            _check_cursor(step, index)
        elif op in (COMMIT, ROLLBACK):
            _require(
                index == len(steps) - 1,
                f"step {index}: {op!r} ends the transaction and must be the last step",
            )
    return txn, steps


def decode_step_params(steps: list[dict], decode: Any) -> None:
    """Decode the parameters of every step in place with ``decode``.

    Raises :class:`ProtocolError` naming the step whose values are malformed,
    before any step has run.
    """
    for index, step in enumerate(steps):
        field = "params"
        try:
            if "params" in step and step["params"] is not None:
                step["params"] = decode(step["params"])
            field = "seq_of_params"
            if "seq_of_params" in step:
                step["seq_of_params"] = [decode(p) for p in step["seq_of_params"]]
        except ValueError as exc:
            raise ProtocolError(
                f"step {index}: bad parameter value in {field!r}: {exc}"
            ) from None


def parse_operation_request(body: Any) -> tuple[list, dict]:
    """Validate a decoded ``/v1/operations/<name>`` body; return encoded ``(args, kwargs)``."""
    _check_envelope(body)
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    _require(isinstance(args, list), "'args' must be a list")
    _require(isinstance(kwargs, dict), "'kwargs' must be an object")
    return args, kwargs


def operation_request(args: Any, kwargs: Any) -> dict[str, Any]:
    """The body of a ``/v1/operations/<name>`` request (values already encoded)."""
    return {"protocol": PROTOCOL_VERSION, "args": args, "kwargs": kwargs}


def pipeline_request(txn: str | None, steps: list[dict]) -> dict[str, Any]:
    """The body of a ``/v1/pipeline`` request."""
    return {"protocol": PROTOCOL_VERSION, "txn": txn, "steps": steps}


def check_idempotency_key(key: str | None) -> str | None:
    """``key`` if it is a well-formed idempotency key or None; raises :class:`ProtocolError`."""
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ProtocolError(
            f"{IDEMPOTENCY_KEY_HEADER} must be 16 to 128 characters of "
            "[A-Za-z0-9_-]"
        )
    return key
