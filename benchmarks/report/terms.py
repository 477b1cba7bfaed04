"""The report's vocabulary: modes, the operations it singles out, and their names.

These constants describe the benchmark's workload as the report talks about
it (which operation is the headline, which ones scale with tasks per DAG,
which ones write, how running text names a mode and which colour charts give
it).  They are not read from the results file; change them here and every
section follows.
"""

from __future__ import annotations

from ..scenarios import THROUGHPUT_MIX

#: The three designs every run measures.
MODES = ("direct", "proxy", "logical")
#: The proxy with the opt-ins an application may choose (``proxy_pipeline_dml``,
#: ``defer_flush_errors``); shown beside the defaults when the results hold it.
BEST_MODE = "proxy_best"
#: Every mode the report knows, in the order tables and charts show them.
ALL_MODES = ("direct", "proxy", BEST_MODE, "logical")
MODE_COLORS = {"direct": "#009E73", "proxy": "#D55E00", BEST_MODE: "#CC79A7",
               "logical": "#0072B2"}
#: How running text names each mode.
MODE_NAMES = {"direct": "direct connection", "proxy": "proxy", BEST_MODE: "proxy (best case)",
              "logical": "logical API"}
#: Operation families of the summary: what a worker reads, what it writes, and
#: the scheduling steps that touch a whole DAG run.
FAMILIES = {
    "reads": ("get_dag_run", "get_variable", "xcom_pull", "find_zombies"),
    "writes": ("set_variable", "xcom_push", "heartbeat", "start_task", "finish_task"),
    "scheduling": ("mini_scheduler", "create_dag_run", "clear_task_instances"),
}
FAMILY_COLORS = {"reads": "#0072B2", "writes": "#D55E00", "scheduling": "#009E73"}
#: Operations charted against RTT, at the scale closest to REFERENCE_SCALE.
KEY_OPERATIONS = ("mini_scheduler", "get_dag_run", "heartbeat", "create_dag_run")
#: Operations whose work grows with tasks per DAG.
SCALED_OPERATIONS = ("mini_scheduler", "create_dag_run", "clear_task_instances")
#: Operations of the workload that change rows.
WRITE_OPERATIONS = ("set_variable", "xcom_push", "heartbeat", "start_task", "finish_task",
                    "mini_scheduler", "create_dag_run", "clear_task_instances")
HEADLINE = "mini_scheduler"
REFERENCE_SCALE = 100
#: Scale the seed thread worried about ("a few hundred rows").
FEW_HUNDRED = 200

__all__ = ["ALL_MODES", "BEST_MODE", "FAMILIES", "FAMILY_COLORS", "FEW_HUNDRED", "HEADLINE",
           "KEY_OPERATIONS", "MODES", "MODE_COLORS", "MODE_NAMES", "REFERENCE_SCALE",
           "SCALED_OPERATIONS", "THROUGHPUT_MIX", "WRITE_OPERATIONS"]
