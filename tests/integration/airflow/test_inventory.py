"""The Airflow inventory on SQLite: every step of Airflow's own code counted through the proxy.

Runs ``python -m session_proxy_bench.airflow_inventory`` as a user would (a
subprocess: Airflow configures itself at import) and checks its JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

from .conftest import MISSING

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

STEPS = {"sync_new", "sync_unchanged", "create_dagrun", "scheduling_loop", "variable_set",
         "variable_get"}


def test_inventory_counts_every_step_on_sqlite(tmp_path: Path) -> None:
    out = tmp_path / "inventory.json"
    done = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.airflow_inventory", "--db", "sqlite",
         "--files", "2", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    inventory = json.loads(out.read_text())
    assert inventory["measured"] is True and inventory["backend"] == "sqlite"
    assert inventory["run_state"] == {"proxy": "success", "direct": "success"}
    steps = {step["step"]: step for step in inventory["steps"]}
    assert set(steps) == STEPS
    for key, step in steps.items():
        proxy, direct = step["proxy"], step["direct"]
        expected = 2 if key.startswith("sync") else None
        assert proxy["samples"] == direct["samples"] and proxy["samples"] >= (expected or 1)
        for sample in proxy["raw"]:
            assert sample["round_trips"] > 0 and sample["statements"] > 0, key
            assert sample["request_bytes"] > 0 and sample["response_bytes"] > 0, key
        assert min(s["statements"] for s in direct["raw"]) > 0, key
        # The logical design: one call per step.
        assert step["logical_calls"] == 1
    # Syncing a new DAG writes more than re-syncing an unchanged one.
    assert steps["sync_new"]["proxy"]["mean"]["statements"] > steps["sync_unchanged"][
        "proxy"]["mean"]["statements"]
    # A scheduler loop sends statements to the server, not one call.
    assert steps["scheduling_loop"]["proxy"]["mean"]["round_trips"] > 1
