"""The reliability load run of ``session-proxy-bench load``, small and real.

A few seconds of 4 clients against PostgreSQL through gunicorn and a relay
dropping 5% of responses: the result document has its structure, the
invariants were computed from real rows, and the checker does fail when a
ledger row is duplicated or a balance changed behind its back.  Runs in a
database of its own (``sp_load_test``, created when missing), because the
load run reseeds the workload tables other tests use in ``test``.  No
assertion is about time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from session_proxy_bench.gunicorn_process import gunicorn_path
from session_proxy_bench.load import transfer
from tests.conftest import BACKEND_URLS, _reachable

pytestmark = [pytest.mark.postgresql, pytest.mark.server_faults]

LOAD_DB = "sp_load_test"


@pytest.fixture(scope="module")
def load_db_url() -> Iterator[str]:
    """A PostgreSQL database for the load tests only."""
    base = BACKEND_URLS["postgresql"]
    reason = _reachable(base)
    if reason is not None:
        pytest.skip(f"PostgreSQL not available: {reason}")
    if gunicorn_path() is None:
        pytest.skip("gunicorn is not installed (extra 'gunicorn')")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": LOAD_DB}).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{LOAD_DB}"'))
    except sa.exc.DBAPIError as exc:
        pytest.skip(f"cannot create database {LOAD_DB}: {exc.orig}")
    finally:
        admin.dispose()
    yield sa.engine.make_url(base).set(database=LOAD_DB).render_as_string(hide_password=False)


def test_small_load_run_checks_real_rows(load_db_url: str, tmp_path: Path) -> None:
    from session_proxy_bench.cli import load_summary
    from session_proxy_bench.load.runner import LoadConfig, run_load
    from session_proxy_bench.report import render_markdown
    from session_proxy_bench.report.sections.reliability import reliability_section

    config = LoadConfig(db_url=load_db_url, clients=4, seconds=3.0, drop_rate=0.05, seed=1234,
                        accounts=20, initial_balance=500, lease_seconds=2.0)
    result = run_load(config)
    json.dumps(result)  # JSON-able as it is

    for key in ("config", "environment", "duration_s", "ops", "ok", "errors", "throughput",
                "latency_ms", "per_kind", "errors_by_kind", "relay", "invariants",
                "server_metrics", "timeline", "violations", "passed"):
        assert key in result, key
    assert result["ops"] == result["ok"] + result["errors"] > 0
    assert sum(s["ops"] for s in result["per_kind"].values()) == result["ops"]
    assert sum(result["errors_by_kind"].values()) == result["errors"]
    assert {"transfer.proxy", "transfer.logical"} <= set(result["per_kind"])
    assert any(kind.startswith("workload.") for kind in result["per_kind"])
    assert set(result["relay"]) >= {"requests", "drop_response", "reset", "delay"}
    assert result["relay"]["requests"] > 0
    assert result["environment"]["backend"] == "postgresql"

    inv = result["invariants"]
    assert inv["total_expected"] == 20 * 500
    assert inv["acknowledged"] == result["transfers"]["acknowledged"] > 0
    assert inv["attempted"] == result["transfers"]["attempted"]
    # Computed from the rows: every acknowledged key was found, and the ledger
    # holds exactly the transfers that were applied.
    assert inv["ledger_rows"] == inv["acknowledged_present"] + inv["unacknowledged_present"] \
        + sum(n - 1 for _, n in inv["duplicated_keys"]) + inv["unknown_present_count"]
    assert inv["unacknowledged"] == inv["unacknowledged_present"] + inv["unacknowledged_absent"]
    engine = sa.create_engine(load_db_url)
    try:
        with engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.sum(transfer.LoadAccount.balance))).scalar()
            rows = conn.execute(sa.select(sa.func.count()).select_from(
                transfer.LoadTransfer)).scalar()
        assert total == inv["total_actual"]
        assert rows == inv["ledger_rows"] >= inv["acknowledged"]
    finally:
        engine.dispose()
    assert result["passed"] is (result["violations"] == 0)
    assert inv["violations"] == 0, inv

    text = render_markdown(reliability_section({"reliability": result}))
    assert "Reliability under load" in text and "Invariant check" in text
    assert f"{inv['acknowledged']} acknowledged transfers" in text
    summary = load_summary(result)
    assert "PASSED" in summary

    # `report` writes the whole report with the section when the results carry
    # the load result, and reliability.md from a load result alone.
    from session_proxy_bench.cli import main
    from session_proxy_bench.report import write_report

    from .test_report import make_results

    results = make_results()
    without = write_report(results, tmp_path / "without")[0].read_text()
    assert "## Reliability under load\n\nNot part of this run." in without
    assert "Invariant check" not in without
    results["reliability"] = result
    with_load = write_report(results, tmp_path / "with")[0].read_text()
    assert "Reliability under load" in with_load and "Invariant check" in with_load
    load_json = tmp_path / "load.json"
    load_json.write_text(json.dumps(result))
    assert main(["report", str(load_json), "--out", str(tmp_path / "alone")]) == 0
    assert "Invariant check" in (tmp_path / "alone" / "reliability.md").read_text()


def test_checker_detects_duplicates_and_changed_balances(load_db_url: str) -> None:
    engine = sa.create_engine(load_db_url)
    try:
        transfer.setup(engine, accounts=4, initial=100)
        with Session(engine) as session:
            transfer.transfer_orm(session, "k1", 1, 2, 10, "t")
            session.commit()
            transfer.transfer_orm(session, "k2", 3, 2, 5, "t")
            session.commit()
        clean = transfer.check_invariants(engine, ["k1", "k2"], ["k1", "k2", "k3"], 4, 100)
        assert clean["violations"] == 0 and clean["sum_ok"] and clean["ledger_consistent"]
        assert (clean["unacknowledged_present"], clean["unacknowledged_absent"]) == (0, 1)

        missing = transfer.check_invariants(engine, ["k1", "k2", "k9"], ["k1", "k2"], 4, 100)
        assert missing["acknowledged_missing"] == ["k9"] and missing["violations"] == 1

        with engine.begin() as conn:  # the same transfer applied twice
            conn.execute(sa.insert(transfer.LoadTransfer).values(
                transfer_key="k1", src=1, dst=2, amount=10, client="t"))
            conn.execute(sa.update(transfer.LoadAccount).where(transfer.LoadAccount.id == 1)
                         .values(balance=transfer.LoadAccount.balance - 10))
            conn.execute(sa.update(transfer.LoadAccount).where(transfer.LoadAccount.id == 2)
                         .values(balance=transfer.LoadAccount.balance + 10))
        duplicated = transfer.check_invariants(engine, ["k1", "k2"], ["k1", "k2"], 4, 100)
        assert duplicated["duplicated_keys"] == [["k1", 2]]
        assert duplicated["sum_ok"] and duplicated["ledger_consistent"]
        assert duplicated["violations"] == 1

        with engine.begin() as conn:  # a balance changed outside any transfer
            conn.execute(sa.update(transfer.LoadAccount).where(transfer.LoadAccount.id == 4)
                         .values(balance=transfer.LoadAccount.balance + 7))
        broken = transfer.check_invariants(engine, ["k1", "k2"], ["k1", "k2"], 4, 100)
        assert not broken["sum_ok"] and broken["total_actual"] == 407
        assert not broken["ledger_consistent"]
        assert broken["ledger_mismatches"] == [{"account": 4, "balance": 107, "expected": 100}]
        assert broken["violations"] == 3  # the duplicate, the sum, the balance
    finally:
        transfer.Base.metadata.drop_all(engine)
        engine.dispose()
