"""Checks of request bodies, run by the server before anything runs.

A ``/v1/pipeline`` or ``/v1/operations/<name>`` body, and the idempotency key
header, are checked field by field against the protocol
(:mod:`session_proxy.wire.protocol`, :mod:`session_proxy.wire.messages`); the
first problem raises :class:`ProtocolError` naming the field, so a bad request
gets a 400 and changes nothing.  Server-only: the client builds its messages
with the dataclasses and never needs these checks.
"""

from __future__ import annotations

from typing import Any

from session_proxy.wire.errors import ProtocolError
from session_proxy.wire.messages import STEP_FIELDS
from session_proxy.wire.protocol import (
    BEGIN,
    CLOSE,
    COMMIT,
    CONNECTION_OPTIONS,
    EXECUTE,
    EXECUTE_MANY,
    EXECUTE_SCRIPT,
    FETCH,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_HEADER,
    ISOLATION_LEVELS,
    MAX_SESSION_BYTES,
    MAX_SESSION_STATEMENTS,
    PIPELINE_FIELDS,
    PROTOCOL_VERSION,
    ROLLBACK,
    SESSION_FIELDS,
    STEP_OPS,
    UNSUPPORTED_PROTOCOL,
)

__all__ = [
    "check_idempotency_key",
    "decode_step_params",
    "parse_operation_request",
    "parse_pipeline_request",
    "parse_session_request",
]


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


def _check_session(step: dict, index: int) -> None:
    """The ``session`` prologue of a begin: a bounded list of non-empty strings."""
    if "session" not in step:
        return
    session = step["session"]
    _require(
        isinstance(session, list),
        f"step {index} (begin): 'session' must be a list of statements, "
        f"got {type(session).__name__}",
    )
    _require(
        len(session) <= MAX_SESSION_STATEMENTS,
        f"step {index} (begin): 'session' has {len(session)} statements, over the "
        f"limit of {MAX_SESSION_STATEMENTS}",
    )
    size = 0
    for position, sql in enumerate(session):
        _require(
            isinstance(sql, str) and sql.strip() != "",
            f"step {index} (begin): 'session'[{position}] must be a non-empty string",
        )
        size += len(sql.encode("utf-8", "surrogatepass"))
    _require(
        size <= MAX_SESSION_BYTES,
        f"step {index} (begin): 'session' statements add up to {size} bytes, over the "
        f"limit of {MAX_SESSION_BYTES}",
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
    session_id = body.get("session_id")
    _require(
        session_id is None or (isinstance(session_id, str) and 0 < len(session_id) <= 200),
        "'session_id' must be null or a session id string",
    )
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
            _check_session(step, index)
        elif op in (EXECUTE, EXECUTE_SCRIPT):
            _check_sql(step, index)
            if op == EXECUTE:
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


def parse_session_request(body: Any) -> None:
    """Validate a decoded ``POST /v1/sessions`` body: ``{"protocol": 1}`` and nothing else."""
    _check_envelope(body)
    unknown = sorted(set(body) - SESSION_FIELDS)
    _require(
        not unknown,
        f"unknown field {unknown[0]!r} in the request body; expected "
        f"{sorted(SESSION_FIELDS)}" if unknown else "",
    )


def parse_operation_request(body: Any) -> tuple[list, dict]:
    """Validate a decoded ``/v1/operations/<name>`` body; return encoded ``(args, kwargs)``."""
    _check_envelope(body)
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    _require(isinstance(args, list), "'args' must be a list")
    _require(isinstance(kwargs, dict), "'kwargs' must be an object")
    return args, kwargs


def check_idempotency_key(key: str | None) -> str | None:
    """``key`` if it is a well-formed idempotency key or None; raises :class:`ProtocolError`."""
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ProtocolError(
            f"{IDEMPOTENCY_KEY_HEADER} must be 16 to 128 characters of "
            "[A-Za-z0-9_-]"
        )
    return key
