""""Blessed" DB calls enforced in CI: a recorded policy as a CI gate (Jarek).

The gate as the docs recommend it: CI runs the project's tests against a
recording server (``--policy-record``), and production enforces the policy
file it wrote (``--policy``).  Measured, in each design:

- **record**: the workload's test script
  (:data:`~session_proxy_bench.workload.script.SCRIPT`: every operation at
  least once, on the small seed the tests use) runs as role ``worker``
  through a recording server: statements in proxy mode, operations in
  logical mode;
- **enforce**: the benchmark's operations
  (:data:`~session_proxy_bench.scenarios.SCENARIOS`) then run as role
  ``worker`` the way production runs them, at every scale (tasks per DAG)
  and several calls each, against a server enforcing that policy.  A call
  refused by the policy (403 ``policy_violation``) is a **false positive**:
  a legitimate call the gate stops; its fingerprint is kept;
- **a gap in the tests**: the same, recorded from the script with one
  operation left out (:data:`LEFT_OUT`), which is what an untested code
  path does to the gate.

Attacks stopped by a policy recorded this way are the security section's
``proxy+policy`` and ``logical`` columns (its lab records from the same
script as the same role); the report quotes them here.  The workload's
tables are seeded for the measurement and put back as found
(:mod:`.workload_tables`).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from session_proxy.errors import AccessDenied
from session_proxy_server.testing import ServerProcess, issue

from ..scenarios import SCENARIOS, Context
from ..workload import OPERATIONS_MODULE
from ..workload.modes import ModeRunner
from ..workload.script import SCRIPT, SCRIPT_SEED, run_script
from . import Question, QuestionContext
from .workload_tables import fresh_workload, reseed

KEY = "ci_gate"
DESIGNS = ("proxy", "logical")
ROLE = "worker"
#: The operation the "gap" variant's recording leaves out.
LEFT_OUT = "clear_task_instances"
RUNS_PER_DAG = 3
#: Refused fingerprints kept per variant, for the report's examples.
KEPT_FINGERPRINTS = 20


def _server(db_url: str, design: str, *flags: str) -> ServerProcess:
    operations = ("--operations", OPERATIONS_MODULE) if design == "logical" else ()
    return ServerProcess(db_url, *operations, *flags)


def _record(db_url: str, direct: sa.Engine, design: str, policy: Path,
            left_out: str | None) -> int:
    """Run the test script (without ``left_out``) through a recording server;
    return the number of calls it made."""
    reseed(direct, **SCRIPT_SEED)
    skipped = SCENARIOS[left_out].operation if left_out else None
    with _server(db_url, design, "--policy-record", str(policy)) as recorder:
        runner = ModeRunner(design, server_url=recorder.url,
                            token=issue(role=ROLE, subject="ci"), verify=recorder.verify)
        try:
            return run_script(runner, skip=skipped)
        finally:
            runner.close()


def _refusal(exc: BaseException) -> AccessDenied | None:
    """The policy refusal behind ``exc`` (SQLAlchemy wraps the driver's error)."""
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        if isinstance(candidate, AccessDenied):
            return candidate
    return None


def _enforce(db_url: str, direct: sa.Engine, design: str, policy: Path,
             scales: tuple[int, ...], calls: int) -> dict[str, Any]:
    """Every scenario, ``calls`` times at each scale, against the enforcing server."""
    refused_by_operation: Counter[str] = Counter()
    fingerprints: Counter[str] = Counter()
    per_scale: dict[str, dict[str, int]] = {}
    other_errors: list[str] = []
    total = refused = 0
    with _server(db_url, design, "--policy", str(policy)) as enforcer:
        runner = ModeRunner(design, server_url=enforcer.url,
                            token=issue(role=ROLE, subject="production"),
                            verify=enforcer.verify)
        try:
            for scale in scales:
                reseed(direct, dags=2, runs_per_dag=RUNS_PER_DAG, tasks_per_dag=scale)
                ctx = Context(tasks_per_dag=scale, runs_per_dag=RUNS_PER_DAG)
                cell = per_scale.setdefault(str(scale), {"calls": 0, "refused": 0})
                for name, scenario in SCENARIOS.items():
                    for i in range(calls):
                        if scenario.prepare is not None:
                            with direct.begin() as conn:
                                scenario.prepare(conn, i, ctx)
                        args, kwargs = scenario.arguments(i, ctx)
                        total += 1
                        cell["calls"] += 1
                        try:
                            runner.call(scenario.operation, *args, **kwargs)
                        except Exception as exc:  # every failure is counted, none ends the run
                            denied = _refusal(exc)
                            if denied is None:
                                other_errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                                continue
                            refused += 1
                            cell["refused"] += 1
                            refused_by_operation[name] += 1
                            fingerprints[denied.fingerprint or f"operation {name}"] += 1
        finally:
            runner.close()
    return {
        "calls": total,
        "refused": refused,
        "refused_by_operation": dict(sorted(refused_by_operation.items())),
        "refused_fingerprints": [fp for fp, _ in fingerprints.most_common(KEPT_FINGERPRINTS)],
        "distinct_refused_fingerprints": len(fingerprints),
        "per_scale": per_scale,
        "other_errors": other_errors[:10],
        "other_error_count": len(other_errors),
    }


def _policy_size(policy: Path) -> dict[str, int]:
    role = json.loads(policy.read_text())["roles"].get(ROLE, {})
    return {"statements": len(role.get("statements", [])),
            "operations": len(role.get("operations", []))}


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Record from the test script, enforce on production-like calls, per design and variant."""
    scales = (10, 100) if ctx.quick else (10, 100, 500)
    calls = 2 if ctx.quick else 3
    direct = sa.create_engine(ctx.db_url)
    designs: dict[str, Any] = {}
    try:
        with fresh_workload(direct), tempfile.TemporaryDirectory() as tmp:
            for design in DESIGNS:
                variants: dict[str, Any] = {}
                for variant, left_out in (("full", None), ("gap", LEFT_OUT)):
                    policy = Path(tmp) / f"{design}-{variant}.json"
                    script_calls = _record(ctx.db_url, direct, design, policy, left_out)
                    enforced = _enforce(ctx.db_url, direct, design, policy, scales, calls)
                    variants[variant] = {"left_out": left_out, "script_calls": script_calls,
                                         "policy": _policy_size(policy), **enforced}
                designs[design] = variants
    finally:
        direct.dispose()
    return {
        "role": ROLE,
        "scales": list(scales),
        "calls_per_operation": calls,
        "operations": list(SCENARIOS),
        "script_steps": len(SCRIPT),
        "left_out": LEFT_OUT,
        "designs": designs,
    }


QUESTION = Question(
    key=KEY,
    asked_by="Jarek Potiuk",
    title='"Blessed" DB calls enforced in CI',
    measure=measure,
)
