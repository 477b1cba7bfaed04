"""The report's "Threats to validity" section: what this run cannot show.

Fixed caveats (loopback, latency-only relay, small data) plus the ones the
results make concrete: core count, sample counts, SQLite, failed calls.
"""

from __future__ import annotations

from ..document import Block, Bullets, Heading
from ..formatting import NOT_MEASURED, plural
from ..measurements import Measurements


def _sampling(m: Measurements) -> str:
    c = m.config
    samples = c.get("samples")
    repetitions = len({s.get("repetition") for s in m.samples})
    return (
        (f"{plural(samples, 'sample')} per cell after "
         f"{plural(c.get('warmup', NOT_MEASURED), 'warm-up call')}"
         if samples is not None else "Sample counts not recorded")
        + ("; with fewer than 100 samples the p99 is close to the largest sample"
           if samples is not None and samples < 100 else "")
        + (f"; throughput runs last {c['throughput_seconds']} s each"
           if c.get("throughput_seconds") is not None else "")
        + (f". {plural(repetitions, 'repetition')} of the whole grid" if repetitions > 1
           else ". One pass over the grid (no repetitions)")
        + ", on one machine. The 95% intervals are percentile bootstraps of each cell's "
        "samples: they cover the noise within this run, not a different machine, database "
        "or load.")


def threats_section(m: Measurements) -> list[Block]:
    """Heading and the list of threats to validity."""
    c, env = m.config, m.environment
    cores = env.get("cores")
    network = m.results.get("network") or {}
    tls = any(value for key, value in network.items() if "tls" in str(key).lower())
    items = [
        "Loopback networking: client, relay, server and database share one host; there is no "
        "real network card" + ("" if tls else ", no TLS") + " and no proxy or load balancer in "
        "the path.",
        (f"{cores} CPU cores" if cores else "An unrecorded number of CPU cores")
        + " shared by the client, the relay's threads, the server and the database: the modes "
        "with more processes and threads compete for the same cores.",
        "The relay models latency only: no bandwidth limit, packet loss or jitter, so the "
        "bytes each mode sends cost nothing here beyond encoding them.",
        "Small data sets: "
        + (f"{c.get('dags')} DAGs with {c.get('runs_per_dag')} runs each, "
           if c.get("dags") is not None else "")
        + (f"up to {max(c['scales'])} tasks per DAG; " if c.get("scales") else "")
        + "every table fits in memory and caches stay warm.",
        _sampling(m),
    ]
    if m.backend == "sqlite":
        items.insert(3, "SQLite direct mode has no network at all: at RTT above 0 the direct "
                        "numbers compare an in-process database with remote modes that pay "
                        "the RTT, and SQLite locks the whole database for writes.")
    if m.throughput and not any(t.get("clients_are_processes") for t in m.throughput):
        items.append("The throughput clients are threads of one client process, on the same "
                     "cores as the server and the database: the client's own CPU bounds every "
                     "mode's throughput.")
    errors = sum(sum((t.get("errors") or {}).values()) for t in m.throughput)
    if errors:
        items.append(f"The throughput runs recorded {errors} failed calls (see the table).")
    return [Heading(2, "Threats to validity"), Bullets(items)]
