"""The benchmark's result-memory measurement: server memory stays flat with long results open.

:mod:`session_proxy_bench.result_memory` opens four cursors over a million
rows each through a real server and samples its resident memory; the server's
other resource limits are tested in ``tests/server/test_resource_limits.py``.
"""

from __future__ import annotations

import pytest


def test_server_memory_stays_flat_with_four_million_row_results_open(
    backend: str, db_url: str
) -> None:
    if backend == "sqlite":
        pytest.skip("measured for the backends whose drivers buffer results")
    from session_proxy_bench.result_memory import measure

    result = measure(db_url, rows=1_000_000, cursors=4)
    growth = result["rss_open"][-1] - result["rss_before"]
    # Buffered, this was 620 MB (PostgreSQL) and 1,080 MB (MariaDB).
    assert growth < 60 * 1024 * 1024, result
