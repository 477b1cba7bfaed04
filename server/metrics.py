"""Request counters, latency histograms and the per-request log line.

:class:`Metrics` is what ``GET /v1/metrics`` exposes in Prometheus text
format, and :func:`log_request` writes one JSON line per request to the
``session_proxy.access`` logger, with the request id the client also quotes
in its errors.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

access_log = logging.getLogger("session_proxy.access")

#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class Metrics:
    """Thread-safe counters of one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sums: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(endpoint, status)] += 1
            buckets = self._buckets.get(endpoint)
            if buckets is None:
                buckets = self._buckets[endpoint] = [0] * (len(LATENCY_BUCKETS) + 1)
            # One bucket per request; the exposition sums them (cumulative).
            buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._sums[endpoint] += seconds
            self._counts[endpoint] += 1

    def exposition(self, gauges: list[tuple[str, str, str, Callable[[], float]]]) -> str:
        """Prometheus text: requests, latency histograms, then ``gauges``.

        Each gauge is (name, type, help, value function).
        """
        lines = [
            "# HELP session_proxy_requests_total HTTP requests by endpoint and status.",
            "# TYPE session_proxy_requests_total counter",
        ]
        with self._lock:
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(
                    f'session_proxy_requests_total{{endpoint="{endpoint}",'
                    f'status="{status}"}} {count}'
                )
            lines += [
                "# HELP session_proxy_request_seconds Time to answer a request, by endpoint.",
                "# TYPE session_proxy_request_seconds histogram",
            ]
            for endpoint in sorted(self._buckets):
                cumulative = list(itertools.accumulate(self._buckets[endpoint]))
                for bound, count in zip(LATENCY_BUCKETS, cumulative, strict=False):
                    lines.append(
                        f'session_proxy_request_seconds_bucket{{endpoint="{endpoint}",'
                        f'le="{bound:g}"}} {count}'
                    )
                total = self._counts[endpoint]
                lines += [
                    f'session_proxy_request_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} '
                    f"{total}",
                    f'session_proxy_request_seconds_sum{{endpoint="{endpoint}"}} '
                    f"{self._sums[endpoint]:.6f}",
                    f'session_proxy_request_seconds_count{{endpoint="{endpoint}"}} {total}',
                ]
        for name, kind, help_text, value in gauges:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                      f"{name} {value():g}"]
        return "\n".join(lines) + "\n"


def log_request(**fields: object) -> None:
    """One JSON line describing a finished request (``None`` fields are left out)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    record = {"ts": round(time.time(), 6)}
    record.update({key: value for key, value in fields.items() if value is not None})
    access_log.info(json.dumps(record, separators=(",", ":"), default=str))
