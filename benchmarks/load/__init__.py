"""The reliability load run of ``session-proxy-bench load``.

:mod:`session_proxy_bench.load.transfer` holds the transfer workload, its tables and
its invariant check (the server imports it with ``--operations``, so this
package imports nothing at start-up); :mod:`session_proxy_bench.load.runner` drives
the concurrent clients through gunicorn and a fault-injecting relay and
returns the run's result document.
"""
