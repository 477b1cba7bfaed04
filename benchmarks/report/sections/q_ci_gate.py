"""The section answering '"blessed" DB calls enforced in CI'.

Renders ``results["questions"]["ci_gate"]``
(:mod:`session_proxy_bench.questions.ci_gate`): per design and variant,
what the policy recorded from the test script holds, how many of the
production-like calls it refused (false positives), at which scale and
with which fingerprints; and, from the results' ``security`` entry, how
many attacks a policy recorded the same way stopped.
"""

from __future__ import annotations

from typing import Any

from ...questions.ci_gate import QUESTION
from ..document import Block, Bullets, Heading, Paragraph, Table
from ..formatting import fmt_percent, listing

VARIANT_LABELS = {"full": "every operation tested", "gap": "one operation untested"}
#: Security configs whose policy is recorded from the test script, per design.
SECURITY_CONFIG = {"proxy": "proxy+policy", "logical": "logical"}
EXAMPLES = 3


def _recorded(design: str, variant: dict[str, Any]) -> str:
    size = variant["policy"]
    return (f"{size['statements']} statements" if design == "proxy"
            else f"{size['operations']} operations")


def _row(design: str, name: str, variant: dict[str, Any], scales: list[int]) -> list[str]:
    by_scale = " / ".join(str(variant["per_scale"][str(s)]["refused"]) for s in scales)
    return [
        design,
        VARIANT_LABELS.get(name, name) + (f" (`{variant['left_out']}`)" if variant["left_out"]
                                          else ""),
        f"{variant['script_calls']} calls → {_recorded(design, variant)}",
        str(variant["calls"]),
        f"{variant['refused']} ({fmt_percent(variant['refused'] / variant['calls'])})",
        by_scale,
        listing(variant["refused_by_operation"]),
        str(variant["other_error_count"]),
    ]


def _attacks(security: dict[str, Any] | None) -> str:
    if not security:
        return "The attack suite was not run in this run (`--no-security`), so no attack count."
    attacks = security["attacks"]
    stopped = {config: sum(1 for o in security["outcomes"]
                           if o["config"] == config and o["stopped"])
               for config in security["configs"]}
    parts = [f"the {design} design with its recorded policy stopped "
             f"{stopped.get(config, 0)} of {len(attacks)}"
             for design, config in SECURITY_CONFIG.items() if config in stopped]
    if "proxy" in stopped:
        parts.append(f"the proxy without a policy {stopped['proxy']}")
    return ("Attacks stopped by a policy recorded this way (the security section's lab "
            "records from the same script as the same role): " + "; ".join(parts) + ".")


def ci_gate_section(raw: dict[str, Any], security: dict[str, Any] | None = None) -> list[Block]:
    """How a policy recorded in CI behaves in production, per design."""
    scales = raw["scales"]
    rows = [_row(design, name, variant, scales)
            for design, variants in raw["designs"].items()
            for name, variant in variants.items()]
    findings = []
    for design, variants in raw["designs"].items():
        full = variants["full"]
        examples = full["refused_fingerprints"][:EXAMPLES]
        if full["refused"]:
            findings.append(
                f"**{design}**, every operation tested: {full['refused']} of {full['calls']} "
                f"legitimate calls refused ({full['distinct_refused_fingerprints']} distinct "
                f"fingerprints), in {listing(full['refused_by_operation'])}; for example "
                + "; ".join(f"`{fp}`" for fp in examples) + ".")
        else:
            findings.append(f"**{design}**, every operation tested: none of {full['calls']} "
                            "legitimate calls refused.")
        gap = variants.get("gap")
        if gap:
            untested = gap["refused_by_operation"].get(gap["left_out"], 0)
            findings.append(
                f"**{design}**, `{gap['left_out']}` untested: {gap['refused']} of "
                f"{gap['calls']} calls refused, {untested} of them `{gap['left_out']}`'s.")
    return [
        Heading(3, f"{QUESTION.title}: a recorded policy as a CI gate "
                   f"(asked by {QUESTION.asked_by})"),
        Paragraph(
            "Jarek proposed enforcing in CI which DB calls are allowed. Measured here as the docs "
            "recommend it: CI runs the workload's test script (every operation at least once, "
            f"{raw['script_steps']} steps on the tests' small seed) as role `{raw['role']}` "
            "through a recording server (`--policy-record`); production then enforces the "
            "file it wrote (`--policy`) while the benchmark's operations run as they do in "
            f"production: {len(raw['operations'])} operations, {raw['calls_per_operation']} "
            f"calls each at {', '.join(str(s) for s in scales)} tasks per DAG. A refused "
            "call is a false positive: a legitimate call the gate stops. The second variant "
            f"records from the same script without `{raw['left_out']}`: an untested code "
            "path."),
        Table(["design", "tests", "recorded", "calls", "refused (false positives)",
               f"refused at {' / '.join(str(s) for s in scales)} tasks", "refused operations",
               "other errors"], rows),
        Bullets(findings),
        Paragraph(_attacks(security)),
        *_why(raw),
    ]


def _why(raw: dict[str, Any]) -> list[Block]:
    """Why statements were refused, when the refused ones are ORM UPDATEs."""
    full = raw["designs"].get("proxy", {}).get("full")
    if not full or not any(fp.startswith("UPDATE ") for fp in full["refused_fingerprints"]):
        return []
    return [Paragraph(
        "Why the statement allowlist refuses tested operations: the ORM's UPDATE names only "
        "the columns whose values changed, so one operation sends differently shaped "
        "statements as the data differ, and a test that did not meet that data did not "
        "record them (here more often than in production, since the benchmark's calls reuse "
        "fixed hosts and timestamps, so more columns keep their values). An operation "
        "allowlist sees only operation names.")]
