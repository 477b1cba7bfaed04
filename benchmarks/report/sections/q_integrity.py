"""The section answering "are transactions kept intact?" (Jarek).

Reads :mod:`session_proxy_bench.questions.integrity`'s raw numbers: per mode,
every transaction of the workers run alone and together, the database's
lock-wait count and the checked final state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ...intervals import fmt_interval, percentile_interval
from ...questions.integrity import lock_waits
from ...stats import median, percentile
from ..document import Block, Heading, Paragraph, Table
from ..formatting import fmt, fmt_ms

DATABASE_LOCKS = {
    "sqlite": "SQLite has no row locks: a writing transaction holds the whole database "
              "(one writer at a time, readers wait or get \"database is locked\"), so the "
              "waits below are waits for the database, not for the dag run's row, and the "
              "database reports none (no sampler). `SELECT ... FOR UPDATE` is not emitted "
              "and the driver opens a transaction only at the first write, so "
              "`mini_scheduler`'s reads lock nothing: two workers finishing the last tasks "
              "together can both find the fan-in task ready and both schedule it.",
    "postgresql": "PostgreSQL locks the dag run's row (`SELECT ... FOR UPDATE` in "
                  "`mini_scheduler`) and each task instance's; the database's own count of "
                  "sessions waiting on a lock was sampled every 5 ms.",
    "mysql": "InnoDB locks the dag run's row and each task instance's; transactions in "
             "`LOCK WAIT` were sampled every 5 ms.",
}


def _holds(result: dict[str, Any], transaction: str) -> list[float]:
    return [t["txn_s"] for t in result["together"] if t["transaction"] == transaction]


def _p50_p99(values: list[float]) -> str:
    if not values:
        return fmt_ms(None)
    return (f"{fmt_interval(percentile_interval(values, 50), fmt_ms)} / "
            f"{fmt_ms(percentile(values, 99))}")


def _failures(result: dict[str, Any]) -> Counter[str]:
    total: Counter[str] = Counter()
    for t in result["together"]:
        total.update(t["failures"])
    return total


def _state(state: dict[str, Any]) -> str:
    if state["correct"]:
        return "correct"
    problems = []
    if not state["every_task_finished_once"]:
        problems.append("a task not finished exactly once")
    if state["last_task_state"] != "scheduled" or state["last_task_scheduled_by"] != 1:
        problems.append(f"last task `{state['last_task_state']}`, scheduled by "
                        f"{state['last_task_scheduled_by']} calls")
    return "**wrong**: " + "; ".join(problems)


def integrity_section(raw: dict[str, Any]) -> list[Block]:
    """Lock waits and holds, failures and the final state per mode."""
    rows = []
    for mode, result in raw["modes"].items():
        failures = _failures(result)
        retries = sum(failures.values()) + result["client_retries"]
        db_wait = result.get("db_lock_wait_s")
        rows.append([
            mode,
            str(len(result["together"])),
            _p50_p99(lock_waits(result, "mini_scheduler")),
            _p50_p99(lock_waits(result, "finish_task")),
            _p50_p99(_holds(result, "mini_scheduler")),
            _p50_p99(_holds(result, "finish_task")),
            str(failures.get("deadlock", 0)),
            str(retries),
            "not sampled" if db_wait is None else fmt(db_wait),
            _state(result["final_state"]),
        ])
    workers, per_worker = raw["workers"], raw["tasks_per_worker"]
    wrong = [mode for mode, result in raw["modes"].items()
             if not result["final_state"]["correct"]]
    holds = ", ".join(
        f"{mode} {fmt_ms(median(_holds(result, 'mini_scheduler')))} ms"
        for mode, result in raw["modes"].items() if _holds(result, "mini_scheduler"))
    summary = (
        ("The final state was correct in every mode. " if not wrong else
         f"The final state was **wrong** in {', '.join(wrong)}. ")
        + "`mini_scheduler`'s transactions, which lock the dag run, stayed open (their wait "
        f"for that lock included) for a median {holds}.")
    return [
        Heading(3, "Are transactions kept intact when workers finish tasks of one dag run at "
                   "once? (asked by Jarek Potiuk)"),
        Paragraph(
            "Jarek rejected mapping DB calls to API calls for the sake of performance and "
            "transaction integrity. Measured: "
            f"{workers} worker processes each finish {per_worker} tasks of the same dag run "
            "at once, each task as `finish_task` then `mini_scheduler` (two transactions; the "
            "second locks the dag run), in each mode, started together at a barrier. Lock "
            "wait: a transaction's wall time beyond the median of the same transaction run by "
            "one worker alone (it includes waiting for a CPU on this shared machine). Lock "
            "hold: the transaction's open time, its own wait for the lock included (the "
            "server's count through the proxy and the "
            "logical API, engine events in direct mode). Failed transactions (deadlock, "
            "serialization failure, lock timeout, \"database is locked\") are retried, "
            f"up to {raw['max_attempts']} attempts."),
        Paragraph(DATABASE_LOCKS.get(raw["backend"], "")),
        Paragraph(summary),
        Table(["mode", "transactions", "mini_scheduler wait p50 (95% CI) / p99 ms",
               "finish_task wait p50 / p99 ms", "mini_scheduler hold p50 / p99 ms",
               "finish_task hold p50 / p99 ms", "deadlocks", "retries",
               "database lock-wait s", "final state"], rows),
        Paragraph(
            "Final state, read from the database: every task finished exactly once (its "
            "state and one `success` log row each) and the fan-in task scheduled exactly "
            "once (its state, and one `mini_scheduler` call returning it)."),
    ]
