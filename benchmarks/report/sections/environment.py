"""The report's "Environment" section: machine, versions and configuration axes.

Nested entries of the results' environment (a ``versions`` mapping, say) are
shown one row per key as ``versions.psycopg``.  Passwords in the database URL
are masked.  The command line is at the top of the report (:mod:`.intro`).
"""

from __future__ import annotations

from typing import Any

from ..document import Block, Heading, Paragraph, Table
from ..formatting import NOT_MEASURED, fmt_rtt, hide_passwords
from ..measurements import Measurements

#: (name shown, config key, how the value is written) of each configuration axis.
AXES = [
    ("database", "db", lambda v: hide_passwords(str(v))),
    ("modes", "modes", lambda v: ", ".join(v)),
    ("operations", "operations", lambda v: ", ".join(v)),
    ("RTTs (ms)", "rtts", lambda v: ", ".join(fmt_rtt(r * 1000) for r in v)),
    ("tasks per DAG", "scales", lambda v: ", ".join(str(x) for x in v)),
    ("concurrent clients", "clients", lambda v: ", ".join(str(x) for x in v)),
    ("samples per cell", "samples", str),
    ("warm-up calls per cell", "warmup", str),
    ("floor samples per RTT", "floor_samples", str),
    ("seconds per throughput run", "throughput_seconds", str),
    ("DAGs", "dags", str),
    ("runs per DAG", "runs_per_dag", str),
]


def _rows(entries: dict[str, Any], prefix: str = "") -> list[list[str]]:
    rows = []
    for key, value in entries.items():
        if isinstance(value, dict):
            rows += _rows(value, f"{prefix}{key}.")
        else:
            rows.append([f"{prefix}{key}", hide_passwords(str(value))])
    return rows


def environment_section(m: Measurements) -> list[Block]:
    """Heading, environment table and configuration table."""
    blocks: list[Block] = [Heading(2, "Environment")]
    env = m.environment
    if env:
        blocks.append(Table(["item", "value"], _rows(env)))
    else:
        blocks.append(Paragraph(f"Environment: {NOT_MEASURED} (not recorded in the results)."))
    network = m.results.get("network")
    if isinstance(network, dict) and network:
        blocks.append(Paragraph("Network legs:"))
        blocks.append(Table(["item", "value"], _rows(network)))
    c = m.config
    rows = [[name, render(c[key])] for name, key, render in AXES if c.get(key) is not None]
    blocks.append(Paragraph("Configuration axes:"))
    blocks.append(Table(["axis", "value"], rows) if rows else Paragraph(NOT_MEASURED))
    return blocks
