"""The section answering "fine-grained calls are fast and can be cached in workers".

Renders ``results["questions"]["worker_cache"]``
(:mod:`session_proxy_bench.questions.worker_cache`): per mode, the
workload's variable and connection reads without and with the worker-side
cache (mean and p99 latency per read with 95% bootstrap intervals, round
trips, hit rate); the hit rate for several TTLs; and how late readers in
other processes saw a changed variable, against the TTL.
"""

from __future__ import annotations

from typing import Any

from ...intervals import bootstrap, fmt_interval, percentile_interval, ratio_interval
from ...questions.worker_cache import QUESTION
from ...stats import mean
from ..document import Block, Heading, Paragraph, Table
from ..formatting import DASH, NOT_MEASURED, fmt, fmt_count, fmt_ms, fmt_percent, fmt_ratio


def _mode_row(mode: str, runs: dict[str, Any]) -> list[str]:
    plain, cached = runs["uncached"], runs["cached"]
    speedup = ratio_interval(plain["latency_s"], cached["latency_s"], statistic=mean)
    return [
        mode,
        str(plain["reads"]),
        f"{fmt_count(plain['round_trips'])} → {fmt_count(cached['round_trips'])}",
        fmt_percent(cached["hit_rate"]),
        fmt_interval(bootstrap(plain["latency_s"], mean), fmt_ms),
        fmt_interval(bootstrap(cached["latency_s"], mean), fmt_ms),
        fmt_interval(speedup, fmt_ratio),
        fmt_interval(percentile_interval(plain["latency_s"], 99), fmt_ms),
        fmt_interval(percentile_interval(cached["latency_s"], 99), fmt_ms),
    ]


def _staleness_rows(staleness: dict[str, Any]) -> list[list[str]]:
    rows = []
    for mode, reader in staleness["readers"].items():
        seen = [d for d in reader["delays_s"] if d is not None]
        rows.append([
            mode, fmt_ms(staleness["ttl_s"]), str(staleness["changes"]),
            fmt_ms(max(seen)) if seen else NOT_MEASURED,
            fmt_ratio(max(seen) / staleness["ttl_s"]) if seen else NOT_MEASURED,
            fmt_ms(mean(seen)) if seen else NOT_MEASURED,
            fmt_ms(reader["max_age_served_s"]), str(reader["never_caught_up"]),
            str(reader["superseded"]),
            f"{reader['hits']} of {reader['polls']}",
        ])
    return rows


def worker_cache_section(raw: dict[str, Any]) -> list[Block]:
    """Heading, method, reads with and without the cache, hit rate by TTL, staleness."""
    staleness = raw["staleness"]
    return [
        Heading(3, QUESTION.title),
        Paragraph(
            f"Asked by {QUESTION.asked_by}. The worker-side cache is "
            "`session_proxy.ReadCache`: in the logical client "
            "(`RemoteClient(cache=...)`) and around the same read on a proxy or direct "
            "session (`ReadCache.cached`). A worker runs "
            f"{raw['tasks']} tasks, each reading {raw['reads_per_task'] - 1} of "
            f"{raw['variables']} variables (a few read far more often than the rest) and "
            f"one of {raw['connections']} connections; each task lasts "
            f"{fmt(raw['task_seconds'])} s of simulated time, so the TTL of "
            f"{fmt(raw['ttl_s'])} s means the same on any machine. The same reads run "
            "without and with the cache; latencies per read with 95% bootstrap "
            "intervals. A hit sends no request."),
        Table(["mode", "reads", "round trips (no cache → cache)", "hit rate",
               "mean, no cache (ms)", "mean, cache (ms)", "no cache ÷ cache (mean)",
               "p99, no cache (ms)", "p99, cache (ms)"],
              [_mode_row(mode, runs) for mode, runs in raw["modes"].items()]),
        Paragraph("Hit rate of the same reads for other TTLs (logical client):"),
        Table(["TTL (s)", "hit rate", "hits", "misses", "of which expired"],
              [[fmt(float(ttl)), fmt_percent(row["hit_rate"]), str(row["hits"]),
                str(row["misses"]), str(row["expired"])]
               for ttl, row in raw["hit_rate_by_ttl"].items()]),
        Paragraph(
            "Staleness: reader processes poll one variable through a cache with a TTL of "
            f"{fmt_ms(staleness['ttl_s'])} ms while another client changes it "
            f"{staleness['changes']} times. The delay is from the change's commit to the "
            "first read that returned it or a later value (a change overwritten before the "
            "reader's entry expired is never returned itself: superseded). The cache "
            "serves no value older than the TTL, so the bound is the TTL plus one read "
            "and the reader's poll interval (5 ms)."),
        Table(["reader", "TTL (ms)", "changes", "longest delay (ms)", "longest ÷ TTL",
               "mean delay (ms)",
               "oldest value served (ms)", "never caught up", "superseded", "hits"],
              _staleness_rows(staleness) or [[DASH] * 10]),
    ]
