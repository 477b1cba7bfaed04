"""SQLAlchemy's own test suites, run direct and through session-proxy.

``python -m tests.compliance.sa_suite`` is the entry point; see there.
"""
