"""Measurements that answer the seed thread's questions, one module per question.

Each question module defines one :class:`Question`: a key (its entry in the
results document's ``"questions"`` mapping), who asked it, and a ``measure``
function that takes a :class:`QuestionContext` and returns JSON-able raw
numbers.  The report turns each entry into its section
(:mod:`session_proxy_bench.report.sections.questions`); nothing here formats
text.  :data:`QUESTIONS` lists them in the order the report shows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from session_proxy.config import ClientConfig


@dataclasses.dataclass(frozen=True)
class QuestionContext:
    """What a question's measurement may use: the run's database and server.

    A measurement that needs another server, a relay or client processes
    starts (and stops) them itself; it leaves the database as it found it
    (its own tables, or the workload's seeded tables restored).
    """

    #: The direct SQLAlchemy URL of the benchmark's database.
    db_url: str
    #: The benchmark's own server (started with the workload's operations).
    server_url: str
    #: Bearer token for :attr:`server_url`.
    token: str | None
    #: Round-trip times (seconds) the run injects; a question may use a subset.
    rtts: tuple[float, ...]
    #: Samples per cell the run asks for (a question may scale it down).
    samples: int
    #: True for the short preset: measure less, never differently.
    quick: bool
    #: An Airflow inventory measured apart (``run --inventory-results FILE``), or None.
    inventory_results: str | None = None
    #: TLS verification for :attr:`server_url` (HTTPS with a certificate made
    #: for the run: its path); pass it on as ``verify=`` to every client, or
    #: use :meth:`client_config`.
    verify: bool | str = True

    def client_config(self) -> ClientConfig:
        """Server URL, token and verification, for ``session_proxy.create_engine``,
        ``RemoteClient`` or ``HTTPTransport``."""
        return ClientConfig(self.server_url, token=self.token, verify=self.verify)


@dataclasses.dataclass(frozen=True)
class Question:
    """One question of the thread and how to measure its answer."""

    #: The entry in ``results["questions"]``.
    key: str
    #: Who asked, as the report names them.
    asked_by: str
    #: The question, in a few words.
    title: str
    #: Runs the measurement; returns JSON-able raw numbers.
    measure: Callable[[QuestionContext], dict[str, Any]]


#: Every question measured by a run, in the report's order.
QUESTIONS: list[Question] = []


def measure_questions(ctx: QuestionContext, keys: list[str] | None = None) -> dict[str, Any]:
    """Measure each question (those of ``keys``, or all); return ``{key: raw numbers}``."""
    return {q.key: q.measure(ctx) for q in QUESTIONS if keys is None or q.key in keys}


# Each question module defines QUESTION; registered here in the report's order.
from . import (  # noqa: E402
    calls_and_saves,
    ci_gate,
    integrity,
    inventory,
    isolation,
    logical_vs_aip44,
    serialization,
    worker_cache,
)

QUESTIONS.extend([
    calls_and_saves.QUESTION,
    serialization.QUESTION,
    isolation.QUESTION,
    integrity.QUESTION,
    worker_cache.QUESTION,
    ci_gate.QUESTION,
    inventory.QUESTION,
    logical_vs_aip44.QUESTION,
])
