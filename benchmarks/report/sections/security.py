"""The report's "Security" section: which attacks each approach stops.

Everything comes from the results file's ``security`` entry, written by
:func:`session_proxy_bench.security.attacks.security_results`: one outcome per attack
and configuration, each with the status the server answered and the harm
the attacker achieved, checked against the database afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..document import Block, Bullets, Heading, Paragraph, Table

CONFIG_LABELS = {
    "proxy": "proxy, no policy",
    "proxy+policy": "proxy + learnt allowlist",
    "logical": "logical API + role policy",
}


def _cell(outcome: dict[str, Any]) -> str:
    if outcome["stopped"]:
        return f"stopped ({outcome['status']})"
    return f"**through** ({outcome['status']}): {outcome['harm']}"


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def security_section(results: dict[str, Any]) -> list[Block]:
    """Heading, method, matrix and findings of the security section."""
    security = results.get("security")
    heading = Heading(2, "Security: which attacks each approach stops")
    if not security:
        return [heading, Paragraph("The attack suite was not run (`--no-security`).")]
    configs: list[str] = security["configs"]
    attacks: list[dict] = security["attacks"]
    outcomes = {(o["attack"], o["config"]): o for o in security["outcomes"]}
    limits = ", ".join(f"`{flag} {value}`" for flag, value in security["limits"].items())
    method = Paragraph(
        f"{len(attacks)} hostile requests, each sent as real HTTP by a caller holding a "
        f"worker's token (or a bad token) to three servers in front of the same "
        f"{security['backend']} database: the statement proxy with no policy; the proxy "
        "enforcing an allowlist recorded (`--policy-record`) from a trusted run of the "
        "workload script as role `worker` and a heartbeat as role `triggerer`; and the "
        "logical API with a role policy recorded the same way. All three run with "
        f"{limits}. An attack counts as **stopped** when it achieved nothing: no secret "
        "in the response, no code run, no lock held past the lease, and every workload "
        "table identical before and after (dumped and compared); the status is the "
        "server's answer.")
    rows = []
    for attack in attacks:
        cells = [_cell(outcomes[(attack["name"], config)]) for config in configs]
        rows.append([attack["name"], attack["category"], *cells])
    matrix = Table(["attack", "kind", *(CONFIG_LABELS.get(c, c) for c in configs)], rows)

    by_category: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for attack in attacks:
        for config in configs:
            stopped = outcomes[(attack["name"], config)]["stopped"]
            by_category[attack["category"]][config].append(int(stopped))
    summary_rows = []
    for category, per_config in by_category.items():
        summary_rows.append([category, *(f"{sum(v)} of {len(v)}" for v in
                                         (per_config[c] for c in configs))])
    totals = [sum(sum(by_category[cat][c]) for cat in by_category) for c in configs]
    summary_rows.append(["**all**", *(f"**{t} of {len(attacks)}**" for t in totals)])
    summary = Table(["stopped", *(CONFIG_LABELS.get(c, c) for c in configs)], summary_rows)

    def through(config: str) -> list[str]:
        return [a["name"] for a in attacks if not outcomes[(a["name"], config)]["stopped"]]

    everywhere = [name for name in through(configs[0])
                  if all(name in through(config) for config in configs)]
    only_bare = [name for name in through("proxy") if name not in everywhere]
    mismatched = [
        f"{a['name']} ({config})" for a in attacks for config in configs
        if a["claimed_stopped"][config] != outcomes[(a["name"], config)]["stopped"]
    ]
    findings = Bullets([
        f"The proxy without a policy lets {len(through('proxy'))} of {len(attacks)} "
        f"attacks through: {_names(through('proxy'))}. Authentication and the server's "
        "limits hold, but any token is a licence to run any SQL as the server's "
        "database user.",
        f"With the learnt allowlist the proxy stops {totals[configs.index('proxy+policy')]} "
        f"of {len(attacks)}, the logical API "
        f"{totals[configs.index('logical')]}. Stopped by the allowlist but not by the bare "
        f"proxy: {_names(only_bare)}.",
        f"Through in every configuration: {_names(everywhere)}. These use statements or "
        "operations the worker legitimately needs, with another tenant's keys: neither a "
        "fingerprint allowlist nor an operation list looks at parameter values, so "
        "per-row ownership needs checks in the operations or row-level security in the "
        "database.",
        "Claims in the test suite that this run contradicts: "
        f"{_names(mismatched)}.",
    ])
    return [heading, method, summary, matrix, Heading(3, "Findings"), findings]
