"""The wire package stays light and keeps the bytes it always sent.

That the server depends on it alone (of the client) is checked with the other import
rules in ``tests/test_layers.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_wire_loads_no_requests_sqlalchemy_or_client() -> None:
    code = (
        "import sys, json, session_proxy.wire, session_proxy.wire.messages, "
        "session_proxy.wire.codec; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    loaded = json.loads(out)
    assert not [m for m in loaded if m == "requests" or m.startswith("requests.")]
    assert not [m for m in loaded if m.startswith("sqlalchemy")]
    client = [m for m in loaded if m.startswith("session_proxy.")
              and not m.startswith("session_proxy.wire") and m != "session_proxy.stats"]
    assert client == []


def test_step_messages_encode_what_the_client_sent_before() -> None:
    from session_proxy.wire import messages

    step = messages.Execute("SELECT 1", [1], expect_rowcount=1, check_group=2)
    assert list(step.to_json()) == ["op", "sql", "params", "expect_rowcount", "check_group"]
    assert messages.decode_step(step.to_json()) == step
    assert messages.Execute("x").to_json() == {"op": "execute", "sql": "x", "params": None}
    assert messages.STEP_FIELDS["execute_many"] == {
        "op", "sql", "seq_of_params", "expect_rowcount", "check_group"}


def test_pipeline_bytes_match_the_pre_wire_dicts() -> None:
    """The bytes sent are those of the hand-built dicts of protocol version 1."""
    from session_proxy.wire import messages, protocol
    from session_proxy.wire.codec import dumps

    steps = [
        messages.Begin({"isolation_level": "SERIALIZABLE"}),
        messages.Execute("UPDATE t SET a = ?", [1], expect_rowcount=1, check_group=1),
        messages.ExecuteMany("INSERT INTO t VALUES (?)", [[1], [2]]),
        messages.Fetch("c1", 50),
        messages.Close("c1"),
        messages.Commit(),
    ]
    old = [
        {"op": "begin", "options": {"isolation_level": "SERIALIZABLE"}},
        {"op": "execute", "sql": "UPDATE t SET a = ?", "params": [1],
         "expect_rowcount": 1, "check_group": 1},
        {"op": "execute_many", "sql": "INSERT INTO t VALUES (?)", "seq_of_params": [[1], [2]]},
        {"op": "fetch", "cursor": "c1", "n": 50},
        {"op": "close", "cursor": "c1"},
        {"op": "commit"},
    ]
    assert protocol.PROTOCOL_VERSION == 1
    assert dumps(protocol.pipeline_request("t1", messages.encode_steps(steps))) == dumps(
        {"protocol": 1, "txn": "t1", "steps": old}
    )
    assert [messages.decode_step(step) for step in old] == steps
    assert dumps(protocol.error_body("bad_request", "m", step=2, txn=None)) == dumps(
        {"error": {"code": "bad_request", "message": "m", "step": 2}}
    )


def test_error_fields_are_declared_not_patched() -> None:
    from session_proxy import errors
    from session_proxy.wire.errors import WireError

    for cls in (errors.Error, errors.ProxyError, errors.IntegrityError, errors.ServerBusy):
        assert issubclass(cls, WireError)
        for name in ("code", "status", "txn", "step", "request_id"):
            assert name in WireError.__annotations__
            assert getattr(cls, name, "missing") != "missing"
    exc = errors.TransactionLost("gone").annotate(status=404, txn=5, step=1, request_id="r")
    assert (exc.status, exc.txn, exc.step, exc.request_id) == (404, None, 1, "r")
