"""An inventory: real Airflow 3 code paths through the proxy, beside the logical design's one call.

Asked by Ash.  Airflow is not installed in the benchmark's environment (it
pins many packages), so the inventory is measured apart, in an Airflow
environment, by :mod:`session_proxy_bench.airflow_inventory`, and a run
embeds its JSON: ``session-proxy-bench run --inventory-results FILE``.
Without it the question reports how to produce it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import Question, QuestionContext

HOW = ("python -m session_proxy_bench.airflow_inventory --db URL --out inventory.json "
       "(in a venv with apache-airflow-core 3.3.2, as .ci/run's .venv-airflow), then "
       "session-proxy-bench run ... --inventory-results inventory.json")


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """The embedded inventory, or how to make one."""
    if ctx.inventory_results is None:
        return {"measured": False, "how": HOW}
    inventory = json.loads(Path(ctx.inventory_results).read_text())
    if not inventory.get("measured") or not isinstance(inventory.get("steps"), list):
        raise ValueError(f"{ctx.inventory_results} is not an airflow_inventory result")
    return inventory


QUESTION = Question(
    key="inventory",
    asked_by="Ash",
    title="An inventory: real Airflow code paths through the proxy",
    measure=measure,
)
