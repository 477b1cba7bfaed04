"""One fixed script that calls every workload operation at least once.

The tests run it in direct, proxy and logical modes and compare results and
tables; the security lab runs it as the trusted run a policy is recorded
from.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import operations as ops
from .models import Base
from .seed import BASE_TIME

if TYPE_CHECKING:
    from .modes import ModeRunner

T = BASE_TIME
MINUTE = datetime.timedelta(minutes=1)
RUNNING_TI = ("dag_000", "t001", "run_0002", -1)
WAITING_TI = ("dag_000", "t005", "run_0002", -1)


def plain(value: Any) -> Any:
    """ORM instances as {column: value}, so results compare across modes."""
    if isinstance(value, Base):
        state = sa.inspect(value)
        return {attr.key: state.dict.get(attr.key) for attr in state.mapper.column_attrs}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


#: The data set the script runs on: ``seed(session, **SCRIPT_SEED)``.
SCRIPT_SEED = {"dags": 2, "runs_per_dag": 3, "tasks_per_dag": 12}

#: (label, operation, args, kwargs), in order; run on the seed of :data:`SCRIPT_SEED`.
SCRIPT: list[tuple[str, Any, tuple, dict]] = [
    ("get_dag_run", ops.get_dag_run, ("dag_000", "run_0002"), {}),
    ("get_dag_run missing", ops.get_dag_run, ("dag_000", "nope"), {}),
    ("get_variable", ops.get_variable, ("var_003",), {}),
    ("set_variable existing", ops.set_variable, ("var_003", "changed"), {}),
    ("set_variable new", ops.set_variable, ("fresh", "new value"), {}),
    ("get_variable new", ops.get_variable, ("fresh",), {}),
    ("get_connection", ops.get_connection, ("conn_1",), {}),
    ("xcom_push", ops.xcom_push,
     ("dag_000", "run_0002", "t001", "k", {"a": [1, 2.5, {"b": None}], "$t": "x"}),
     {"now": T}),
    ("xcom_pull", ops.xcom_pull, ("dag_000", "run_0002", "t001", "k"), {}),
    ("xcom_pull seeded", ops.xcom_pull, ("dag_001", "run_0002", "t000"), {}),
    ("heartbeat", ops.heartbeat, (1,), {"now": T + MINUTE}),
    ("start_task running", ops.start_task, (RUNNING_TI, "h", 1), {"now": T}),
    ("start_task waiting", ops.start_task, (WAITING_TI, "h", 1), {"now": T}),
    ("mini_scheduler", ops.mini_scheduler, ("dag_000", "run_0002", "t000"), {}),
    ("start_task scheduled", ops.start_task, (WAITING_TI, "host-9", 4242),
     {"job_id": 1, "now": T}),
    ("finish_task", ops.finish_task, (WAITING_TI, "success"), {"now": T + 2 * MINUTE}),
    ("create_dag_run", ops.create_dag_run, ("dag_001", "manual_1", T), {"now": T}),
    ("find_zombies", ops.find_zombies, (300,), {"now": T}),
    ("clear_task_instances", ops.clear_task_instances, ("dag_001", "run_0002"), {"now": T}),
    ("mini_scheduler after clear", ops.mini_scheduler, ("dag_001", "run_0002", "t000"), {}),
]


def run_script(runner: ModeRunner, skip: Any = None) -> int:
    """Call every step of :data:`SCRIPT` through ``runner``, except operation ``skip``.

    Returns how many steps ran.
    """
    ran = 0
    with runner.active():
        for _label, operation, args, kwargs in SCRIPT:
            if operation is not skip:
                operation(*args, **kwargs)
                ran += 1
    return ran


def dump_tables(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every workload table's rows, sorted, by table name."""
    tables = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return tables
