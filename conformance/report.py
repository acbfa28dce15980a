"""Reports: the JSON report (target, summary and one entry per check; extended) and JUnit XML.

Traces in reports are redacted exactly like the terminal output.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from keyflows.conformance.redaction import escape_controls, redact_text
from keyflows.conformance.registry import FLOWS
from keyflows.conformance.runner import ERRORED, FAILED, SKIPPED, Result, summarize
from keyflows.conformance.trace import format_with_side_calls


def keyflows_version() -> str:
    try:
        return version("keyflows")
    except PackageNotFoundError:
        return "unknown"


def result_entry(result: Result) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": result.check.id,
        "flow": result.check.flow,
        "status": result.status,
        "requirements": list(result.check.requirements),
        "message": redact_text(result.message),
        "summary": result.check.summary,
        "duration_ms": round(result.duration_ms, 1),
        "known_failing": result.known_failing,
        "stale_known_failing": result.stale,
        "requests": result.requests,
    }
    if result.not_run:
        entry["not_run"] = True
    if result.status in (FAILED, ERRORED) and not result.not_run:
        entry["expected"] = redact_text(result.expected)
        entry["actual"] = redact_text(result.actual)
        if result.failing_exchange is not None:
            entry["trace"] = format_with_side_calls(
                result.failing_exchange, result.side_exchanges, indent="")
            entry["reproducer"] = result.reproducer
            entry["reproducer_token"] = result.failing_exchange.credential_note
        if result.saved_to:
            entry["saved_exchanges"] = result.saved_to
    return entry


def json_report(results: list[Result], *, target: str, mode: str,
                capabilities: dict[str, Any] | None, duration_s: float,
                stop_reason: str = "") -> dict[str, Any]:
    return {
        "target": target,
        "mode": mode,
        "runner": {"name": "keyflows-conformance", "version": keyflows_version()},
        "capabilities": finite(capabilities),
        "duration_s": round(duration_s, 3),
        "stopped_early": stop_reason or None,
        "summary": summarize(results),
        "checks": [result_entry(r) for r in results],
    }


def finite(value: Any) -> Any:
    """The value with NaN and infinities (which a server may send and Python parses, but
    JSON has not) as strings, so the report is JSON any parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a report, even after Ctrl-C."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(finite(report), indent=2, allow_nan=False) + "\n",
                       encoding="utf-8")
    partial.replace(path)


def junit_xml(results: list[Result], *, target: str) -> ET.ElementTree[ET.Element]:
    """One testsuite per flow; known failures are reported as skipped with a reason."""
    root = ET.Element("testsuites", name="keyflows-conformance")
    for flow in FLOWS:
        flow_results = [r for r in results if r.check.flow == flow]
        if not flow_results:
            continue
        suite = ET.SubElement(root, "testsuite", name=flow)
        counts = {"tests": len(flow_results), "failures": 0, "errors": 0, "skipped": 0}
        total_ms = 0.0
        for result in flow_results:
            total_ms += result.duration_ms
            case = ET.SubElement(suite, "testcase", classname=flow, name=result.check.id,
                                 time=f"{result.duration_ms / 1000:.3f}")
            ET.SubElement(ET.SubElement(case, "properties"), "property",
                          name="requirements", value=" ".join(result.check.requirements))
            if result.stale:
                counts["failures"] += 1
                ET.SubElement(case, "failure", message="stale known-failing entry: "
                              "the check passes now; remove it from the list")
            elif result.known_failing:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped",
                              message=f"known failing: {redact_text(result.message)}")
            elif result.status == FAILED:
                counts["failures"] += 1
                failure = ET.SubElement(case, "failure", message=redact_text(result.message))
                failure.text = _details(result)
            elif result.status == ERRORED:
                counts["errors"] += 1
                error = ET.SubElement(case, "error", message=redact_text(result.message))
                error.text = _details(result)
            elif result.status == SKIPPED:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=result.message)
        for key, value in counts.items():
            suite.set(key, str(value))
        suite.set("time", f"{total_ms / 1000:.3f}")
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="target",
                      value=target)
    return ET.ElementTree(root)


def _details(result: Result) -> str:
    lines = [f"expected: {redact_text(result.expected)}",
             f"got:      {redact_text(result.actual)}"]
    if result.failing_exchange is not None:
        lines += ["trace:", format_with_side_calls(result.failing_exchange,
                                                      result.side_exchanges),
                  "reproduce:", "  " + result.reproducer]
    return "\n".join(lines)


def write_junit(path: Path, results: list[Result], *, target: str) -> None:
    tree = junit_xml(results, target=target)
    for element in tree.iter():  # XML 1.0 has no place for most control characters
        element.text = escape_controls(element.text) if element.text else element.text
        for key, value in element.attrib.items():
            element.set(key, escape_controls(value))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
