"""CPU time of the processes the benchmarks start and measure, from ``/proc``.

- :func:`cpu_seconds`: user + system CPU seconds of one process so far;
- :func:`tree_cpu_seconds`: the same summed over a process and everything
  below it (a server that forks workers);
- :class:`CpuMeter`: a process's CPU time between marks, at nanosecond
  resolution (the scheduler's per-thread run time, ``/proc/<pid>/task/*/schedstat``),
  for windows shorter than the 10 ms clock tick ``/proc/<pid>/stat`` counts in.
- :func:`context_switches`: how often the threads of one process gave up
  or lost the CPU so far (a count, unlike time, that a busy machine moves little).

Stopping a server is :func:`session_proxy_server.testing.stop_process`;
:func:`join_or_kill` ends the benchmark's own ``multiprocessing`` clients.

Linux only (``/proc``), like the benchmark machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from multiprocessing.process import BaseProcess
from pathlib import Path

#: What :class:`CpuMeter` reads, for the results' record of how CPU was measured.
METER_SOURCE = "sum over threads of /proc/<pid>/task/<tid>/schedstat run time (ns)"


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:  # the thread ended
            continue
        for line in lines:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(_stat_fields(entry)[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its descendants (those still running)."""
    return sum(cpu_seconds(pid) for pid in process_tree(root))


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """``{thread id: nanoseconds on a CPU so far}`` for every thread of ``pid``."""
    found = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            found[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between listing and reading
    return found


class CpuMeter:
    """CPU seconds one process spent between consecutive :meth:`mark` calls.

    Per thread: a thread present at both marks counts its difference, one
    that started in between counts all of its time, one that ended in
    between loses what it ran since the earlier mark (the servers measured
    here keep fixed thread pools).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last = thread_cpu_ns(pid)

    def mark(self) -> float:
        """CPU seconds since the previous mark (or since the meter was made)."""
        now = thread_cpu_ns(self.pid)
        spent = sum(ns - self._last.get(tid, 0) for tid, ns in now.items())
        self._last = now
        return spent / 1e9


def join_or_kill(processes: Iterable[BaseProcess], timeout: float = 10.0) -> None:
    """Wait up to ``timeout`` seconds for each process to end; kill (and reap) the rest."""
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
