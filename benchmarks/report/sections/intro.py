"""The report's title and provenance: the command that produced it, the code, the machine.

Everything here comes from the results file (``command``, ``environment``,
``started``/``finished``), never from the machine rendering the report, so
``session-proxy-bench report`` regenerates the same bytes anywhere.
"""

from __future__ import annotations

import datetime
import shlex
from typing import Any

from ..document import Block, Code, Heading, Paragraph
from ..formatting import hide_passwords
from ..measurements import Measurements

TITLE = "Session proxy vs logical API vs direct: benchmark report"
#: Environment keys naming the code's commit, in the order they are looked for.
COMMIT_KEYS = ("git_commit", "commit")
#: Environment keys saying whether the working tree had uncommitted changes.
DIRTY_KEYS = ("git_dirty", "dirty")
#: Environment keys describing the machine, shown in this order when present.
MACHINE_KEYS = ("cpu", "cores", "memory", "memory_gb", "kernel", "platform")
#: Library and server versions shown first when present (others follow in the table).
VERSION_KEYS = ("python", "sqlalchemy", "psycopg", "pymysql", "orjson", "werkzeug", "waitress",
                "cheroot", "session_proxy")


def _duration(results: dict[str, Any]) -> str:
    try:
        started = datetime.datetime.fromisoformat(results["started"])
        finished = datetime.datetime.fromisoformat(results["finished"])
    except (KeyError, TypeError, ValueError):
        return "not recorded"
    return f"{(finished - started).total_seconds():.0f} s"


def _first(env: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((env[k] for k in keys if env.get(k) not in (None, "")), None)


def _versions(env: dict[str, Any]) -> str:
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    found = {k: env[k] for k in VERSION_KEYS if isinstance(env.get(k), str)}
    found.update({k: v for k, v in versions.items() if v is not None})
    return ", ".join(f"{name} {version}" for name, version in found.items()) or "not recorded"


def provenance(results: dict[str, Any]) -> list[Block]:
    """The command line, commit, versions and machine of the run, as blocks."""
    env = results.get("environment") or {}
    command = results.get("command") or []
    commit = _first(env, COMMIT_KEYS)
    dirty = _first(env, DIRTY_KEYS)
    code = ("not recorded" if commit is None else f"commit `{commit}`"
            + (" with uncommitted changes" if dirty else ""))
    machine = ", ".join(f"{key} {env[key]}" for key in MACHINE_KEYS if env.get(key)) \
        or "not recorded"
    backend = " ".join(str(env[k]) for k in ("backend", "backend_version") if env.get(k))
    return [
        Paragraph("Produced by this one command (the report is regenerated from its results "
                  "file with `session-proxy-bench report`):"),
        Code(hide_passwords(shlex.join(str(a) for a in command)) if command else "not recorded"),
        Paragraph(f"**Code**: {code}. **Database**: {backend or 'not recorded'}. "
                  f"**Versions**: {_versions(env)}. **Machine**: {machine}."),
    ]


def intro_section(m: Measurements) -> list[Block]:
    """The level-1 title, what ran for how long, and the run's provenance."""
    results = m.results
    backend = m.environment.get("backend", "an unrecorded backend")
    repetitions = sorted({s["repetition"] for s in m.samples if s.get("repetition") is not None},
                         key=str)
    intro = Paragraph(
        f"Direct database access, the session proxy and the logical API running the same "
        f"operations on {backend}. Run from {results.get('started', 'not recorded')} to "
        f"{results.get('finished', 'not recorded')} ({_duration(results)}); {len(m.samples)} "
        f"samples" + (f" in {len(repetitions)} repetitions" if len(repetitions) > 1 else "")
        + f", {len(m.floors)} floor samples, {len(m.throughput)} throughput runs. Every "
        "number below is computed from the run's results file.")
    return [Heading(1, TITLE), intro, *provenance(results)]
