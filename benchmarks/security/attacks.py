"""Hostile requests against the three configurations of a :class:`SecurityLab`.

Each :class:`Attack` is one thing an attacker holding a worker's token (or
no valid token at all) tries, sent as real HTTP to a real server.  Running
it gives an :class:`Observation`: the decisive response's status, error code
and message, and the *harm* done (rows of secrets returned, a table
dropped, a lock held, code run...), checked against the database and the
file system, never assumed.  :func:`run_attack` adds the check every attack
shares: the workload tables are dumped before and after, and any change is
harm too (then the data set is restored for the next attack).

An attack is *stopped* when no harm was done.  :attr:`Attack.expect` says
what this project claims for each configuration (and backend where they
differ); the test suite asserts those claims, and the benchmark report shows
the matrix the run actually produced.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from session_proxy.wire import protocol
from session_proxy_server.auth import generate_keypair, issue_token, load_private_key

from .lab import CONFIGS, LIMITS, TIMEOUT, SecurityLab

SECRET_PREFIX = "secret-"  # every seeded connection password starts with it
MARKER_FILE = "pickle-ran-code"


@dataclasses.dataclass
class Observation:
    """What one attack got back."""

    status: int
    code: str | None
    message: str
    harm: str | None = None


@dataclasses.dataclass(frozen=True)
class Expect:
    """What the project claims: stopped or not, the status, a message fragment.

    For a stopped attack ``text`` is part of the error message; for one that
    gets through it is part of the harm description.  ``or_text`` is another
    fragment that is as good, where two checks may each stop it first.
    """

    stopped: bool
    status: int
    text: str
    or_text: str | None = None

    def says(self, message: str) -> bool:
        """Whether ``message`` carries the expected fragment."""
        return self.text in message or (self.or_text is not None and self.or_text in message)


@dataclasses.dataclass(frozen=True)
class Attack:
    """One hostile request (or short sequence of them)."""

    name: str
    category: str
    goal: str
    run: Callable[[SecurityLab, str], Observation]
    expect: Callable[[str, str], Expect]


@dataclasses.dataclass
class Outcome:
    """An attack's result against one configuration."""

    attack: str
    category: str
    config: str
    status: int
    code: str | None
    message: str
    harm: str | None
    #: Whether the workload tables differed afterwards (then restored).
    changed_database: bool = False

    @property
    def stopped(self) -> bool:
        return self.harm is None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "stopped": self.stopped}


# -- observing responses ------------------------------------------------------------


def observe(response: requests.Response, harm: str | None = None) -> Observation:
    """Status, error code and message of ``response``."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return Observation(response.status_code, error.get("code"), str(error.get("message")),
                           harm)
    return Observation(response.status_code, None, "", harm)


def rows(response: requests.Response) -> list[list[Any]]:
    """Every row of every statement result in a 200 pipeline response."""
    if response.status_code != 200:
        return []
    return [row for result in response.json()["results"] for row in result.get("rows", [])]


def secrets_in(values: Any) -> list[str]:
    """Seeded connection passwords found anywhere in ``values``."""
    text = json.dumps(values, default=str)
    found = set()
    start = text.find(SECRET_PREFIX)
    while start >= 0:
        end = start + len(SECRET_PREFIX)
        while end < len(text) and text[end].isdigit():
            end += 1
        found.add(text[start:end])
        start = text.find(SECRET_PREFIX, end)
    return sorted(found)


def leak(response: requests.Response) -> Observation:
    """An observation whose harm is the passwords the response carries."""
    found = secrets_in(rows(response))
    return observe(response, f"read passwords {', '.join(found)}" if found else None)


# -- expectations -----------------------------------------------------------------------


def everywhere(status: int, text: str) -> Callable[[str, str], Expect]:
    """Stopped in every configuration with the same status and message."""
    return lambda backend, config: Expect(True, status, text)


def policy_stops(
    proxy: Expect, policy_text: str, logical_text: str | None = None
) -> Callable[[str, str], Expect]:
    """Gets through the bare proxy; 403 from the policy elsewhere."""

    def expect(backend: str, config: str) -> Expect:
        if config == "proxy":
            return proxy
        if config == "logical":
            return Expect(True, 403, logical_text or "not in the allowlist for role 'worker'")
        return Expect(True, 403, policy_text)

    return expect


def role_first(expect: Callable[[str, str], Expect]) -> Callable[[str, str], Expect]:
    """As ``expect``, except that the logical configuration may refuse by role first.

    Its worker role may run no statement, so a statement longer than the
    start-up queries is refused by the role check before any guard reads it.
    """

    def expect_role_first(backend: str, config: str) -> Expect:
        claimed = expect(backend, config)
        if config != "logical":
            return claimed
        return dataclasses.replace(claimed, or_text="may run no statement")

    return expect_role_first


def harm(status: int, text: str) -> Expect:
    return Expect(False, status, text)


# -- tokens -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _token_parts(token: str) -> tuple[dict, dict, str]:
    header, claims, signature = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(header))),
            json.loads(base64.urlsafe_b64decode(pad(claims))), signature)


def _unsigned(header: dict, claims: dict) -> str:
    encode = lambda part: _b64(json.dumps(part, separators=(",", ":")).encode())  # noqa: E731
    return f"{encode(header)}.{encode(claims)}"


def _sign(lab: SecurityLab, **kwargs: Any) -> str:
    kwargs.setdefault("subject", "host-1")
    kwargs.setdefault("role", "worker")
    kwargs.setdefault("ttl_seconds", 3600)
    return issue_token(load_private_key(lab.private_key_path), **kwargs)


def _other_key(lab: SecurityLab) -> Path:
    private = lab.workdir / "attacker-private.pem"
    if not private.exists():
        generate_keypair(lab.workdir, "attacker")
    return private


def _with_token(token: str | None) -> Callable[[SecurityLab, str], Observation]:
    def run(lab: SecurityLab, config: str) -> Observation:
        return observe(lab.sql(config, "SELECT 1", token=token))

    return run


def _forged(lab: SecurityLab, config: str) -> Observation:
    token = issue_token(load_private_key(_other_key(lab)), subject="host-1", role="admin",
                        ttl_seconds=3600)
    return observe(lab.sql(config, "SELECT 1", token=token))


def _expired(lab: SecurityLab, config: str) -> Observation:
    token = _sign(lab, ttl_seconds=60, now=time.time() - 3600)
    return observe(lab.sql(config, "SELECT 1", token=token))


def _replayed(lab: SecurityLab, config: str) -> Observation:
    token = _sign(lab, ttl_seconds=1)
    first = requests.get(lab.url(config) + protocol.HEALTH_PATH, timeout=TIMEOUT,
                         headers={"Authorization": f"Bearer {token}"})
    if first.status_code != 200:
        return Observation(first.status_code, None, "the fresh token was refused",
                           "could not set up the replay")
    _, claims, _ = _token_parts(token)
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.2)
    return observe(lab.sql(config, "SELECT 1", token=token))


def _alg_none(lab: SecurityLab, config: str) -> Observation:
    _, claims, _ = _token_parts(lab.tokens.worker)
    claims["role"] = "admin"
    token = _unsigned({"alg": "none", "typ": "JWT"}, claims) + "."
    return observe(lab.sql(config, "SELECT 1", token=token))


def _hmac_confusion(lab: SecurityLab, config: str) -> Observation:
    _, claims, _ = _token_parts(lab.tokens.worker)
    claims["role"] = "admin"
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT"}, claims)
    secret = Path(str(lab.private_key_path).replace("private", "public")).read_bytes()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return observe(lab.sql(config, "SELECT 1", token=f"{signing_input}.{_b64(signature)}"))


def _tampered_role(lab: SecurityLab, config: str) -> Observation:
    header, claims, signature = _token_parts(lab.tokens.worker)
    claims["role"] = "admin"
    return observe(lab.sql(config, "SELECT 1", token=f"{_unsigned(header, claims)}.{signature}"))


def _wrong_audience(lab: SecurityLab, config: str) -> Observation:
    return observe(lab.sql(config, "SELECT 1", token=_sign(lab, audience="another-service")))


def _not_yet_valid(lab: SecurityLab, config: str) -> Observation:
    return observe(lab.sql(config, "SELECT 1", token=_sign(lab, now=time.time() + 3600)))


def _basic_scheme(lab: SecurityLab, config: str) -> Observation:
    credentials = base64.b64encode(b"admin:admin").decode()
    return observe(lab.post(config, protocol.PIPELINE_PATH, {}, headers={
        "Authorization": f"Basic {credentials}"}))


def _metrics_anonymous(lab: SecurityLab, config: str) -> Observation:
    return observe(requests.get(lab.url(config) + protocol.METRICS_PATH, timeout=TIMEOUT))


def _health_forged(lab: SecurityLab, config: str) -> Observation:
    token = issue_token(load_private_key(_other_key(lab)), subject="x", role="admin",
                        ttl_seconds=60)
    return observe(requests.get(lab.url(config) + protocol.HEALTH_PATH, timeout=TIMEOUT,
                                headers={"Authorization": f"Bearer {token}"}))


# -- statements ----------------------------------------------------------------------------


def _write(sql: str, check: Callable[[SecurityLab], str | None]) -> Callable:
    """Run ``sql`` as the worker and commit; ``check`` describes the harm."""

    def run(lab: SecurityLab, config: str) -> Observation:
        response = lab.sql(config, sql, token=lab.tokens.worker, commit=True)
        return observe(response, check(lab) if response.status_code == 200 else None)

    return run


def _table_missing(table: str) -> Callable[[SecurityLab], str | None]:
    return lambda lab: None if sa.inspect(lab.direct).has_table(table) else f"dropped {table}"


def _table_created(table: str) -> Callable[[SecurityLab], str | None]:
    def check(lab: SecurityLab) -> str | None:
        if not sa.inspect(lab.direct).has_table(table):
            return None
        with lab.direct.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {table}")
        return f"created table {table}"

    return check


def _count(table: str, where: str = "1 = 1") -> Callable[[SecurityLab], int]:
    def count(lab: SecurityLab) -> int:
        with lab.direct.connect() as conn:
            return conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE {where}").scalar()

    return count


def _rows_gone(table: str) -> Callable[[SecurityLab], str | None]:
    return lambda lab: f"deleted every row of {table}" if _count(table)(lab) == 0 else None


def _all_success(lab: SecurityLab) -> str | None:
    left = _count("task_instance", "state IS NULL OR state <> 'success'")(lab)
    return None if left else "marked every task instance successful"


def _read(sql: str) -> Callable[[SecurityLab, str], Observation]:
    return lambda lab, config: leak(lab.sql(config, sql, token=lab.tokens.worker))


def _multi_statement(lab: SecurityLab, config: str) -> Observation:
    response = lab.sql(config, "SELECT 1; DELETE FROM xcom", token=lab.tokens.worker,
                       commit=True)
    return observe(response, _rows_gone("xcom")(lab))


def _scan_xcom(lab: SecurityLab, config: str) -> Observation:
    response = lab.sql(config, "SELECT dag_id, value FROM xcom", token=lab.tokens.worker)
    others = sorted({row[0] for row in rows(response) if row[0] != "dag_000"})
    return observe(response, f"read XCom rows of {', '.join(others)}" if others else None)


def _catalog(backend: str) -> str:
    return {
        "postgresql": "SELECT rolname, rolpassword FROM pg_authid",
        "mysql": "SELECT user, password FROM mysql.user",
        "sqlite": "SELECT name, sql FROM sqlite_master",
    }[backend]


def _read_catalog(lab: SecurityLab, config: str) -> Observation:
    response = lab.sql(config, _catalog(lab.backend), token=lab.tokens.worker)
    found = rows(response)
    return observe(response, f"read {len(found)} rows of the database's own catalog"
                   if found else None)


def _file_access(lab: SecurityLab, config: str) -> Observation:
    if lab.backend == "sqlite":
        target = lab.workdir / "attached-by-attacker.db"
        response = lab.sql(config, f"ATTACH DATABASE '{target}' AS evil",
                           token=lab.tokens.worker)
        made = target.exists()
        if made:
            target.unlink()
        return observe(response, f"created the server-side file {target.name}" if made
                       else None)
    function = "pg_read_file" if lab.backend == "postgresql" else "LOAD_FILE"
    response = lab.sql(config, f"SELECT {function}('/etc/hostname')", token=lab.tokens.worker)
    content = [row[0] for row in rows(response) if row[0]]
    return observe(response, "read /etc/hostname on the database host" if content else None)


_SESSION_SETTING = {
    "postgresql": "SET search_path TO pg_catalog",
    "mysql": "SET SESSION sql_mode = ''",
    "sqlite": "PRAGMA foreign_keys = OFF",
}


def _session_setting(lab: SecurityLab, config: str) -> Observation:
    response = lab.sql(config, _SESSION_SETTING[lab.backend], token=lab.tokens.worker)
    return observe(response, "changed a session setting" if response.status_code == 200
                   else None)


_DISABLE_TIMEOUT = {
    "postgresql": ("SET statement_timeout = 0", "SELECT pg_sleep(2)"),
    "mysql": ("SET SESSION max_statement_time = 0", "SELECT SLEEP(2)"),
    "sqlite": ("PRAGMA busy_timeout = 0", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
               "SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c"),
}


def _escape_timeout(lab: SecurityLab, config: str) -> Observation:
    disable, slow = _DISABLE_TIMEOUT[lab.backend]
    response = lab.pipeline(config, [
        {"op": "begin"},
        {"op": "execute", "sql": disable, "params": None},
        {"op": "execute", "sql": slow, "params": None},
        {"op": "rollback"},
    ], token=lab.tokens.worker)
    lab.roll_back_left_open(config, response, lab.tokens.worker)
    return observe(response, "ran a statement past the statement timeout"
                   if response.status_code == 200 else None)


def _as_role(token_name: str, operation: str, *args: Any, **kwargs: Any) -> Callable:
    """Call ``operation`` as another role: through SQL on the proxies, by name on logical."""

    def run(lab: SecurityLab, config: str) -> Observation:
        token = getattr(lab.tokens, token_name)
        if config == "logical":
            response = lab.operation(config, operation, *args, token=token, **kwargs)
            body = response.json() if response.status_code == 200 else None
            return observe(response, _harm_of(operation, lab, body))
        response = lab.sql(config, _SQL_OF[operation], token=token, commit=True)
        return observe(response, _harm_of(operation, lab, rows(response))
                       if response.status_code == 200 else None)

    return run


_SQL_OF = {
    "finish_task": "UPDATE task_instance SET state = 'failed' WHERE dag_id = 'dag_000'",
    "get_connection": "SELECT conn_id, password FROM connection WHERE conn_id = 'conn_2'",
}


def _harm_of(operation: str, lab: SecurityLab, body: Any) -> str | None:
    if body is None:
        return None
    if operation == "finish_task":
        failed = _count("task_instance", "state = 'failed'")(lab)
        return f"set {failed} task instances to failed" if failed else None
    found = secrets_in(body)
    return f"read passwords {', '.join(found)}" if found else None


# -- data reachable through allowed paths ---------------------------------------------


def _allowed_path(operation: str, *args: Any) -> Callable:
    """Call a workload operation the worker may call, with someone else's keys."""

    def run(lab: SecurityLab, config: str) -> Observation:
        from session_proxy import values

        from ..workload import operations as ops
        from ..workload.modes import ModeRunner

        if config == "logical":
            response = lab.operation(config, operation, *args, token=lab.tokens.worker)
            if response.status_code != 200:
                return observe(response)
            result = values.from_wire(response.json()["result"])
        else:
            runner = ModeRunner("proxy", server_url=lab.url(config), token=lab.tokens.worker)
            try:
                result = runner.call(getattr(ops, operation), *args)
            except sa.exc.DBAPIError as exc:
                return _client_error(exc)
            finally:
                runner.close()
        return Observation(200, None, "", _describe_result(operation, result))

    return run


def _describe_result(operation: str, result: Any) -> str | None:
    if operation == "get_connection":
        return f"read {result.conn_id}'s password" if result is not None else None
    if operation == "xcom_pull":
        return "read another DAG's XCom value" if result is not None else None
    return f"got {result!r}" if result is not None else None


def _client_error(exc: sa.exc.DBAPIError) -> Observation:
    orig = exc.orig
    return Observation(getattr(orig, "status", None) or 0, getattr(orig, "code", None),
                       str(orig))


# -- payloads --------------------------------------------------------------------------------


def _oversized(lab: SecurityLab, config: str) -> Observation:
    limit = int(LIMITS["--max-body-bytes"])
    body = {"protocol": 1, "txn": None, "steps": [
        {"op": "execute", "sql": "SELECT ?", "params": ["x" * (limit + 1)]}]}
    return observe(lab.post(config, protocol.PIPELINE_PATH, body, token=lab.tokens.worker))


def _deep_json(lab: SecurityLab, config: str) -> Observation:
    data = b"[" * 100_000 + b"]" * 100_000
    return observe(lab.post(config, protocol.PIPELINE_PATH, data=data, token=lab.tokens.worker))


def _deep_params(lab: SecurityLab, config: str) -> Observation:
    value: Any = 1
    for _ in range(900):
        value = [value]
    return _typed(value)(lab, config)


def _typed(value: Any) -> Callable[[SecurityLab, str], Observation]:
    """The worker's allowed SELECT with a hostile typed value as its parameter."""

    def run(lab: SecurityLab, config: str) -> Observation:
        sql, params = lab.benign
        hostile = ({key: value for key in params} if isinstance(params, dict)
                   else [value for _ in params])
        body = protocol.pipeline_request(
            None, [{"op": "execute", "sql": sql, "params": hostile}, {"op": "rollback"}])
        # The standard library writes nesting that orjson refuses to.
        return observe(lab.post(config, protocol.PIPELINE_PATH, data=json.dumps(body).encode(),
                                token=lab.tokens.worker))

    return run


def _pickle_payload(lab: SecurityLab) -> dict[str, str]:
    import dill

    marker = lab.workdir / MARKER_FILE

    class RunsCode:
        def __reduce__(self) -> tuple:
            import os

            return (os.system, (f"touch {marker}",))

    return {"$t": "dill", "v": base64.b64encode(dill.dumps(RunsCode())).decode()}


def _pickle_ran(lab: SecurityLab) -> str | None:
    marker = lab.workdir / MARKER_FILE
    if marker.exists():
        marker.unlink()
        return "ran code on the server"
    return None


def _pickle_statement(lab: SecurityLab, config: str) -> Observation:
    response = _typed(_pickle_payload(lab))(lab, config)
    return dataclasses.replace(response, harm=_pickle_ran(lab))


def _pickle_operation(lab: SecurityLab, config: str) -> Observation:
    body = protocol.operation_request([_pickle_payload(lab)], {})
    response = lab.post(config, lab.operation_path("get_variable"), body,
                        token=lab.tokens.worker)
    return observe(response, _pickle_ran(lab))


def _garbage(lab: SecurityLab, config: str) -> Observation:
    return observe(lab.post(config, protocol.PIPELINE_PATH, data=b"\xff\xfe<xml/>",
                            token=lab.tokens.worker))


def _bad_step(lab: SecurityLab, config: str) -> Observation:
    return observe(lab.pipeline(config, [{"op": "execute", "sql": 42}],
                                token=lab.tokens.worker))


# -- transactions ----------------------------------------------------------------------------


def _open(lab: SecurityLab, config: str, token: str) -> requests.Response:
    sql, params = lab.benign
    return lab.pipeline(config, [{"op": "begin"},
                                 {"op": "execute", "sql": sql, "params": params}], token=token)


def _unknown_txn(lab: SecurityLab, config: str) -> Observation:
    response = lab.pipeline(config, [{"op": "commit"}], token=lab.tokens.worker,
                            txn="A" * 32)
    return observe(response)


def _other_subject(lab: SecurityLab, config: str) -> Observation:
    """host-2 tries to commit and to read through host-1's open transaction."""
    victim = _open(lab, config, lab.tokens.worker)
    if victim.status_code != 200:
        return observe(victim)
    txn = victim.json()["txn"]
    try:
        response = lab.pipeline(config, [{"op": "commit"}], token=lab.tokens.worker2, txn=txn)
        hijacked = response.status_code == 200
        return observe(response, "committed another subject's transaction" if hijacked
                       else None)
    finally:
        lab.pipeline(config, [{"op": "rollback"}], token=lab.tokens.worker, txn=txn)


def _slow_client(lab: SecurityLab, config: str) -> Observation:
    """Lock a job row the way heartbeat does, then go silent; others must get through."""
    import session_proxy

    from ..workload.models import Job

    if config == "logical":
        # No transaction outlives a call; the closest a worker gets is SQL.
        return observe(_open(lab, config, lab.tokens.worker))
    engine = session_proxy.create_engine(lab.url(config), token=lab.tokens.worker)
    session = session_proxy.ProxySession(bind=engine)
    try:
        try:
            job = session.get(Job, 1, with_for_update=True)
            job.latest_heartbeat = None
            session.flush()
        except sa.exc.DBAPIError as exc:
            return _client_error(exc)
        blocked = _blocked_writer(lab)
        with lab.direct.connect() as conn:
            cleared = conn.exec_driver_sql(
                "SELECT count(*) FROM job WHERE id = 1 AND latest_heartbeat IS NULL").scalar()
        harm = blocked or ("the silent client's write survived" if cleared else None)
        return Observation(200, None, "lease expired; the lock was released", harm)
    finally:
        try:
            session.close()
        except sa.exc.DBAPIError:
            pass  # the server already rolled the transaction back
        engine.dispose()


def _blocked_writer(lab: SecurityLab) -> str | None:
    """A direct client updates the locked row; None when it got through in time."""
    done = threading.Event()

    def write() -> None:
        with lab.direct.connect() as conn:
            if lab.backend == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout = 20000")
            conn.exec_driver_sql("UPDATE job SET hostname = 'victim' WHERE id = 1")
            done.set()
            conn.rollback()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(20)
    return None if done.is_set() else "held a row lock for 20 s"


def _subject_limit(lab: SecurityLab, config: str) -> Observation:
    """host-1 opens transactions until refused; host-2 must still get one."""
    limit = int(LIMITS["--max-transactions-per-subject"])
    held: list[str] = []
    try:
        for _ in range(limit):
            response = _open(lab, config, lab.tokens.worker)
            if response.status_code != 200:
                return observe(response)
            held.append(response.json()["txn"])
        refused = _open(lab, config, lab.tokens.worker)
        if refused.status_code == 200:
            held.append(refused.json()["txn"])
            return observe(refused, f"held {len(held)} transactions at once")
        other = _open(lab, config, lab.tokens.worker2)
        if other.status_code == 200:
            lab.pipeline(config, [{"op": "rollback"}], token=lab.tokens.worker2,
                         txn=other.json()["txn"])
            return observe(refused)
        return observe(refused, "another subject was starved too")
    finally:
        for txn in held:
            lab.pipeline(config, [{"op": "rollback"}], token=lab.tokens.worker, txn=txn)


def _long_transaction(lab: SecurityLab, config: str) -> Observation:
    """Keep one transaction busy past the longest transaction allowed."""
    response = _open(lab, config, lab.tokens.worker)
    if response.status_code != 200:
        return observe(response)
    txn = response.json()["txn"]
    sql, params = lab.benign
    deadline = time.monotonic() + 3 * float(LIMITS["--max-transaction-seconds"])
    while time.monotonic() < deadline:
        time.sleep(0.2)  # well inside the idle lease
        response = lab.pipeline(config, [{"op": "execute", "sql": sql, "params": params}],
                                token=lab.tokens.worker, txn=txn)
        if response.status_code != 200:
            return observe(response)
    lab.pipeline(config, [{"op": "rollback"}], token=lab.tokens.worker, txn=txn)
    return observe(response, "kept a transaction open past the limit")


_SLOW = {
    "postgresql": "SELECT pg_sleep(10)",
    "mysql": "SELECT count(*) FROM information_schema.columns a, "
             "information_schema.columns b, information_schema.columns c",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
              "WHERE x < 1000000000) SELECT count(*) FROM c",
}


def _slow_statement(lab: SecurityLab, config: str) -> Observation:
    started = time.monotonic()
    response = lab.sql(config, _SLOW[lab.backend], token=lab.tokens.worker)
    took = time.monotonic() - started
    alive = requests.get(lab.url(config) + protocol.HEALTH_PATH, timeout=TIMEOUT)
    harm = None
    if response.status_code == 200:
        harm = f"ran a statement for {took:.0f} s"
    elif alive.status_code != 200:
        harm = "the server stopped answering"
    return observe(response, harm)


# -- table rules see every table (issue 14, item 2) ----------------------------------------------

_CONNECTION_COLUMNS = "id, conn_id, conn_type, host, login, password, port, extra"


def _database_name(lab: SecurityLab) -> str:
    if lab.backend == "sqlite":
        return "main"
    query = "SELECT current_database()" if lab.backend == "postgresql" else "SELECT DATABASE()"
    with lab.direct.connect() as conn:
        return conn.exec_driver_sql(query).scalar()


def _as_table_role(role: str, sql_of: Callable[[SecurityLab], str]) -> Callable:
    """Run the statement ``sql_of`` builds with a token for a role judged by table rules."""

    def run(lab: SecurityLab, config: str) -> Observation:
        token = _sign(lab, role=role, subject=f"host-{role}")
        return leak(lab.sql(config, sql_of(lab), token=token))

    return run


def _union_table(lab: SecurityLab) -> str:
    # The allow-listed half has the shape of connection's rows.
    return ("SELECT 0, dag_id, run_id, task_id, key, key, map_index, key FROM xcom "
            "WHERE 1 = 0 UNION ALL TABLE connection")


def _lateral_table(lab: SecurityLab) -> str:
    return ("SELECT c.conn_id, c.password FROM task_instance "
            "CROSS JOIN LATERAL (TABLE connection) AS c")


def _schema_qualified(lab: SecurityLab) -> str:
    qualifier = {"postgresql": "public", "mysql": _database_name(lab), "sqlite": "main"}
    return f"SELECT {_CONNECTION_COLUMNS} FROM {qualifier[lab.backend]}.connection"


def _database_qualified(lab: SecurityLab) -> str:
    name = _database_name(lab)
    if lab.backend == "postgresql":
        return f'SELECT conn_id, password FROM {name}.public."connection"'
    quote = "`" if lab.backend == "mysql" else '"'
    return f"SELECT conn_id, password FROM {quote}{name}{quote}.{quote}connection{quote}"


def _table_rules_expect(works_on: tuple[str, ...]) -> Callable[[str, str], Expect]:
    """Reads passwords through the bare proxy where the backend has the syntax; 403 elsewhere."""

    def expect(backend: str, config: str) -> Expect:
        if config != "proxy":
            return Expect(True, 403, "may not read table")
        if backend in works_on:
            return harm(200, "read passwords")
        return Expect(True, 422, "")  # the backend does not know the syntax

    return expect


def _escaped_name(lab: SecurityLab) -> str:
    # PostgreSQL reads U&"conn\0065ction" as "connection".
    return 'SELECT conn_id, password FROM U&"conn\\0065ction"'


def _call_without_parentheses(lab: SecurityLab) -> str:
    # PostgreSQL attribute notation: s.ts_stat runs ts_stat(s), which runs its text.
    return ("SELECT s.ts_stat FROM lower('SELECT to_tsvector(password) FROM connection') AS s")


def _escaped_name_expect(backend: str, config: str) -> Expect:
    claimed = _table_rules_expect(("postgresql",))(backend, config)
    if config == "proxy" or backend == "postgresql":
        return claimed
    # Not PostgreSQL's syntax: no parser reads it, so the table rules refuse it unread.
    return dataclasses.replace(claimed, or_text="cannot tell every table")


TABLE_RULE_ATTACKS: list[Attack] = [
    Attack("allow-list bypass: UNION TABLE", "table rules",
           "a role allowed task_instance and xcom appends TABLE connection to its SELECT",
           _as_table_role("reader", _union_table), _table_rules_expect(("postgresql",))),
    Attack("allow-list bypass: LATERAL (TABLE x)", "table rules",
           "a role allowed task_instance and xcom joins LATERAL (TABLE connection)",
           _as_table_role("reader", _lateral_table), _table_rules_expect(("postgresql",))),
    Attack("deny-list bypass: schema-qualified name", "table rules",
           "a role denied connection reads public.connection / db.connection / main.connection",
           _as_table_role("auditor", _schema_qualified),
           _table_rules_expect(("postgresql", "mysql", "sqlite"))),
    Attack("deny-list bypass: database-qualified name", "table rules",
           "a role denied connection reads db.public.\"connection\" / `db`.`connection`",
           _as_table_role("auditor", _database_qualified),
           _table_rules_expect(("postgresql", "mysql", "sqlite"))),
    Attack("deny-list bypass: escaped identifier", "table rules",
           "a role denied connection reads U&\"conn\\0065ction\"",
           _as_table_role("auditor", _escaped_name), _escaped_name_expect),
    Attack("function called without parentheses", "table rules",
           "run ts_stat through attribute notation (s.ts_stat) to read connection's passwords",
           _as_table_role("auditor", _call_without_parentheses),
           role_first(everywhere(403, "runs SQL given as text"))),
]
# -- issue 14, item 6: smaller items (health, metrics, token lifetime, begin fields) -------------

_VERSION_WORDS = ("SQLAlchemy", "server_version", "dialect", "driver")


def _health_versions(lab: SecurityLab, config: str) -> Observation:
    """Ask health, without a token, what database and software the server runs."""
    response = requests.get(lab.url(config) + protocol.HEALTH_PATH, timeout=TIMEOUT)
    found = [word for word in _VERSION_WORDS if word in response.text]
    return observe(response, f"health revealed {', '.join(found)}" if found else None)


def _metrics_as_worker(lab: SecurityLab, config: str) -> Observation:
    response = requests.get(lab.url(config) + protocol.METRICS_PATH, timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {lab.tokens.worker}"})
    leaked = response.status_code == 200 and "session_proxy_" in response.text
    return observe(response, "read the server's metrics as a worker" if leaked else None)


def _far_future_token(lab: SecurityLab, config: str) -> Observation:
    token = _sign(lab, ttl_seconds=10**30 - int(time.time()))
    response = lab.sql(config, "SELECT 1", token=token)
    return observe(response, "a token valid until the year 10^22 worked"
                   if response.status_code == 200 else None)


_MALFORMED_BEGINS = (
    {"isolation_level": []},
    {"isolation_level": "READ COMMITTED, READ WRITE"},
    {"isolation_level": "SERIALIZABLE", "read_only": "yes"},
    {"read_only": True, "deferrable": {}},
)


def _malformed_begin(lab: SecurityLab, config: str) -> Observation:
    """Begin with options of the wrong type or value; the server must not fail."""
    sql, params = lab.benign
    first: Observation | None = None
    for options in _MALFORMED_BEGINS:
        response = lab.pipeline(config, [
            {"op": "begin", "options": options},
            {"op": "execute", "sql": sql or "SELECT 1", "params": params},
            {"op": "rollback"},
        ], token=lab.tokens.worker)
        lab.roll_back_left_open(config, response, lab.tokens.worker)
        if response.status_code >= 500:
            return observe(response, f"server error {response.status_code} on {options}")
        if response.status_code == 200:
            return observe(response, f"options {options} were accepted")
        first = first or observe(response)
    assert first is not None
    return first


# -- the catalogue ------------------------------------------------------------------------------

_TIMEOUT_MESSAGE = {
    "postgresql": "canceling statement due to statement timeout",
    "mysql": "max_statement_time",
    "sqlite": "interrupted",
}


def _timeout_expect(backend: str, config: str) -> Expect:
    if config == "proxy":
        return Expect(True, 422, _TIMEOUT_MESSAGE[backend])
    return policy_stops(harm(200, ""), "not in the allowlist for role 'worker'")(backend, config)


def _escape_expect(backend: str, config: str) -> Expect:
    if config == "proxy":
        if backend == "sqlite":  # the interrupt is not a setting SQL can change
            return Expect(True, 422, "interrupted")
        return Expect(True, 422, "statement timeout")  # the watchdog cancels it
    return Expect(True, 403, "not in the allowlist for role 'worker'")


def _multi_expect(backend: str, config: str) -> Expect:
    if config != "proxy":
        return Expect(True, 403, "several statements")
    if backend == "postgresql":  # psycopg runs both in one simple query
        return harm(200, "deleted every row of xcom")
    if backend == "sqlite":
        return Expect(True, 422, "one statement at a time")
    return Expect(True, 422, "SQL syntax")


def _file_access_expect(backend: str, config: str) -> Expect:
    if backend == "sqlite":  # ATTACH is refused whatever the policy (session guard)
        return Expect(True, 403, "ATTACH is refused")
    return policy_stops(harm(200, ""), "role 'worker'", "role 'worker'")(backend, config)


# -- issue 14 item 5: outcome records answer only the request that made them ------------


def _foreign_key_replay(lab: SecurityLab, config: str) -> Observation:
    """A token of another role for the admin's subject resends the admin's key."""
    key = secrets.token_urlsafe(18)
    attacker = _sign(lab, subject="operator", role="worker")  # the admin's subject
    if config == "logical":
        path = lab.operation_path("get_variable")
        body = protocol.operation_request(["x"], {})
    else:
        sql, params = lab.benign
        path = protocol.PIPELINE_PATH
        body = protocol.pipeline_request(None, [
            {"op": protocol.BEGIN}, {"op": protocol.EXECUTE, "sql": sql, "params": params},
            {"op": protocol.COMMIT},
        ])
    first = lab.post(config, path, body, token=lab.tokens.admin,
                     headers={protocol.IDEMPOTENCY_KEY_HEADER: key})
    if first.status_code != 200:
        return observe(first)
    response = lab.post(config, path, body, token=attacker, headers={
        protocol.IDEMPOTENCY_KEY_HEADER: key, protocol.RETRY_ATTEMPT_HEADER: "1",
    })
    replayed = response.headers.get(protocol.REPLAYED_HEADER) == "true"
    return observe(response, "got the admin's stored answer" if replayed else None)


def _lease_expect(backend: str, config: str) -> Expect:
    if config == "logical":
        return Expect(True, 403, "not in the allowlist for role 'worker'")
    return Expect(True, 200, "lease expired")


def _transaction_expect(status: int, text: str) -> Callable[[str, str], Expect]:
    def expect(backend: str, config: str) -> Expect:
        if config == "logical":
            return Expect(True, 403, "not in the allowlist for role 'worker'")
        return Expect(True, status, text)

    return expect


def _operation_expect(backend: str, config: str) -> Expect:
    if config == "logical":
        return Expect(True, 400, "--trusted-clients")
    if config == "proxy+policy":
        return Expect(True, 403, "may not call operation")
    return Expect(True, 404, "unknown operation")


ATTACKS: list[Attack] = [
    # authentication
    Attack("no token", "authentication", "call without credentials",
           _with_token(None), everywhere(401, "missing bearer token")),
    Attack("garbage token", "authentication", "send a bearer value that is no token",
           _with_token("not-a-token"), everywhere(401, "malformed token")),
    Attack("forged signature", "authentication", "sign an admin token with another key",
           _forged, everywhere(401, "signature does not verify")),
    Attack("expired token", "authentication", "use a token that expired an hour ago",
           _expired, everywhere(401, "token expired")),
    Attack("replay after expiry", "authentication", "reuse a token that worked, once expired",
           _replayed, everywhere(401, "token expired")),
    Attack("alg none", "authentication", "an unsigned token claiming role admin",
           _alg_none, everywhere(401, "alg 'none'")),
    Attack("HS256 with the public key", "authentication",
           "HMAC-sign with the server's public key as the secret",
           _hmac_confusion, everywhere(401, "'HS256' is not supported")),
    Attack("tampered role claim", "authentication",
           "change a worker token's role to admin, keep the signature",
           _tampered_role, everywhere(401, "signature does not verify")),
    Attack("wrong audience", "authentication", "use a token issued for another service",
           _wrong_audience, everywhere(401, "wrong audience")),
    Attack("not yet valid", "authentication", "use a token issued an hour in the future",
           _not_yet_valid, everywhere(401, "not valid yet")),
    Attack("basic auth", "authentication", "try a username and password instead",
           _basic_scheme, everywhere(401, "scheme must be Bearer")),
    Attack("metrics without token", "authentication", "read the server's metrics anonymously",
           _metrics_anonymous, everywhere(401, "missing bearer token")),
    Attack("health with forged token", "authentication", "probe health with a forged token",
           _health_forged, everywhere(401, "signature does not verify")),
    # statements
    Attack("CREATE TABLE", "statements", "run DDL",
           _write("CREATE TABLE sp_attacker (x INTEGER)", _table_created("sp_attacker")),
           policy_stops(harm(200, "created table sp_attacker"), "may not run DDL",
                        "may not run DDL")),
    Attack("DROP TABLE", "statements", "drop the audit log",
           _write("DROP TABLE log", _table_missing("log")),
           policy_stops(harm(200, "dropped log"), "may not run DDL", "may not run DDL")),
    Attack("DELETE everything", "statements", "delete every task instance",
           _write("DELETE FROM task_instance", _rows_gone("task_instance")),
           policy_stops(harm(200, "deleted every row"), "not in the allowlist")),
    Attack("UPDATE everything", "statements", "mark every task instance successful",
           _write("UPDATE task_instance SET state = 'success'", _all_success),
           policy_stops(harm(200, "every task instance successful"), "not in the allowlist")),
    Attack("multi-statement string", "statements", "hide a DELETE after a SELECT",
           _multi_statement, _multi_expect),
    Attack("read connection passwords", "statements", "SELECT every connection's password",
           _read("SELECT conn_id, password FROM connection"),
           policy_stops(harm(200, "read passwords"), "not in the allowlist")),
    Attack("UNION injection in SQL text", "statements",
           "append a UNION that reads passwords to a harmless query",
           _read("SELECT conn_id FROM connection WHERE conn_id = 'none' "
                 "UNION SELECT password FROM connection"),
           policy_stops(harm(200, "read passwords"), "not in the allowlist")),
    Attack("scan another tenant's XCom", "statements", "read every DAG's XCom rows",
           _scan_xcom, policy_stops(harm(200, "XCom rows of"), "not in the allowlist")),
    Attack("database credential catalog", "statements", "read the database's own catalog",
           _read_catalog, policy_stops(harm(200, "database's own catalog"),
                                       "not in the allowlist")),
    Attack("server file access", "statements", "read or create files on the database host",
           _file_access, role_first(_file_access_expect)),
    Attack("change a session setting", "statements", "alter the connection's session state",
           _session_setting, policy_stops(harm(200, "session setting"),
                                          "not in the allowlist")),
    Attack("escape the statement timeout", "statements",
           "switch the timeout off, then run a slow statement", _escape_timeout,
           _escape_expect),
    Attack("role escalation: triggerer writes", "statements",
           "a triggerer token fails a worker's task instances",
           _as_role("triggerer", "finish_task",
                    ("dag_000", "t001", "run_0002", -1), "failed"),
           policy_stops(harm(200, "task instances to failed"),
                        "not in the allowlist for role 'triggerer'",
                        "role 'triggerer' may not call operation")),
    Attack("unknown role", "statements", "a token for a role no policy names",
           _as_role("intruder", "get_connection", "conn_2"),
           policy_stops(harm(200, "read passwords"), "role 'intruder' is not in the policy",
                        "role 'intruder' is not in the policy")),
    # data reachable through allowed statements and operations
    Attack("another connection's password", "allowed paths",
           "call get_connection for a connection this worker does not use",
           _allowed_path("get_connection", "conn_2"),
           lambda backend, config: harm(200, "read conn_2's password")),
    Attack("another DAG's XCom", "allowed paths", "call xcom_pull for another DAG",
           _allowed_path("xcom_pull", "dag_001", "run_0002", "t000"),
           lambda backend, config: harm(200, "another DAG's XCom")),
    Attack("injection through parameters", "allowed paths",
           "pass SQL as a variable key", _allowed_path("get_variable", "x' OR '1'='1"),
           lambda backend, config: Expect(True, 200, "")),
    # payloads
    Attack("oversized body", "payloads", "send a body over the server's limit",
           _oversized, everywhere(413, "exceeds the server's limit")),
    Attack("deeply nested JSON", "payloads", "100,000 nested arrays",
           _deep_json, everywhere(400, "not valid JSON")),
    Attack("deeply nested values", "payloads", "a parameter of 900 nested lists",
           _deep_params, _transaction_expect(400, "nest deeper than")),
    Attack("malformed typed value", "payloads", "a decimal that is not a number",
           _typed({"$t": "dec", "v": "1e999999999x"}),
           _transaction_expect(400, "malformed 'dec' value")),
    Attack("unknown value tag", "payloads", "a typed value of an unknown type",
           _typed({"$t": "python-object", "v": "os.system"}),
           _transaction_expect(400, "unknown value tag")),
    Attack("pickle in statement parameters", "payloads",
           "a dill payload that would run a shell command", _pickle_statement,
           _transaction_expect(400, "never accepted")),
    Attack("pickle in operation arguments", "payloads",
           "a dill payload as a logical call's argument", _pickle_operation, _operation_expect),
    Attack("body that is not JSON", "payloads", "bytes that are not JSON",
           _garbage, everywhere(400, "not valid JSON")),
    Attack("malformed step", "payloads", "a statement whose SQL is a number",
           _bad_step, everywhere(400, "sql")),
    # transactions and limits
    Attack("unknown transaction", "transactions", "commit a transaction id that never existed",
           _unknown_txn, everywhere(404, "is not open on this server")),
    Attack("another subject's transaction", "transactions",
           "commit a transaction another worker opened", _other_subject,
           _transaction_expect(404, "is not open on this server for this caller")),
    Attack("slow client holding locks", "transactions",
           "lock a row, go silent, and block everyone else", _slow_client, _lease_expect),
    Attack("too many transactions", "transactions",
           "open more transactions than one subject may hold", _subject_limit,
           _transaction_expect(429, "the limit per subject")),
    Attack("transaction kept open too long", "transactions",
           "keep one transaction busy past the longest allowed", _long_transaction,
           _transaction_expect(410, "open longer than the limit")),
    Attack("slow statement", "transactions", "run one statement for minutes",
           _slow_statement, _timeout_expect),
    # issue 14 item 5: outcome records answer only the request that made them
    Attack("replay another role's answer by its key", "transactions",
           "a token of another role for the admin's subject resends the admin's "
           "idempotency key as a retry", _foreign_key_replay,
           everywhere(409, "already names another request")),
    # issue 14, item 2: table rules see every table a statement touches
    *TABLE_RULE_ATTACKS,
    # issue 14, item 6: smaller items
    Attack("unauthenticated health reveals versions", "authentication",
           "learn the database and SQLAlchemy versions without a token", _health_versions,
           everywhere(200, "")),
    Attack("metrics with a role not allowed", "authentication",
           "read the server's metrics with a worker token", _metrics_as_worker,
           everywhere(403, "may not read the metrics")),
    Attack("far-future exp token", "authentication",
           "use a validly signed token that expires in the year 10^22", _far_future_token,
           everywhere(401, "lifetime too long")),
    Attack("malformed begin fields", "payloads",
           "begin with options of the wrong type or value (500 before)", _malformed_begin,
           everywhere(400, "'isolation_level'")),
]

# -- issue 14 item 3: state left for the next lease ------------------------------------------
#
# The attacker (host-1) plants state on every pooled connection it can (one
# committed transaction per connection the lab's pool may hold, taken in
# turn); another worker (host-2) then works normally.  Harm is what that
# worker meets.  Stopped on the bare proxy by the reset between leases or by
# the session guard; by the policy elsewhere.

_PLANTS = 20  # more than the lab's --max-transactions
_VICTIM_TRIES = 20  # so the victim meets every pooled connection too


def _plant(lab: SecurityLab, config: str, statements: list[str]) -> requests.Response:
    """Run ``statements`` and commit, once per pooled connection; a refusal ends it."""
    steps = [{"op": "begin"}]
    steps += [{"op": "execute", "sql": sql, "params": None} for sql in statements]
    steps.append({"op": "commit"})
    for _ in range(_PLANTS):
        response = lab.pipeline(config, steps, token=lab.tokens.worker)
        lab.roll_back_left_open(config, response, lab.tokens.worker)
        if response.status_code != 200:
            break
    return response


def _as_victim(lab: SecurityLab, config: str, sql: str, params: Any = None,
               commit: bool = False) -> list[requests.Response]:
    """The victim's statement, run :data:`_VICTIM_TRIES` times."""
    return [lab.sql(config, sql, params=params, token=lab.tokens.worker2, commit=commit)
            for _ in range(_VICTIM_TRIES)]


_PREPARE_HIJACK = {
    "postgresql": "PREPARE _pg3_0 (smallint) AS SELECT $1::int, 'x'::varchar, 'FORGED'::text",
    "mysql": "PREPARE _pg3_0 FROM 'SELECT 1, ''x'', ''FORGED'''",
    "sqlite": "PREPARE _pg3_0 AS SELECT 1, 'x', 'FORGED'",
}


def _prepared_hijack(lab: SecurityLab, config: str) -> Observation:
    planted = _plant(lab, config, [_PREPARE_HIJACK[lab.backend]])
    sql, params = lab.benign
    forged = sum("FORGED" in json.dumps(rows(response))
                 for response in _as_victim(lab, config, sql, params))
    return observe(planted, f"{forged} of {_VICTIM_TRIES} reads of another worker answered "
                   "by the attacker's prepared statement" if forged else None)


def _temp_shadow(lab: SecurityLab, config: str) -> Observation:
    planted = _plant(lab, config, [
        "CREATE TEMPORARY TABLE IF NOT EXISTS variable AS SELECT * FROM variable",
        "UPDATE variable SET val = 'FORGED'",
    ])
    sql, params = lab.benign
    forged = any("FORGED" in json.dumps(rows(response))
                 for response in _as_victim(lab, config, sql, params))
    return observe(planted, "another worker read the attacker's temporary copy of variable"
                   if forged else None)


def _temp_trigger(lab: SecurityLab, config: str) -> Observation:
    with lab.direct.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sp_loot")
        conn.exec_driver_sql("CREATE TABLE sp_loot (v TEXT)")
    try:
        planted = _plant(lab, config, [
            "CREATE TEMP TRIGGER IF NOT EXISTS sp_copy AFTER UPDATE ON main.variable BEGIN "
            "INSERT INTO sp_loot (v) VALUES (NEW.val); END"
        ])
        _as_victim(lab, config, "UPDATE variable SET val = val", commit=True)
        copied = _count("sp_loot")(lab)
    finally:
        with lab.direct.begin() as conn:
            conn.exec_driver_sql("DROP TABLE sp_loot")
    return observe(planted, f"a temporary trigger copied {copied} rows another worker wrote"
                   if copied else None)


_READ_ONLY = {
    "postgresql": "SET default_transaction_read_only = on",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = 1",
}


def _read_only_left(lab: SecurityLab, config: str) -> Observation:
    planted = _plant(lab, config, [_READ_ONLY[lab.backend]])
    failed = [response for response in
              _as_victim(lab, config, "UPDATE variable SET val = val", commit=True)
              if response.status_code != 200] if config == "proxy" else []
    return observe(planted, f"{len(failed)} writes of another worker failed: "
                   f"{observe(failed[0]).message[:80]}" if failed else None)


_SETTING_LEFT = {
    "postgresql": ("SET statement_timeout = 0", "SELECT current_setting('statement_timeout')",
                   "0"),
    "mysql": ("SET SESSION max_statement_time = 0", "SELECT @@session.max_statement_time", 0),
    "sqlite": ("PRAGMA recursive_triggers = 1", "SELECT * FROM pragma_recursive_triggers", 1),
}


def _setting_left(lab: SecurityLab, config: str) -> Observation:
    plant, check, planted_value = _SETTING_LEFT[lab.backend]
    planted = _plant(lab, config, [plant])
    seen = [row[0] for response in _as_victim(lab, config, check) for row in rows(response)]
    return observe(planted, f"another worker's session still had {plant!r}"
                   if planted_value in seen else None)


_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(4242)", "SELECT pg_try_advisory_lock(4242)",
                   "SELECT pg_advisory_unlock_all()"),
    "mysql": ("SELECT GET_LOCK('sp_attack', 0)", "SELECT IS_FREE_LOCK('sp_attack')", None),
    "sqlite": ("PRAGMA locking_mode = EXCLUSIVE", None, None),
}


def _lock_left(lab: SecurityLab, config: str) -> Observation:
    plant, check, release = _LOCKS[lab.backend]
    planted = _plant(lab, config, [plant])
    held = False
    if check is not None:
        with lab.direct.connect() as conn:
            held = not conn.exec_driver_sql(check).scalar()
            if release:
                conn.exec_driver_sql(release)
            conn.rollback()
    return observe(planted, "a session lock outlived the attacker's transaction"
                   if held else None)


def _outcome_table(lab: SecurityLab, config: str) -> Observation:
    # In a schema of its own; on SQLite an attached file named session_proxy.
    table = "session_proxy.session_proxy_outcomes"
    quoted = f"`{table.replace('.', '`.`')}`" if lab.backend == "mysql" else (
        '"' + table.upper().replace(".", '"."') + '"')
    attempts = [f"SELECT subject, body FROM {table}", f"DELETE FROM {table}",
                f"UPDATE {table} SET status = 500", f"SELECT * FROM {quoted}"]
    if lab.backend == "postgresql":
        attempts.append("SELECT database_to_xml(true, true, '')")
    responses = [lab.sql(config, sql, token=lab.tokens.worker, commit=True)
                 for sql in attempts]
    ran = [sql.split()[0] for sql, response in zip(attempts, responses, strict=True)
           if response.status_code == 200]
    return observe(responses[0], f"ran {', '.join(ran)} on the outcome table" if ran
                   else None)


_DYNAMIC_OUTCOME_SQL = {
    # The table's name is built from pieces at run time: no text names it.
    "postgresql": ["DO $$ BEGIN EXECUTE 'DELETE FROM ' || 'sess' || 'ion_proxy.sess' "
                   "|| 'ion_proxy_outcomes'; END $$"],
    "mysql": ["CREATE PROCEDURE sp_attack_run() BEGIN EXECUTE IMMEDIATE "
              "CONCAT('DELETE FROM sess', 'ion_proxy.sess', 'ion_proxy_outcomes'); END",
              "CALL sp_attack_run()"],
    # SQLite has no procedural code: the nearest text is a syntax error.
    "sqlite": ["DO $$ BEGIN EXECUTE 'DELETE FROM ' || 'sess' || 'ion_proxy_outcomes'; END $$"],
}


def _outcome_rows(lab: SecurityLab) -> int:
    if lab.backend == "sqlite":
        # The server's own file, attached on its connections only.
        outcome_file = str(lab.direct.url.database) + ".session_proxy"
        with contextlib.closing(sqlite3.connect(outcome_file)) as conn:
            return conn.execute("SELECT count(*) FROM session_proxy_outcomes").fetchone()[0]
    with lab.direct.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM session_proxy.session_proxy_outcomes").scalar()


def _outcome_by_dynamic_sql(lab: SecurityLab, config: str) -> Observation:
    """Empty the outcome table with SQL assembled at run time, after an admin's commit."""
    lab.post(config, protocol.PIPELINE_PATH, protocol.pipeline_request(None, [
        {"op": "begin"},
        {"op": "execute", "sql": "UPDATE variable SET val = val", "params": None},
        {"op": "commit"},
    ]), token=lab.tokens.admin,
        headers={protocol.IDEMPOTENCY_KEY_HEADER: secrets.token_urlsafe(18)})
    before = _outcome_rows(lab)
    responses = [lab.sql(config, sql, token=lab.tokens.worker, commit=True)
                 for sql in _DYNAMIC_OUTCOME_SQL[lab.backend]]
    if lab.backend == "mysql":
        with lab.direct.begin() as conn:
            conn.exec_driver_sql("DROP PROCEDURE IF EXISTS sp_attack_run")
    after = _outcome_rows(lab)
    return observe(responses[0], f"deleted {before - after} recorded answers of other "
                   "clients" if after < before else None)


def _dynamic_outcome_expect(backend: str, config: str) -> Expect:
    if config == "logical":  # its worker role may run no statement: refused by role first
        return Expect(True, 403, "may run no statement", or_text="dynamic SQL")
    if backend == "sqlite":  # "$" outside quotes is a parameter there: the text guard
        return Expect(True, 400, "sqlite reading", or_text="may run no statement")
    return Expect(True, 403, "dynamic SQL", or_text="may run no statement")


def _left_for_next(status: Callable[[str], int]) -> Callable[[str, str], Expect]:
    """Stopped everywhere: ``status`` (per backend) on the bare proxy, the policy elsewhere."""

    def expect(backend: str, config: str) -> Expect:
        if config == "proxy":
            return Expect(True, status(backend), "")
        return Expect(True, 403, "role 'worker'")

    return expect


def _lock_expect(backend: str, config: str) -> Expect:
    if backend == "sqlite":  # refused whatever the policy (session guard)
        return Expect(True, 403, "PRAGMA locking_mode")
    return _left_for_next(lambda backend: 200)(backend, config)


ISOLATION_ATTACKS: list[Attack] = [
    Attack("prepared-statement hijack", "isolation between leases",
           "PREPARE psycopg's own statement name so another worker's reads run it",
           _prepared_hijack,
           role_first(everywhere(403, "client-named prepared statements"))),
    Attack("temporary table shadowing a table", "isolation between leases",
           "leave a temporary copy of variable that another worker reads instead",
           _temp_shadow, _left_for_next(lambda backend: 200)),
    Attack("temporary trigger on a shared table", "isolation between leases",
           "leave a TEMP trigger that copies another worker's writes",
           _temp_trigger,
           _left_for_next(lambda backend: 200 if backend == "sqlite" else 422)),
    Attack("read-only session left behind", "isolation between leases",
           "make every later writer on the pooled connection fail (query_only)",
           _read_only_left, _left_for_next(lambda backend: 200)),
    Attack("session setting left behind", "isolation between leases",
           "switch a setting off for whoever gets the connection next",
           _setting_left, _left_for_next(lambda backend: 200)),
    Attack("session lock left behind", "isolation between leases",
           "keep an advisory lock (SQLite: exclusive locking mode) past the transaction",
           _lock_left, _lock_expect),
    Attack("outcome table without a policy", "isolation between leases",
           "read, change or delete other subjects' recorded answers",
           _outcome_table, role_first(everywhere(403, "outcome table"))),
    Attack("outcome table through dynamic SQL", "isolation between leases",
           "delete other subjects' recorded answers with a table name built at run time "
           "(DO ... EXECUTE, a procedure with EXECUTE IMMEDIATE)",
           _outcome_by_dynamic_sql, _dynamic_outcome_expect),
]



# -- issue 14, item 1 and 2: the statement text guard ----------------------------------------


def _guarded(steps_for: Callable[[str], list[dict]]) -> Callable[[SecurityLab, str], Observation]:
    """Send the backend's hostile steps as the worker; harm is any task instance marked."""

    def run(lab: SecurityLab, config: str) -> Observation:
        steps = [{"op": protocol.BEGIN}, *steps_for(lab.backend), {"op": protocol.COMMIT}]
        response = lab.pipeline(config, steps, token=lab.tokens.worker)
        lab.roll_back_left_open(config, response, lab.tokens.worker)
        changed = _count("task_instance", "state = 'guard-x'")(lab)
        return observe(response, f"changed {changed} task instances" if changed else None)

    return run


def _nul_comment(backend: str) -> list[dict]:
    # libpq cuts at the NUL: PostgreSQL ran "UPDATE ... SET state = 'guard-x'" on every row.
    return [{"op": protocol.EXECUTE, "params": None, "sql": (
        "UPDATE task_instance SET state = 'guard-x' -- \x00\nWHERE task_instance.task_id = 'none'"
    )}]


def _comment_forms(backend: str) -> list[dict]:
    sql = {
        # MySQL runs the executable comment; others skip it.
        "mysql": "UPDATE task_instance SET state = 'guard-x' /*!99999 WHERE 1 = 0 */ "
                 "WHERE task_id = 'none' OR 1 = 1",
        # Where the string ends depends on standard_conforming_strings.
        "postgresql": "UPDATE task_instance SET state = 'guard-x\\' WHERE task_id = 'none' "
                      "OR state = '' OR 1 = 1 -- '",
        # "$$" is a SQLite parameter, a PostgreSQL quote, a MySQL name.
        "sqlite": "UPDATE task_instance SET state = 'guard-x' WHERE task_id = $$ OR 1 = 1 OR $$",
    }[backend]
    return [{"op": protocol.EXECUTE, "sql": sql, "params": None}]


def _encoding_switch(backend: str) -> list[dict]:
    if backend == "sqlite":  # no connection charset: a no-break space for a space
        return [{"op": protocol.EXECUTE, "params": None, "sql":
                 "UPDATE task_instance SET state = 'guard-x' WHERE\u00a0task_id = 'none'"}]
    switch = "SET NAMES gbk" if backend == "mysql" else "SET client_encoding = 'GBK'"
    return [
        {"op": protocol.EXECUTE, "sql": switch, "params": None},
        # Under GBK the escaping backslash pymysql adds joins the character before it.
        {"op": protocol.EXECUTE, "params": ["\u4e2d' OR 1=1 -- "],
         "sql": "UPDATE task_instance SET state = 'guard-x' WHERE task_id = %s"},
    ]


def _nested_parens(lab: SecurityLab, config: str) -> Observation:
    sql = "SELECT " + "(" * 293_000 + "1" + ")" * 293_000  # 586 KB, as in issue 14
    started = time.monotonic()
    response = lab.sql(config, sql, token=lab.tokens.worker)
    seconds = time.monotonic() - started
    return observe(response, f"server busy {seconds:.1f} s" if seconds > 5 else None)


def _encoding_expect(backend: str, config: str) -> Expect:
    # The short SET passes the role check of a role without statements; the guard stops it.
    if config == "logical" and backend == "sqlite":
        return Expect(True, 403, "not in the allowlist for role 'worker'")
    return Expect(True, 400, "refused before it ran")


GUARD_ATTACKS: list[Attack] = [
    Attack("NUL in a comment", "statement text",
           "hide a WHERE clause behind a NUL the driver cuts at", _guarded(_nul_comment),
           _transaction_expect(400, "NUL character")),
    Attack("comment and quote forms", "statement text",
           "text one backend or session setting reads differently from the firewall",
           _guarded(_comment_forms), _transaction_expect(400, "refused before it ran")),
    Attack("encoding confusion", "statement text",
           "switch the connection charset so a parameter's escaping breaks",
           _guarded(_encoding_switch), _encoding_expect),
    Attack("nested parentheses", "statement text",
           "586 KB of nested parentheses to burn server CPU", _nested_parens,
           _transaction_expect(400, "nest deeper than")),
]
ATTACKS.extend(GUARD_ATTACKS)


# -- issue 14, item 4: resources stay bounded whatever a client sends ----------------------------


def _rss(lab: SecurityLab, config: str) -> int:
    """Resident set size of ``config``'s server process, in bytes."""
    with open(f"/proc/{lab.servers[config].process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _metric(lab: SecurityLab, config: str, name: str) -> float:
    """One unlabelled value of ``config``'s ``/v1/metrics``, read with the admin token."""
    return lab.servers[config].metric(name, lab.tokens.admin)


def _threads(lab: SecurityLab, config: str) -> int:
    with open(f"/proc/{lab.servers[config].process.pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


_MILLION_ROWS = {
    "postgresql": "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) AS g",
    "mysql": "SELECT seq, repeat('x', 100) FROM seq_1_to_1000000",
    "sqlite": "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
              "WHERE n < 1000000) SELECT n, hex(zeroblob(50)) FROM g",
}


def _long_results(lab: SecurityLab, config: str) -> Observation:
    """Open two million-row results, read one page of each, and hold them."""
    before = _rss(lab, config)
    held: list[str] = []
    response = None
    try:
        for _ in range(2):
            response = lab.pipeline(config, [
                {"op": "begin"},
                {"op": "execute", "sql": _MILLION_ROWS[lab.backend], "params": None},
            ], token=lab.tokens.worker)
            if response.status_code != 200:
                lab.roll_back_left_open(config, response, lab.tokens.worker)
                return observe(response)
            held.append(response.json()["txn"])
        grew = _rss(lab, config) - before
    finally:
        for txn in held:
            lab.pipeline(config, [{"op": "rollback"}], token=lab.tokens.worker, txn=txn)
    observation = observe(response)
    observation.message = f"server memory grew {grew / 2**20:.0f} MB"
    if grew > 64 * 2**20:
        observation.harm = f"the server held {grew / 2**20:.0f} MB for two open results"
    return observation


def _outcome_memory(lab: SecurityLab, config: str) -> Observation:
    """Commit 80 requests whose answers are 1 MB each, each with an idempotency key."""
    sql = {
        "postgresql": "SELECT repeat('x', 1000000)",
        "mysql": "SELECT repeat('x', 1000000)",
        "sqlite": "SELECT hex(zeroblob(500000))",
    }[lab.backend]
    response = None
    for n in range(80):
        response = lab.post(
            config, protocol.PIPELINE_PATH,
            protocol.pipeline_request(None, [
                {"op": "begin"}, {"op": "execute", "sql": sql, "params": None},
                {"op": "commit"}]),
            token=lab.tokens.worker,
            headers={protocol.IDEMPOTENCY_KEY_HEADER: f"outcome-memory-{n:04d}-{time.time_ns()}"},
        )
        if response.status_code != 200:
            lab.roll_back_left_open(config, response, lab.tokens.worker)
            return observe(response)
    # What the store says it holds (a count of bytes), not the process's RSS,
    # which the allocator's free lists blur by tens of MB either way.
    held = _metric(lab, config, "session_proxy_outcome_memory_bytes")
    observation = observe(response)
    observation.message = (
        f"remembered 80 MB of answers; the outcome store holds {held / 2**20:.0f} MB"
    )
    if held > 16 * 2**20:  # the lab caps the memory at 16 MiB
        observation.harm = f"kept {held / 2**20:.0f} MB of answers in memory"
    return observation


_LAZY_ROWS = {
    # The first row comes at once; the rest only while the rows are fetched.
    "postgresql": "SELECT pg_sleep(0.01) FROM generate_series(1, 1000)",
    "mysql": "SELECT SLEEP(0.01) FROM seq_1_to_1000",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
              "WHERE x < 3000000000) SELECT x FROM c WHERE x = 1 OR x = 2999999999",
}

_INTERRUPTED_VALUE = {
    "postgresql": "SELECT count(*) FROM generate_series(1, 2000000000)",
    "mysql": "SELECT BENCHMARK(1000000000, MD5('x'))",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
              "WHERE x < 3000000000) SELECT count(*) FROM c",
}


def _timed_statement(sqls: dict[str, str]) -> Callable[[SecurityLab, str], Observation]:
    """Run one long statement; harm when it answers 200 or runs long past the limit."""

    def run(lab: SecurityLab, config: str) -> Observation:
        started = time.monotonic()
        response = lab.sql(config, sqls[lab.backend], token=lab.tokens.worker)
        took = time.monotonic() - started
        limit = float(LIMITS["--statement-timeout"])
        harm = None
        if response.status_code == 200:
            harm = f"answered 200 after {took:.1f} s against a {limit:g} s timeout"
        elif took > limit + 3:
            harm = f"ran {took:.1f} s against a {limit:g} s timeout"
        return observe(response, harm)

    return run


def _first_lease_timeouts(lab: SecurityLab, config: str) -> Observation:
    """Four slow statements at once, each the first lease of a new pooled connection.

    On MySQL the server is started with the ``mariadb+pymysql://`` spelling
    of the lab's URL, which once skipped the connect-time timeout.
    """
    from session_proxy_server.testing import ServerProcess

    slow = {"postgresql": "SELECT pg_sleep(4)", "mysql": "SELECT SLEEP(4)",
            "sqlite": _INTERRUPTED_VALUE["sqlite"]}[lab.backend]
    extra: ServerProcess | None = None
    url = lab.url(config)
    if lab.backend == "mysql" and config == "proxy":
        limits = [item for pair in LIMITS.items() for item in pair]
        spelled = "mariadb+pymysql" + lab.db_url[lab.db_url.index("://"):]
        extra = ServerProcess(spelled, *limits)
        url = extra.url
    results: list[tuple[requests.Response, float]] = []

    def one(token: str) -> None:
        started = time.monotonic()
        response = requests.post(
            url + protocol.PIPELINE_PATH,
            data=protocol_dumps([{"op": "begin"}, {"op": "execute", "sql": slow, "params": None},
                                 {"op": "rollback"}]),
            headers={"Authorization": f"Bearer {token}",
                     "Content-Type": protocol.JSON_CONTENT_TYPE},
            timeout=TIMEOUT,
        )
        results.append((response, time.monotonic() - started))
        if response.status_code != 200:
            txn = (response.json().get("error") or {}).get("txn")
            if isinstance(txn, str):
                requests.post(url + protocol.PIPELINE_PATH,
                              data=protocol_dumps([{"op": "rollback"}], txn),
                              headers={"Authorization": f"Bearer {token}",
                                       "Content-Type": protocol.JSON_CONTENT_TYPE},
                              timeout=TIMEOUT)

    try:
        # Two subjects, two each: the per-subject limit of the lab is two.
        tokens = [lab.tokens.worker, lab.tokens.worker, lab.tokens.worker2, lab.tokens.worker2]
        threads = [threading.Thread(target=one, args=(token,)) for token in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    finally:
        if extra is not None:
            extra.stop()
    limit = float(LIMITS["--statement-timeout"])
    worst = max(took for _, took in results)
    answered = [r for r, _ in results if r.status_code == 200]
    harm = None
    if answered or worst > limit + 2:
        harm = f"{len(answered)} of 4 answered 200; the slowest ran {worst:.1f} s"
    return observe(results[0][0], harm)


def protocol_dumps(steps: list[dict], txn: str | None = None) -> bytes:
    from session_proxy.wire.codec import dumps

    return dumps(protocol.pipeline_request(txn, steps))


_NO_TIMEOUT = {
    "postgresql": ("SET LOCAL statement_timeout = 0", "SELECT pg_sleep(12)"),
    "mysql": ("SET SESSION max_statement_time = 0", "SELECT SLEEP(12)"),
    "sqlite": ("SELECT 1", _INTERRUPTED_VALUE["sqlite"]),
}


def _statement_past_transaction_limit(lab: SecurityLab, config: str) -> Observation:
    """Keep a transaction busy until just before its limit, then run a long statement."""
    response = _open(lab, config, lab.tokens.worker)
    if response.status_code != 200:
        return observe(response)
    txn = response.json()["txn"]
    limit = float(LIMITS["--max-transaction-seconds"])
    opened = time.monotonic()
    sql, params = lab.benign
    while time.monotonic() - opened < limit - 0.8:
        time.sleep(0.3)  # inside the idle lease
        lab.pipeline(config, [{"op": "execute", "sql": sql, "params": params}],
                     token=lab.tokens.worker, txn=txn)
    disable, slow = _NO_TIMEOUT[lab.backend]
    started = time.monotonic()
    response = lab.pipeline(config, [
        {"op": "execute", "sql": disable, "params": None},
        {"op": "execute", "sql": slow, "params": None},
    ], token=lab.tokens.worker, txn=txn)
    took = time.monotonic() - started
    lab.roll_back_left_open(config, response, lab.tokens.worker)
    lab.pipeline(config, [{"op": "rollback"}], token=lab.tokens.worker, txn=txn)
    total = time.monotonic() - opened
    harm = None
    if response.status_code == 200 or total > limit + 2:
        harm = f"a statement ran {took:.1f} s, the transaction {total:.1f} s (limit {limit:g} s)"
    return observe(response, harm)


def _half_open_connections(lab: SecurityLab, config: str) -> Observation:
    """200 connections that send part of a request and stop; health must still answer."""
    import socket

    server = lab.servers[config]
    bound = int(LIMITS["--max-connections"])
    timeout = float(LIMITS["--socket-timeout"])
    held: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /v1/pipeline HTTP/1.1\r\nHost: attacker\r\nContent-Le")
            held.append(sock)
        time.sleep(0.5)
        threads = _threads(lab, config)
        started = time.monotonic()
        try:
            health = requests.get(server.url + protocol.HEALTH_PATH, timeout=3 * timeout)
            waited, status = time.monotonic() - started, health.status_code
        except requests.RequestException:
            waited, status = time.monotonic() - started, 0
        time.sleep(timeout + 1)
        dropped = 0
        for sock in held:
            sock.settimeout(0.5)
            try:
                if sock.recv(1) == b"":
                    dropped += 1
            except TimeoutError:
                pass
            except OSError:
                dropped += 1
    finally:
        for sock in held:
            sock.close()
    harm = []
    if status != 200 or waited > 2 * timeout + 2:
        harm.append(f"health did not answer within {waited:.1f} s")
    if threads > bound + 16:
        harm.append(f"the server grew {threads} threads")
    if dropped < min(200, bound):
        harm.append(f"only {dropped} of 200 half-open connections were closed")
    return Observation(status, None,
                       f"health answered in {waited:.1f} s; {threads} threads; "
                       f"{dropped} of 200 half-open connections closed",
                       "; ".join(harm) or None)


def _resource_expect(proxy_text: dict[str, str]) -> Callable[[str, str], Expect]:
    """Stopped everywhere: by the limit on the proxy, by the policy elsewhere."""

    def expect(backend: str, config: str) -> Expect:
        if config == "proxy":
            text = proxy_text.get(backend, proxy_text.get("*", ""))
            return Expect(True, 200 if text.startswith("server memory") or text.startswith(
                "remembered") else 422, text)
        return Expect(True, 403, "not in the allowlist for role 'worker'")

    return expect


def _transaction_limit_expect(backend: str, config: str) -> Expect:
    if config in ("logical", "proxy+policy"):
        return Expect(True, 403, "not in the allowlist for role 'worker'")
    return Expect(True, 410, "longer than the limit")


RESOURCE_ATTACKS: list[Attack] = [
    Attack("two million-row results held open", "resources",
           "make the server buffer long results it has not sent", _long_results,
           _resource_expect({"*": "server memory grew"})),
    Attack("outcome memory flood", "resources",
           "make the server remember 80 MB of committed answers", _outcome_memory,
           _resource_expect({"*": "remembered 80 MB"})),
    Attack("rows produced past the timeout", "resources",
           "a statement whose rows are made while they are fetched", _timed_statement(_LAZY_ROWS),
           _resource_expect({"postgresql": "statement timeout", "mysql": "max_statement_time",
                             "sqlite": "interrupted"})),
    Attack("interrupted statement answers a value", "resources",
           "a statement the timeout stops that still returns a value (MariaDB BENCHMARK)",
           _timed_statement(_INTERRUPTED_VALUE),
           _resource_expect({"postgresql": "statement timeout", "mysql": "statement timeout",
                             "sqlite": "interrupted"})),
    Attack("first lease on new connections", "resources",
           "four slow statements, each on a fresh pooled connection (MySQL: mariadb:// URL)",
           _first_lease_timeouts,
           _resource_expect({"postgresql": "statement timeout", "mysql": "max_statement_time",
                             "sqlite": "interrupted"})),
    Attack("statement running past the transaction limit", "resources",
           "switch the statement timeout off and sleep as the transaction limit passes",
           _statement_past_transaction_limit, _transaction_limit_expect),
    Attack("half-open connections", "resources",
           "hold 200 connections that sent half a request", _half_open_connections,
           lambda backend, config: Expect(True, 200, "health answered")),
]

ATTACKS.extend(RESOURCE_ATTACKS)


def run_attack(lab: SecurityLab, attack: Attack, config: str) -> Outcome:
    """Run ``attack`` against ``config``; check and restore the database."""
    before = lab.snapshot()
    observation = attack.run(lab, config)
    changed = lab.snapshot() != before
    harm_done = observation.harm
    if changed:
        harm_done = harm_done or "changed the database"
        lab.restore()
    return Outcome(attack.name, attack.category, config, observation.status,
                   observation.code, observation.message, harm_done, changed)


ATTACKS += ISOLATION_ATTACKS


def run_all(lab: SecurityLab, configs: tuple[str, ...] = CONFIGS) -> list[Outcome]:
    """Every attack against every configuration."""
    return [run_attack(lab, attack, config) for attack in ATTACKS for config in configs]


def security_results(db_url: str) -> dict[str, Any]:
    """Run the whole suite against a fresh lab on ``db_url``; the results-file section."""
    with SecurityLab(db_url) as lab:
        outcomes = run_all(lab)
        backend = lab.backend
    return {
        "backend": backend,
        "configs": list(CONFIGS),
        "limits": dict(LIMITS),
        "attacks": [
            {
                "name": attack.name,
                "category": attack.category,
                "goal": attack.goal,
                "claimed_stopped": {
                    config: attack.expect(backend, config).stopped for config in CONFIGS
                },
            }
            for attack in ATTACKS
        ],
        "outcomes": [outcome.to_json() for outcome in outcomes],
    }
