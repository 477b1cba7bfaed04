"""Three server configurations in front of one seeded database, for attacks.

:class:`SecurityLab` sets up what :mod:`session_proxy_bench.security.attacks` attacks:

``proxy``
    the statement proxy with authentication but no policy: any valid token
    may run any SQL.
``proxy+policy``
    the same with a statement allowlist learnt the way the docs recommend:
    a recording server (``--policy-record``) watches a trusted run of the
    workload script as role ``worker`` and a heartbeat as role
    ``triggerer``; the enforcing server loads that file, plus an ``admin``
    role allowed everything.
``logical``
    the logical API (``--operations session_proxy_bench.workload.operations``) with a
    policy recorded the same way, so ``worker`` may call the operations it
    called and no SQL at all.

Every server runs with tight limits so the limit attacks finish quickly
(:data:`LIMITS`), verifies tokens with no clock leeway, and sees tokens for
the subjects and roles of :class:`Tokens`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from session_proxy.wire import codec, protocol
from session_proxy.wire.codec import dumps
from session_proxy_server.testing import ServerProcess, issue, signing_key

from ..workload import OPERATIONS_MODULE
from ..workload import operations as ops
from ..workload.modes import ModeRunner
from ..workload.script import SCRIPT_SEED, dump_tables, run_script
from ..workload.seed import reset_schema, seed

CONFIGS = ("proxy", "proxy+policy", "logical")

#: Server limits shared by every configuration.
LIMITS = {
    "--lease-seconds": "2",
    "--max-transaction-seconds": "3",
    "--max-transactions-per-subject": "2",
    "--max-transactions": "16",
    "--statement-timeout": "1",
    "--max-body-bytes": str(1024 * 1024),
    "--token-leeway": "0",
    # issue 14, item 4: resource limits
    "--socket-timeout": "5",
    "--max-connections": "128",
    "--outcome-memory-bytes": str(16 * 1024 * 1024),
}

TIMEOUT = 30

#: Roles judged by table rules (issue 14, item 2), added to both policies:
#: an allow-list and a deny-list in the style docs/security.md documents.
TABLE_RULE_ROLES = {
    "reader": {"tables": {"task_instance": "read", "xcom": "read", "*": "none"}},
    "auditor": {"tables": {"connection": "none", "*": "read"}},
}


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Valid tokens for the lab's callers."""

    worker: str  # subject host-1, the attacker in most cases
    worker2: str  # subject host-2, another worker
    triggerer: str  # subject host-3, a role with a narrower policy
    intruder: str  # subject host-4, a role no policy knows
    admin: str  # subject operator, allowed everything by the policies

    @classmethod
    def make(cls) -> Tokens:
        return cls(
            worker=issue("worker", "host-1"),
            worker2=issue("worker", "host-2"),
            triggerer=issue("triggerer", "host-3"),
            intruder=issue("intruder", "host-4"),
            admin=issue("admin", "operator"),
        )


def seed_lab(engine: sa.Engine) -> None:
    """The workload's data set the trusted script expects."""
    reset_schema(engine)
    with sessionmaker(bind=engine)() as session:
        seed(session, **SCRIPT_SEED)
        session.commit()


class SecurityLab:
    """The three configurations for one database; use as a context manager."""

    def __init__(self, db_url: str, workdir: Path | None = None) -> None:
        self.db_url = db_url
        self._stack = contextlib.ExitStack()
        if workdir is None:
            workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        self.workdir = workdir
        self.direct = sa.create_engine(db_url)
        self.backend = self.direct.dialect.name
        self.tokens = Tokens.make()
        self.private_key_path = signing_key()[0]
        self.servers: dict[str, ServerProcess] = {}
        #: A SELECT the worker's policy allows: (sql, wire-encoded params).
        self.benign: tuple[str, Any] = ("", None)

    # -- set-up -------------------------------------------------------------------

    def __enter__(self) -> SecurityLab:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every server and dispose of the engine."""
        for server in self.servers.values():
            server.stop()
        self._stack.close()
        self.direct.dispose()

    def _server(self, *args: str) -> ServerProcess:
        limits = [item for pair in LIMITS.items() for item in pair]
        return ServerProcess(self.db_url, *limits, *args)

    def _start(self) -> None:
        proxy_policy = self.workdir / "proxy-policy.json"
        logical_policy = self.workdir / "logical-policy.json"
        with self._server("--policy-record", str(proxy_policy)) as recorder:
            self.benign = self._trusted_run("proxy", recorder.url)
        with self._server(
            "--operations", OPERATIONS_MODULE, "--policy-record", str(logical_policy)
        ) as recorder:
            self._trusted_run("logical", recorder.url)
        for path in (proxy_policy, logical_policy):
            policy = json.loads(path.read_text())
            policy["roles"]["admin"] = {"allow_all": True}
            policy["roles"].update(TABLE_RULE_ROLES)
            path.write_text(json.dumps(policy, indent=2))
        self.policies = {"proxy+policy": proxy_policy, "logical": logical_policy}
        self.servers["proxy"] = self._server()
        self.servers["proxy+policy"] = self._server("--policy", str(proxy_policy))
        self.servers["logical"] = self._server(
            "--operations", OPERATIONS_MODULE, "--policy", str(logical_policy)
        )
        seed_lab(self.direct)

    def _trusted_run(self, mode: str, url: str) -> tuple[str, Any]:
        """Run the workload script as worker and a heartbeat as triggerer."""
        seen: list[tuple[str, Any]] = []
        seed_lab(self.direct)
        worker = ModeRunner(mode, server_url=url, token=self.tokens.worker)
        if worker.engine is not None:

            @sa.event.listens_for(worker.engine, "before_cursor_execute")
            def remember(conn: Any, cursor: Any, sql: str, params: Any, *args: Any) -> None:
                seen.append((sql, params))

        try:
            run_script(worker)
        finally:
            worker.close()
        triggerer = ModeRunner(mode, server_url=url, token=self.tokens.triggerer)
        try:
            triggerer.call(ops.heartbeat, 1, now=datetime.datetime(2026, 1, 1))
        finally:
            triggerer.close()
        for sql, params in seen:
            if sql.startswith("SELECT variable."):
                if isinstance(params, dict):
                    return sql, {key: codec.to_wire(value) for key, value in params.items()}
                return sql, [codec.to_wire(value) for value in params]
        return "", None

    # -- what attacks use ------------------------------------------------------------

    def url(self, config: str) -> str:
        """The base URL of ``config``'s server."""
        return self.servers[config].url

    def snapshot(self) -> dict[str, list[tuple]] | str:
        """Every workload table's rows (to tell whether an attack changed anything)."""
        try:
            return dump_tables(self.direct)
        except sa.exc.DBAPIError as exc:  # e.g. a table was dropped
            return f"unreadable: {exc.orig}"

    def restore(self) -> None:
        """Put the seeded data set back after an attack that changed it."""
        seed_lab(self.direct)

    def post(
        self,
        config: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST ``body`` (or raw ``data``) to ``config``'s server as ``token``."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.setdefault("Content-Type", protocol.JSON_CONTENT_TYPE)
        payload = data if data is not None else dumps(body)
        return requests.post(
            self.url(config) + path, data=payload, headers=sent, timeout=TIMEOUT
        )

    def pipeline(
        self, config: str, steps: list[dict], *, token: str | None, txn: str | None = None
    ) -> requests.Response:
        """One ``/v1/pipeline`` request; parameters are sent as given (wire form)."""
        return self.post(
            config, protocol.PIPELINE_PATH, protocol.pipeline_request(txn, steps), token=token
        )

    def sql(self, config: str, sql: str, *, token: str | None, txn: str | None = None,
            params: Any = None, commit: bool = False) -> requests.Response:
        """Run one statement (and COMMIT when asked) in one request.

        A failed statement leaves its transaction open on the server; it is
        rolled back here so the caller's next attack starts clean.
        """
        steps: list[dict] = [] if txn else [{"op": protocol.BEGIN}]
        steps.append({"op": protocol.EXECUTE, "sql": sql, "params": params})
        steps.append({"op": protocol.COMMIT if commit else protocol.ROLLBACK})
        response = self.pipeline(config, steps, token=token, txn=txn)
        self.roll_back_left_open(config, response, token)
        return response

    def roll_back_left_open(
        self, config: str, response: requests.Response, token: str | None
    ) -> None:
        """Roll back the transaction a failed request left open, if any."""
        if response.status_code == 200:
            return
        try:
            left_open = response.json()["error"].get("txn")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if isinstance(left_open, str):
            self.pipeline(config, [{"op": protocol.ROLLBACK}], token=token, txn=left_open)

    @staticmethod
    def operation_path(name: str) -> str:
        """The path of a workload operation (``get_variable``, ...)."""
        return f"{protocol.OPERATIONS_PREFIX}{OPERATIONS_MODULE}.{name}"

    def operation(
        self, config: str, name: str, *args: Any, token: str | None, **kwargs: Any
    ) -> requests.Response:
        """One call of workload operation ``name``, arguments encoded by the codec."""
        from session_proxy import values

        body = protocol.operation_request(
            [values.to_wire(a) for a in args], {k: values.to_wire(v) for k, v in kwargs.items()}
        )
        return self.post(config, self.operation_path(name), body, token=token)

