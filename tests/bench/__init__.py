"""Bench layer: the benchmark harness (session_proxy_bench): workload, relay, report, CLI."""
