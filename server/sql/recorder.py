"""The policy recorder: watch a workload, write the strict policy that allows exactly it.

Run a server with ``--policy-record`` under a representative workload, then
serve with the file it wrote.  The recorded policy lists fingerprints and
logical operations only (no table rules), so anything the workload did not
do is refused.  Do not record from untrusted callers: whatever they send
while recording becomes allowed.
"""

from __future__ import annotations

import os
import tempfile
import threading

from .classify import classify
from .fingerprint import fingerprint
from .policy import Policy, RolePolicy

__all__ = ["PolicyRecorder"]


class _RecordedRole:
    __slots__ = ("statements", "operations", "ddl", "multi")

    def __init__(self) -> None:
        self.statements: set[str] = set()
        self.operations: set[str] = set()
        self.ddl = False
        self.multi = False


class PolicyRecorder:
    """Collect what each role does and write a strict policy allowing exactly that.

    Thread-safe.  The written policy lists fingerprints and operations only
    (no table rules), and sets ``allow_ddl`` / ``allow_multi_statement`` for
    a role only if it was seen running such a statement (which then still has
    to match a listed fingerprint).  Statements that :func:`classify` finds
    ambiguous are recorded but stay refused by :meth:`Policy.check_statement`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roles: dict[str, _RecordedRole] = {}

    def _entry(self, role: str) -> _RecordedRole:
        entry = self._roles.get(role)
        if entry is None:
            entry = self._roles[role] = _RecordedRole()
        return entry

    def record(self, role: str, sql: str, dialect: str | None = None) -> str:
        """Add the fingerprint of ``sql`` to ``role``'s statements; return it."""
        fp = fingerprint(sql, dialect)
        info = classify(sql, dialect)
        with self._lock:
            entry = self._entry(role)
            entry.statements.add(fp)
            entry.ddl = entry.ddl or info.kind == "ddl"
            entry.multi = entry.multi or info.is_multi_statement
        return fp

    def record_operation(self, role: str, name: str) -> None:
        """Add logical operation ``name`` to ``role``'s operations."""
        with self._lock:
            self._entry(role).operations.add(name)

    def to_policy(self) -> Policy:
        """The recorded policy."""
        with self._lock:
            return Policy(
                {
                    role: RolePolicy(
                        statements=frozenset(entry.statements),
                        operations=frozenset(entry.operations),
                        allow_ddl=entry.ddl,
                        allow_multi_statement=entry.multi,
                    )
                    for role, entry in self._roles.items()
                }
            )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_policy` as JSON to ``path`` atomically (temp file + rename)."""
        text = self.to_policy().to_json()
        target = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(target))
        fd, temp = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(target) + ".", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
