"""The report's "Environment" section: machine, command line and configuration axes.

Passwords in the command line and the database URL are masked.
"""

from __future__ import annotations

import shlex

from ..document import Block, Code, Heading, Paragraph, Table
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


def environment_section(m: Measurements) -> list[Block]:
    """Heading, environment table, command line and configuration table."""
    blocks: list[Block] = [Heading(2, "Environment")]
    env = m.environment
    if env:
        blocks.append(Table(["item", "value"], [[str(k), str(v)] for k, v in env.items()]))
    else:
        blocks.append(Paragraph(f"Environment: {NOT_MEASURED} (not recorded in the results)."))
    command = m.results.get("command") or []
    blocks.append(Paragraph("Command line:"))
    blocks.append(Code(hide_passwords(shlex.join(str(a) for a in command)) if command
                       else "not recorded"))
    c = m.config
    rows = [[name, render(c[key])] for name, key, render in AXES if c.get(key) is not None]
    blocks.append(Paragraph("Configuration axes:"))
    blocks.append(Table(["axis", "value"], rows) if rows else Paragraph(NOT_MEASURED))
    return blocks
