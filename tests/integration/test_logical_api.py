"""The logical API over real HTTP, on every backend.

Operations from :mod:`tests.operations_for_tests` run locally (a session of a
direct engine) and remotely (a ``session-proxy-server`` started with
``--operations tests.operations_for_tests``).  What the database holds
afterwards is always checked with a direct engine, never through the API
under test.  Every mode switch goes through ``operation_mode`` so nothing
stays configured for the other test modules.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from session_proxy import errors, remote_operation
from session_proxy.logical import RemoteClient, operation_mode
from tests import operations_for_tests as ops
from tests.conftest import REPO, ServerProcess

OPS_MODULE = "tests.operations_for_tests"
OPS_PREFIX = OPS_MODULE + "."
Note = ops.Note
NOTES = Note.__table__


@remote_operation
def client_only_operation(*, session: Session) -> int:
    """Registered in the test process only; the server never imports this module."""
    return 1


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ops_server(db_url: str) -> Iterator[ServerProcess]:
    """A server exposing the test operations, one per backend."""
    proc = ServerProcess(db_url, "--operations", OPS_MODULE)
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def notes_table(direct_engine: sa.Engine) -> Iterator[None]:
    """A fresh, empty ``sp_logical_note`` table around each test."""
    ops.Base.metadata.drop_all(direct_engine)
    ops.Base.metadata.create_all(direct_engine)
    yield
    ops.Base.metadata.drop_all(direct_engine)


@pytest.fixture
def client(ops_server: ServerProcess) -> Iterator[RemoteClient]:
    remote = RemoteClient(ops_server.url, token=ops_server.token)
    yield remote
    remote.close()


@contextlib.contextmanager
def local(engine: sa.Engine) -> Iterator[None]:
    """Run operations in this process on sessions of ``engine``."""
    with operation_mode(session_factory=sessionmaker(bind=engine)):
        yield


@contextlib.contextmanager
def remote(client: RemoteClient) -> Iterator[None]:
    """Send operations to the server of ``client``."""
    with operation_mode(client=client):
        yield


def stored_notes(engine: sa.Engine) -> dict[int, str]:
    """The committed notes, read with a direct engine."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(NOTES.c.id, NOTES.c.text)).all())


def columns(note: Any) -> dict[str, Any] | None:
    """A Note's loaded column values (None stays None)."""
    if note is None:
        return None
    return {attr.key: sa.inspect(note).dict.get(attr.key) for attr in Note.__mapper__.column_attrs}


def assert_detached_note(note: Any, id: int, text: str) -> None:
    assert type(note) is Note
    state = sa.inspect(note)
    assert state.detached is True
    assert state.identity == (id,)
    assert not state.unloaded, f"unloaded attributes {state.unloaded}"
    assert state.dict["id"] == id and state.dict["text"] == text
    assert (note.id, note.text) == (id, text)


# -- results --------------------------------------------------------------------


def test_local_and_remote_calls_agree(direct_engine: sa.Engine, client: RemoteClient) -> None:
    with local(direct_engine):
        local_added = ops.add_note(1, "written locally")
    with remote(client):
        remote_added = ops.add_note(2, "written remotely")
    assert_detached_note(local_added, 1, "written locally")
    assert_detached_note(remote_added, 2, "written remotely")
    assert stored_notes(direct_engine) == {1: "written locally", 2: "written remotely"}

    outcomes = {}
    for label, mode in (("local", local(direct_engine)), ("remote", remote(client))):
        with mode:
            outcomes[label] = (
                ops.get_note(1),
                ops.get_note(2),
                ops.get_note(404),
                ops.count_notes(),
            )
    for label, (first, second, missing, count) in outcomes.items():
        assert_detached_note(first, 1, "written locally")
        assert_detached_note(second, 2, "written remotely")
        assert missing is None, label
        assert count == 2, label
    local_out, remote_out = outcomes["local"], outcomes["remote"]
    assert [columns(n) for n in local_out[:3]] == [columns(n) for n in remote_out[:3]]
    assert local_out[3] == remote_out[3]


def test_orm_instance_as_argument(direct_engine: sa.Engine, client: RemoteClient) -> None:
    with remote(client):
        stored = ops.add_note(3, "from the server")
        # A detached instance the server sent, and a transient one built here.
        assert ops.note_text(stored) == "FROM THE SERVER"
        assert ops.note_text(Note(id=77, text="never stored")) == "NEVER STORED"
        assert ops.note_text(note=Note(id=78, text="by keyword")) == "BY KEYWORD"
    with local(direct_engine):
        assert ops.note_text(stored) == "FROM THE SERVER"
    assert stored_notes(direct_engine) == {3: "from the server"}


def test_lists_of_instances_as_result_and_argument(
    direct_engine: sa.Engine, client: RemoteClient
) -> None:
    with local(direct_engine):
        for id in range(1, 6):
            ops.add_note(id, f"note {id}")
        local_notes = ops.list_notes()
    with remote(client):
        remote_notes = ops.list_notes()
        # The server rebuilds the list it is sent as detached instances too.
        assert ops.note_texts(remote_notes) == [f"NOTE {id}" for id in range(1, 6)]
        assert ops.note_texts(local_notes[:1]) == ["NOTE 1"]
        assert ops.note_texts([]) == []
    assert type(remote_notes) is list and len(remote_notes) == 5
    for id, note in enumerate(remote_notes, start=1):
        assert_detached_note(note, id, f"note {id}")
    assert [columns(n) for n in remote_notes] == [columns(n) for n in local_notes]


PARIS = ZoneInfo("Europe/Paris")

ECHO_VALUES: list[tuple[str, Any]] = [
    ("decimal", decimal.Decimal("12345678901234567890.000000001")),
    ("decimal trailing zeros", decimal.Decimal("1.10")),
    ("decimal negative zero", decimal.Decimal("-0.000")),
    ("zoneinfo datetime", datetime.datetime(2026, 7, 1, 12, 30, 15, 123456, tzinfo=PARIS)),
    # 02:30 happens twice in Paris that night; fold=1 is the second one (UTC+1).
    ("zoneinfo datetime fold", datetime.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS)),
    (
        "fixed offset datetime",
        datetime.datetime(
            2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
        ),
    ),
    ("naive datetime", datetime.datetime(2026, 1, 2, 3, 4, 5)),
    ("bytes", b"\x00\xff\x80 binary \n"),
    ("empty bytes", b""),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("tuple", (1, "two", 3.5)),
    ("empty tuple", ()),
    ("list", [1, "two", 3.5]),
    ("tuple of lists", ([1, 2], [3, (4, 5)])),
    ("list of tuples", [(1, 2), [3, (4,)]]),
    (
        "nested dict",
        {
            "a": {"b": [1, {"c": None, "d": (True, False)}]},
            "e": {"$t": "looks tagged", 7: "int key"},
            "f": {(1, 2): "tuple key"},
        },
    ),
    ("big int", 2**64 + 1),
    ("big negative int", -(2**80)),
    ("just above 2**53", 2**53 + 1),
    ("int at 2**53", 2**53),
    ("none", None),
    ("unicode", "h\u00e9llo \u2603 \U0001f600"),
]


def assert_identical(got: Any, expected: Any, path: str = "value") -> None:
    """Equal, of exactly the same types all the way down, zones and folds included."""
    assert type(got) is type(expected), f"{path}: {type(got)} != {type(expected)}"
    if isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), path
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_identical(g, e, f"{path}[{index}]")
    elif isinstance(expected, dict):
        assert list(got) == list(expected), path
        for key in expected:
            assert_identical(got[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, decimal.Decimal):
        assert str(got) == str(expected), path
    elif isinstance(expected, datetime.datetime):
        assert got == expected, path
        assert got.fold == expected.fold, path
        assert got.utcoffset() == expected.utcoffset(), path
        assert got.tzinfo == expected.tzinfo, path
        if isinstance(expected.tzinfo, ZoneInfo):
            assert isinstance(got.tzinfo, ZoneInfo) and got.tzinfo.key == expected.tzinfo.key
    else:
        assert got == expected, path


@pytest.mark.parametrize(
    "value", [v for _, v in ECHO_VALUES], ids=[label for label, _ in ECHO_VALUES]
)
def test_echo_round_trips_typed_values(client: RemoteClient, value: Any) -> None:
    with remote(client):
        assert_identical(ops.echo(value), value)
        assert_identical(ops.echo(value=value), value)


def test_echo_all_values_at_once(client: RemoteClient) -> None:
    everything = {label: value for label, value in ECHO_VALUES}
    with remote(client):
        assert_identical(ops.echo(everything), everything)
        assert_identical(ops.echo(tuple(everything.values())), tuple(everything.values()))


# -- cost -----------------------------------------------------------------------


def test_each_call_is_one_round_trip(direct_engine: sa.Engine, client: RemoteClient) -> None:
    calls = [
        ("add_note", lambda: ops.add_note(1, "one"), True),
        ("get_note", lambda: ops.get_note(1), True),
        ("count_notes", lambda: ops.count_notes(), True),
        ("echo", lambda: ops.echo({"x": [1, 2, 3]}), False),
    ]
    with remote(client):
        for label, call, runs_sql in calls:
            before = client.stats.snapshot()
            call()
            delta = client.stats.snapshot() - before
            assert delta.round_trips == 1, label
            assert delta.request_bytes > 0 and delta.response_bytes > 0, label
            assert delta.server_seconds > 0, label
            if runs_sql:
                assert delta.statements >= 1, label
            else:
                assert delta.statements == 0, label
        # A failing call is one round trip too.
        before = client.stats.snapshot()
        with pytest.raises(ValueError):
            ops.write_then_fail(2, "two")
        assert (client.stats.snapshot() - before).round_trips == 1
    assert stored_notes(direct_engine) == {1: "one"}


def test_failing_call_still_counts_its_statements(
    direct_engine: sa.Engine, client: RemoteClient
) -> None:
    """A call that ran SQL and then failed reports its statements like one that succeeded."""
    with remote(client):
        ops.add_note(1, "one")
        for label, call, error in (
            ("write_then_fail", lambda: ops.write_then_fail(2, "two"), ValueError),
            ("duplicate add_note", lambda: ops.add_note(1, "dup"), sa_exc.IntegrityError),
        ):
            before = client.stats.snapshot()
            with pytest.raises(error):
                call()
            delta = client.stats.snapshot() - before
            assert delta.round_trips == 1, label
            assert delta.server_seconds > 0, label
            assert delta.statements >= 1, f"{label}: ran an INSERT, stats say {delta}"
    assert stored_notes(direct_engine) == {1: "one"}


# -- unknown operations ---------------------------------------------------------


def test_unknown_operation(client: RemoteClient) -> None:
    name = OPS_PREFIX + "nope"
    with pytest.raises(errors.UnknownOperation) as excinfo:
        client.call(name, (), {})
    assert name in str(excinfo.value)
    assert isinstance(excinfo.value, LookupError)


def test_operation_registered_only_in_the_client(client: RemoteClient) -> None:
    assert client_only_operation.name == "tests.integration.test_logical_api.client_only_operation"
    with remote(client), pytest.raises(errors.UnknownOperation) as excinfo:
        client_only_operation()
    assert client_only_operation.name in str(excinfo.value)


def test_unknown_operation_over_plain_http(ops_server: ServerProcess) -> None:
    response = requests.post(
        ops_server.url + "/v1/operations/x.y",
        json={"protocol": 1, "args": [], "kwargs": {}},
        headers=ops_server.headers,
        timeout=30,
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_operation"
    assert "x.y" in error["message"]


# -- bad requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((), {"text": "no id"}, "missing a required argument: 'id'"),
        ((1,), {}, "missing a required argument: 'text'"),
        ((1, "x"), {"colour": "red"}, "got an unexpected keyword argument 'colour'"),
        ((1, "x", "extra"), {}, "too many positional arguments"),
    ],
    ids=["missing id", "missing text", "unexpected keyword", "too many positional"],
)
def test_bad_arguments_are_rejected(
    direct_engine: sa.Engine,
    client: RemoteClient,
    args: tuple,
    kwargs: dict,
    problem: str,
) -> None:
    with remote(client):
        with pytest.raises(errors.OperationRejected) as excinfo:
            ops.add_note(*args, **kwargs)
        assert problem in str(excinfo.value)
        assert ops.add_note.name in str(excinfo.value)
        assert isinstance(excinfo.value, TypeError)
        assert ops.count_notes() == 0
    assert stored_notes(direct_engine) == {}


def post_operation(server: ServerProcess, name: str, data: bytes) -> requests.Response:
    return requests.post(
        server.url + "/v1/operations/" + OPS_PREFIX + name,
        data=data,
        headers={"Content-Type": "application/json", **server.headers},
        timeout=30,
    )


def test_session_in_raw_kwargs_is_rejected(ops_server: ServerProcess) -> None:
    response = requests.post(
        ops_server.url + "/v1/operations/" + OPS_PREFIX + "count_notes",
        json={"protocol": 1, "args": [], "kwargs": {"session": None}},
        headers=ops_server.headers,
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_arguments"
    assert "session" in error["message"]


MALFORMED_VALUES: list[tuple[str, Any]] = [
    ("unknown tag", {"$t": "no-such-tag", "v": 1}),
    ("bad decimal", {"$t": "dec", "v": "not a number"}),
    ("decimal not a string", {"$t": "dec", "v": 5}),
    ("bad uuid", {"$t": "uuid", "v": "zzz"}),
    ("orm unknown class", {"$t": "orm", "cls": "nowhere:Nothing", "v": {}}),
    ("orm unknown column", {"$t": "orm", "cls": OPS_MODULE + ":Note", "v": {"bogus": 1}}),
    ("orm without v", {"$t": "orm", "cls": OPS_MODULE + ":Note"}),
    ("orms unknown column",
     {"$t": "orms", "cls": OPS_MODULE + ":Note", "cols": ["id", "bogus"], "rows": [[1, 2]]}),
    ("orms short row",
     {"$t": "orms", "cls": OPS_MODULE + ":Note", "cols": ["id", "text"], "rows": [[1]]}),
    ("orms untagged object", {"$t": "orms", "cls": OPS_MODULE + ":Note", "cols": ["id", "text"],
                              "rows": [[1, {"$t": "dill", "v": ""}]]}),
    ("orms tagged out of range", {"$t": "orms", "cls": OPS_MODULE + ":Note",
                                  "cols": ["id"], "rows": [[1]], "tagged": [1]}),
    ("tuple without v", {"$t": "tuple"}),
    ("tuple of an int", {"$t": "tuple", "v": 5}),
    ("dict without v", {"$t": "dict"}),
    ("dict of an int", {"$t": "dict", "v": 5}),
    ("dict with short pairs", {"$t": "dict", "v": [[1]]}),
    ("dict with unhashable key", {"$t": "dict", "v": [[[1], 2]]}),
]


@pytest.mark.parametrize(
    "value", [v for _, v in MALFORMED_VALUES], ids=[label for label, _ in MALFORMED_VALUES]
)
def test_malformed_tagged_value_is_a_bad_request(
    direct_engine: sa.Engine, ops_server: ServerProcess, value: Any
) -> None:
    response = requests.post(
        ops_server.url + "/v1/operations/" + OPS_PREFIX + "add_note",
        json={"protocol": 1, "args": [1, value], "kwargs": {}},
        headers=ops_server.headers,
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert stored_notes(direct_engine) == {}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"protocol": 1, "args": [', "bad_request"),
        (b"not json at all", "bad_request"),
        (b"[]", "bad_request"),
        (b'{"protocol": 1, "args": {}, "kwargs": {}}', "bad_request"),
        (b'{"protocol": 1, "args": [], "kwargs": []}', "bad_request"),
        (b'{"args": [], "kwargs": {}}', "unsupported_protocol"),
    ],
    ids=["truncated json", "not json", "array body", "args object", "kwargs list", "no protocol"],
)
def test_invalid_body_is_a_bad_request(ops_server: ServerProcess, data: bytes, code: str) -> None:
    response = post_operation(ops_server, "count_notes", data)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code


# -- operations that fail ---------------------------------------------------------


def test_raised_builtin_comes_back_and_rolls_back(
    direct_engine: sa.Engine, client: RemoteClient
) -> None:
    for mode in (remote(client), local(direct_engine)):
        with mode, pytest.raises(ValueError) as excinfo:
            ops.write_then_fail(5, "must not stay")
        assert type(excinfo.value) is ValueError
        assert "boom after write" in str(excinfo.value)
        assert stored_notes(direct_engine) == {}


def test_unregistered_exception_is_remote_operation_error(client: RemoteClient) -> None:
    with remote(client), pytest.raises(errors.RemoteOperationError) as excinfo:
        ops.raise_custom()
    assert excinfo.value.type_name.endswith("CustomError")
    assert excinfo.value.type_name == "tests.operations_for_tests.CustomError"
    assert "custom detail" in str(excinfo.value)
    assert "custom detail" in excinfo.value.original_message


def test_registered_exception_comes_back_as_itself(client: RemoteClient) -> None:
    with remote(client), pytest.raises(ops.RegisteredError) as excinfo:
        ops.raise_registered()
    assert type(excinfo.value) is ops.RegisteredError
    assert str(excinfo.value) == "registered detail"


def test_unencodable_result_rolls_back(direct_engine: sa.Engine, client: RemoteClient) -> None:
    with remote(client), pytest.raises(TypeError) as excinfo:
        ops.returns_unencodable()
    assert type(excinfo.value) is TypeError
    assert not isinstance(excinfo.value, errors.ProxyError)
    assert "object" in str(excinfo.value)
    assert stored_notes(direct_engine) == {}


def test_database_error_is_integrity_error(
    backend: str, direct_engine: sa.Engine, client: RemoteClient
) -> None:
    with remote(client):
        ops.add_note(1, "first")
        with pytest.raises(sa_exc.IntegrityError) as excinfo:
            ops.add_note(1, "duplicate")
        assert ops.count_notes() == 1
    orig = excinfo.value.orig
    assert isinstance(orig, errors.IntegrityError)
    if backend == "postgresql":
        assert orig.sqlstate == "23505"
    elif backend == "mysql":
        assert orig.errno == 1062
    assert stored_notes(direct_engine) == {1: "first"}


# -- the session argument ---------------------------------------------------------


def test_session_argument_is_not_sent(direct_engine: sa.Engine, client: RemoteClient) -> None:
    with remote(client):
        before = client.stats.snapshot()
        # session=None is dropped before sending: the server would reject it.
        assert ops.add_note(6, "sent without session", session=None).text == "sent without session"
        assert ops.count_notes(session=None) == 1
        assert (client.stats.snapshot() - before).round_trips == 2
        # A real session runs the function right here, on that session.
        before = client.stats.snapshot()
        with Session(direct_engine) as session:
            ops.add_note(7, "on my session", session=session)
            assert ops.count_notes(session=session) == 2
            session.rollback()
        assert (client.stats.snapshot() - before).round_trips == 0
    assert stored_notes(direct_engine) == {6: "sent without session"}


# -- environment-variable mode ------------------------------------------------------


def test_environment_variable_selects_remote_mode(
    direct_engine: sa.Engine, ops_server: ServerProcess
) -> None:
    with direct_engine.begin() as conn:
        conn.execute(sa.insert(NOTES), [{"id": i, "text": f"note {i}"} for i in range(3)])
    env = dict(os.environ)
    env["SESSION_PROXY_OPERATIONS_TOKEN"] = ops_server.token
    env["SESSION_PROXY_OPERATIONS_URL"] = ops_server.url
    code = (
        "from session_proxy.logical import remote_client\n"
        "from tests import operations_for_tests as ops\n"
        "print(ops.count_notes(), remote_client().stats.round_trips)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["3", "1"]
