"""An inventory of real Airflow 3 code paths through the proxy: statements and round trips per step.

::

    python -m session_proxy_bench.airflow_inventory \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test --out inventory.json

Needs apache-airflow-core (``.ci/run``'s ``.venv-airflow`` or ``tox -e
airflow``); ``session-proxy-bench run --inventory-results inventory.json``
embeds the output in a benchmark's results (the question ``inventory``).

An empty Airflow database (a schema ``sp_inventory`` of ``--db`` on
PostgreSQL, dropped afterwards; a temporary file for ``--db sqlite``) is
migrated directly.  Then one Airflow process runs Airflow's own code
through a session-proxy server (``sql_alchemy_conn =
sessionproxy://...``), and one more, the same code straight to the
database, for the statement count a direct deployment sends.  The steps,
each timed by the counters of Airflow's engine (:func:`session_proxy.stats`
through the proxy; a ``before_cursor_execute`` count direct):

- ``sync_new`` / ``sync_unchanged``: the DAG processor's parse-and-sync of
  each generated DAG file (``BundleDagBag`` on the file, then
  ``sync_bag_to_db``), first with new DAGs, then again unchanged;
- ``create_dagrun``: ``DAG.create_dagrun`` of one run;
- ``scheduling_loop``: one scheduler loop over that run in a fresh session
  (``DagRun.update_state`` + ``DagRun.schedule_tis``), until the run
  finishes (its tasks are empty, so no executor is needed);
- ``variable_set`` / ``variable_get``: ``Variable.set`` and ``Variable.get``.

In the logical design each step is one call to an API endpoint (AIP-44's
internal API, Airflow 3's Task Execution API), whatever it does inside:
``logical_calls`` is that one call, by construction, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from session_proxy_server.testing import ServerProcess

from .airflow_dags import write_dag_files
from .airflow_site import AirflowSite, fresh_schema

SCHEMA = "sp_inventory"
RUN_AT = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
DAG_ID = "sp_gen_0"
MAX_LOOPS = 12

#: step key -> (what it is, what one sample is)
STEPS: dict[str, tuple[str, str]] = {
    "sync_new": ("DAG processor: parse and sync a new DAG file", "file"),
    "sync_unchanged": ("DAG processor: parse and sync an unchanged DAG file", "file"),
    "create_dagrun": ("scheduler: create a DAG run", "run"),
    "scheduling_loop": ("scheduler: update_state + schedule_tis of a run", "loop"),
    "variable_set": ("Variable.set", "call"),
    "variable_get": ("Variable.get", "call"),
}
COUNTERS = ("round_trips", "statements", "request_bytes", "response_bytes",
            "background_round_trips")


# -- in the Airflow process -------------------------------------------------------------


def _counter(engine: sa.Engine) -> Callable[[], dict[str, int]]:
    """A function returning the engine's counters so far."""
    from session_proxy.dialects.base import ProxyDialectMixin

    if isinstance(engine.dialect, ProxyDialectMixin):
        import session_proxy

        with engine.connect():
            pass  # the transport exists once a connection was made
        stats = session_proxy.stats(engine)

        def proxied() -> dict[str, int]:
            snapshot = stats.snapshot()
            return {name: getattr(snapshot, name) for name in COUNTERS}

        return proxied
    counts = {"statements": 0}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(*args: Any) -> None:
        counts["statements"] += 1

    return lambda: dict(counts)


class Recorder:
    """Counter deltas per step, one sample per file, run, loop or call."""

    def __init__(self, counter: Callable[[], dict[str, int]]) -> None:
        self.counter = counter
        self.samples: dict[str, list[dict[str, int]]] = {key: [] for key in STEPS}

    @contextlib.contextmanager
    def step(self, key: str) -> Iterator[None]:
        before = self.counter()
        yield
        after = self.counter()
        self.samples[key].append({name: after[name] - before[name] for name in after})


def child(folder: str, out: str) -> None:
    """In an Airflow process: run every step, write the counter samples to ``out``."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    DagBundlesManager().sync_bundles_to_db()
    recorder = Recorder(_counter(settings.engine))
    files = sorted(Path(folder).glob("*.py"))
    for key in ("sync_new", "sync_unchanged"):
        for path in files:
            with recorder.step(key):
                bag = BundleDagBag(dag_folder=str(path), bundle_path=folder,
                                   bundle_name="dags-folder")
                sync_bag_to_db(bag, "dags-folder", None)

    with recorder.step("create_dagrun"), create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)
        if dag is None:
            raise RuntimeError(f"{DAG_ID} was not synced")
        dag.create_dagrun(
            run_id="inventory_run", logical_date=RUN_AT,
            data_interval=(RUN_AT, RUN_AT + datetime.timedelta(days=1)), run_after=RUN_AT,
            run_type=DagRunType.MANUAL, triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING, session=session,
        )
    state = DagRunState.RUNNING
    while state == DagRunState.RUNNING and len(recorder.samples["scheduling_loop"]) < MAX_LOOPS:
        with recorder.step("scheduling_loop"), create_session() as session:
            run = session.query(DagRun).filter(DagRun.run_id == "inventory_run").one()
            run.dag = DBDagBag().get_dag_for_run(dag_run=run, session=session)
            schedulable, _ = run.update_state(session=session, execute_callbacks=False)
            run.schedule_tis(schedulable, session=session)
            state = run.state

    for n in range(3):
        with recorder.step("variable_set"):
            Variable.set(f"sp_inventory_{n}", f"value {n}")
        with recorder.step("variable_get"):
            if Variable.get(f"sp_inventory_{n}") != f"value {n}":
                raise RuntimeError("Variable.get returned another value")
    Path(out).write_text(json.dumps({"run_state": str(state), "samples": recorder.samples}))


# -- the measuring process ---------------------------------------------------------------


def _databases(db: str, tmp: Path) -> tuple[str, str, Callable[[], None]]:
    """(URL for the proxied run, URL for the direct run, clean-up), both migrated empty."""
    if db == "sqlite" or db.startswith("sqlite"):
        urls = []
        for name in ("proxied.db", "direct.db"):
            with contextlib.closing(sqlite3.connect(tmp / name)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")  # what Airflow's connect hook asks
            urls.append(f"sqlite:///{tmp / name}")
        return urls[0], urls[1], lambda: None
    proxied, direct = fresh_schema(db, SCHEMA), fresh_schema(db, SCHEMA + "_direct")

    def drop() -> None:
        engine = sa.create_engine(db)
        with engine.begin() as conn:
            for schema in (SCHEMA, SCHEMA + "_direct"):
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()

    return proxied, direct, drop


def _summary(samples: list[dict[str, int]]) -> dict[str, Any]:
    names = samples[0].keys() if samples else ()
    return {
        "samples": len(samples),
        "mean": {name: statistics.mean(s[name] for s in samples) for name in names},
        "min": {name: min(s[name] for s in samples) for name in names},
        "max": {name: max(s[name] for s in samples) for name in names},
        "raw": samples,
    }


def measure(db: str, files: int) -> dict[str, Any]:
    """The inventory on ``db`` (a SQLAlchemy URL or ``sqlite``); JSON-able."""
    import airflow

    tmp = Path(tempfile.mkdtemp(prefix="sp-airflow-inventory-"))
    folder = tmp / "dags"
    write_dag_files(folder, range(files))
    proxied_db, direct_db, clean_up = _databases(db, tmp)
    try:
        outputs = {}
        for name, url in (("proxy", proxied_db), ("direct", direct_db)):
            AirflowSite(tmp / f"migrate-{name}", url, dags=folder).airflow("db", "migrate")
        with ServerProcess(proxied_db, "--lease-seconds", "120") as server:
            for name, conn in (
                ("proxy", f"sessionproxy://:{server.token}@127.0.0.1:{server.port}/"),
                ("direct", direct_db),
            ):
                out = tmp / f"{name}.json"
                AirflowSite(tmp / f"home-{name}", conn, dags=folder).python(
                    "session_proxy_bench.airflow_inventory", "--child", str(folder), str(out))
                outputs[name] = json.loads(out.read_text())
    finally:
        clean_up()
    steps = []
    for key, (title, per) in STEPS.items():
        steps.append({
            "step": key, "title": title, "per": per,
            "proxy": _summary(outputs["proxy"]["samples"][key]),
            "direct": _summary(outputs["direct"]["samples"][key]),
            "logical_calls": 1,
        })
    return {
        "measured": True,
        "airflow": airflow.__version__,
        "backend": sa.engine.make_url(proxied_db).get_backend_name(),
        "files": files,
        "dag_id": DAG_ID,
        "run_state": {name: output["run_state"] for name, output in outputs.items()},
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite",
                        help="'sqlite' (temporary files) or a PostgreSQL URL (schemas "
                        f"{SCHEMA} and {SCHEMA}_direct are made in it and dropped)")
    parser.add_argument("--files", type=int, default=3, help="generated DAG files to sync")
    parser.add_argument("--out", type=Path, help="write the inventory as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.files < 1:
        parser.error("--files must be >= 1")
    try:
        results = measure(args.db, args.files)
    except (AssertionError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.write_text(text)
    for step in results["steps"]:
        mean = step["proxy"]["mean"]
        print(f"{step['step']:<16} per {step['per']:<5} round trips {mean['round_trips']:6.1f}  "
              f"statements {mean['statements']:6.1f}  direct statements "
              f"{step['direct']['mean']['statements']:6.1f}  logical calls {step['logical_calls']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
