"""The inventory question: embeds an airflow_inventory result, or says how to make one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from session_proxy_bench.questions.inventory import measure
from tests.conftest import REPO

from .question_fixtures import quick_context, rendered

INVENTORY = {
    "measured": True, "airflow": "3.3.2", "backend": "sqlite", "files": 2,
    "dag_id": "sp_gen_0", "run_state": {"proxy": "DagRunState.SUCCESS",
                                        "direct": "DagRunState.SUCCESS"},
    "steps": [{
        "step": "create_dagrun", "title": "scheduler: create a DAG run", "per": "run",
        "proxy": {"samples": 2, "mean": {"round_trips": 7.5, "statements": 7,
                                         "request_bytes": 100, "response_bytes": 50},
                  "min": {"round_trips": 7, "statements": 7},
                  "max": {"round_trips": 8, "statements": 7}},
        "direct": {"samples": 2, "mean": {"statements": 7}, "min": {"statements": 7},
                   "max": {"statements": 7}},
        "logical_calls": 1,
    }],
}


def test_without_an_inventory_the_section_says_how_to_make_one() -> None:
    raw = measure(quick_context("sqlite://"))
    assert raw["measured"] is False
    assert "session_proxy_bench.airflow_inventory" in raw["how"]
    text = rendered("inventory", raw)
    assert "Not measured in this run" in text and "--inventory-results" in text


def test_an_embedded_inventory_is_returned_and_rendered(tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(INVENTORY))
    raw = measure(quick_context("sqlite://", inventory_results=str(path)))
    assert raw == INVENTORY
    text = rendered("inventory", raw)
    assert "| scheduler: create a DAG run | run | 2 | 7.5 (7–8) | 7 | 7 | 150 | 1 |" in text


def test_a_file_that_is_no_inventory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"kind": "load"}))
    with pytest.raises(ValueError, match="not an airflow_inventory result"):
        measure(quick_context("sqlite://", inventory_results=str(path)))


def test_cli_refuses_an_unreadable_inventory_before_running(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.cli", "run", "--inventory-results",
         str(tmp_path / "missing.json"), "--out", str(tmp_path / "r.json")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "cannot read inventory results" in result.stderr
    assert not (tmp_path / "r.json").exists()
