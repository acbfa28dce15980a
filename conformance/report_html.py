"""--report-html FILE: one self-contained page a person would rather look at.

Everything is inline (styles; no script, no font, no image, nothing fetched): the page
works from file://, offline, attached to a CI run. It shows the run (target, duration,
an early stop), a summary per flow with the same counts as the JSON report, then every
check of the run under its flow: status, id, requirement ids linked into the spec site
(--docs-url), and for each failure what was expected and what came back, with the
trace, the reproducer and the re-run line folded under a <details>. The JSON report is
embedded as data (`<script type="application/json" id="keyflows-report">`, never run).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keyflows.conformance.redaction import escape_controls
from keyflows.conformance.registry import FLOWS
from keyflows.conformance.report import finite
from keyflows.conformance.runner import ERRORED, FAILED, PASSED, SKIPPED, STATUSES, Result
from keyflows.spec.requirements import registry

DOCS_ENV = "KEYFLOWS_DOCS_URL"


def default_docs_url() -> str:
    """The spec site: the built docs shipped with or beside this package, as a file URL
    (the report stays offline); the KEYFLOWS_DOCS_URL environment variable wins."""
    import os

    env = os.environ.get(DOCS_ENV)
    if env:
        return env
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "docs" / "html",            # installed beside the package
                  here.parent / "docs" / "_build" / "html"]  # a source checkout
    for candidate in candidates:
        if (candidate / "index.html").is_file():
            return candidate.as_uri()
    return candidates[-1].as_uri()


def requirement_url(docs_url: str, requirement: str) -> str:
    """The requirement's anchor in its chapter (`req-KP-3` on the keypair page)."""
    entry = registry().get(requirement)
    flow = entry.flow if entry else "common"
    page = "common.html" if flow == "common" else f"flows/{quote(flow)}.html"
    return f"{docs_url.rstrip('/')}/{page}#req-{quote(requirement)}"


_CSS = """
:root { --pass: #1a7f37; --fail: #cf222e; --skip: #9a6700; --error: #8250df;
        --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1f2328; }
header { padding: 18px 28px; border-bottom: 1px solid var(--line); background: var(--bg); }
main { padding: 8px 28px 40px; max-width: 1300px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
.meta { color: var(--muted); margin: 2px 0; overflow-wrap: anywhere; }
.stopped { color: var(--fail); font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; min-width: 58px; text-align: center; border-radius: 10px;
         padding: 0 8px; color: #fff; font-size: 12px; font-weight: 700;
         text-transform: uppercase; }
.passed { background: var(--pass); } .failed { background: var(--fail); }
.skipped { background: var(--skip); } .errored { background: var(--error); }
.check-id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px;
            white-space: nowrap; }
.reqs a { font-family: ui-monospace, monospace; font-size: 12px; margin-right: 6px;
          white-space: nowrap; }
.msg { color: var(--muted); overflow-wrap: anywhere; }
details { margin: 6px 0 2px; }
summary { cursor: pointer; color: #0969da; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px;
      padding: 8px 10px; overflow: auto; max-height: 420px; font-size: 12px;
      white-space: pre-wrap; overflow-wrap: anywhere; }
dl { margin: 6px 0; } dt { font-weight: 600; margin-top: 6px; } dd { margin: 2px 0 0 0; }
.flag { font-size: 12px; color: var(--muted); margin-left: 6px; }
"""


def _e(value: Any) -> str:
    return html.escape(escape_controls(str(value)), quote=True)


def counts_by_flow(checks: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for entry in checks:
        row = counts.setdefault(entry["flow"], {s: 0 for s in STATUSES})
        row[entry["status"]] += 1
    return {flow: counts[flow] for flow in (*FLOWS, *sorted(counts)) if flow in counts}


def _summary_table(checks: list[dict[str, Any]], summary: dict[str, int]) -> str:
    rows = []
    for flow, row in counts_by_flow(checks).items():
        cells = "".join(f'<td class="n" data-status="{s}">{row[s]}</td>' for s in STATUSES)
        rows.append(f'<tr data-flow="{_e(flow)}"><td><a href="#flow-{_e(flow)}">{_e(flow)}'
                    f'</a></td>{cells}<td class="n">{sum(row.values())}</td></tr>')
    total = "".join(f'<td class="n" data-status="{s}">{summary[s]}</td>' for s in STATUSES)
    return ('<table id="summary"><thead><tr><th>flow</th>'
            + "".join(f"<th>{s}</th>" for s in STATUSES) + "<th>total</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody><tfoot><tr data-flow=\"all\"><th>all</th>{total}"
            f"<th class=\"n\">{sum(summary[s] for s in STATUSES)}</th></tr></tfoot></table>")


def _details(entry: dict[str, Any], result: Result | None, rerun: str) -> str:
    parts = ["<dl>"]
    for label, key in (("expected", "expected"), ("got", "actual")):
        if entry.get(key):
            parts.append(f"<dt>{label}</dt><dd><pre>{_e(entry[key])}</pre></dd>")
    if entry.get("trace"):
        parts.append(f"<dt>trace (secrets redacted)</dt><dd><pre>{_e(entry['trace'])}"
                     f"</pre></dd>")
    if entry.get("reproducer"):
        token = entry.get("reproducer_token")
        note = f" (set KEYFLOWS_TOKEN to {_e(token)})" if token else ""
        parts.append(f"<dt>reproducer{note}</dt><dd><pre>{_e(entry['reproducer'])}</pre>"
                     f"</dd>")
    if entry.get("saved_exchanges"):
        folder = Path(entry["saved_exchanges"])
        parts.append(f"<dt>saved exchanges (unredacted)</dt><dd><pre>python3 "
                     f"{_e(folder.parent / 'replay.py')} {_e(entry['id'])}</pre></dd>")
    parts.append(f"<dt>re-run</dt><dd><pre>{_e(rerun)} --select {_e(entry['id'])}</pre></dd>")
    if result is not None and result.requests:
        parts.append(f"<dt>requests</dt><dd>{result.requests}</dd>")
    parts.append("</dl>")
    return "".join(parts)


def _check_row(entry: dict[str, Any], result: Result | None, docs_url: str,
               rerun: str) -> str:
    status = entry["status"]
    links = "".join(f'<a href="{_e(requirement_url(docs_url, r))}">{_e(r)}</a>'
                    for r in entry["requirements"])
    flags = []
    if entry.get("known_failing"):
        flags.append("known failing")
    if entry.get("stale_known_failing"):
        flags.append("stale known-failing entry")
    if entry.get("not_run"):
        flags.append("not run")
    flag_html = "".join(f'<span class="flag">({_e(f)})</span>' for f in flags)
    body = f'<div class="msg">{_e(entry["message"])}</div>' if status != PASSED else ""
    if status in (FAILED, ERRORED) and not entry.get("not_run"):
        body += (f"<details><summary>expected / got, trace, reproducer</summary>"
                 f"{_details(entry, result, rerun)}</details>")
    return (f'<tr class="check" id="check-{_e(entry["id"])}" data-check-id="{_e(entry["id"])}"'
            f' data-status="{_e(status)}"><td><span class="badge {_e(status)}">{_e(status)}'
            f'</span></td><td><span class="check-id">{_e(entry["id"])}</span>{flag_html}'
            f'{body}</td><td class="reqs">{links}</td></tr>')


def render(report: dict[str, Any], results: list[Result], *, docs_url: str | None = None,
           rerun: str = "keyflows conformance") -> str:
    docs = docs_url or default_docs_url()
    by_id = {r.check.id: r for r in results}
    checks: list[dict[str, Any]] = report["checks"]
    summary: dict[str, int] = report["summary"]
    sections = []
    for flow in counts_by_flow(checks):
        rows = "".join(_check_row(c, by_id.get(c["id"]), docs, rerun)
                       for c in checks if c["flow"] == flow)
        sections.append(f'<section id="flow-{_e(flow)}" data-flow="{_e(flow)}"><h2>{_e(flow)}'
                        f'</h2><table><thead><tr><th>status</th><th>check</th>'
                        f'<th>requirements</th></tr></thead><tbody>{rows}</tbody></table>'
                        f'</section>')
    stopped = report.get("stopped_early")
    stop_html = f'<p class="meta stopped">stopped early: {_e(stopped)}</p>' if stopped else ""
    runner = report.get("runner", {})
    headline = (f"{summary[PASSED]} passed, {summary[FAILED]} failed, {summary[SKIPPED]} "
                f"skipped, {summary[ERRORED]} errored")
    data = json.dumps(finite(report), allow_nan=False).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>keyflows conformance: {_e(headline)}</title>
<style>{_CSS}</style></head>
<body><header><h1>keyflows conformance report</h1>
<p class="meta">target <strong>{_e(report["target"])}</strong> ({_e(report.get("mode", ""))})
 &middot; {_e(runner.get("name", ""))} {_e(runner.get("version", ""))}
 &middot; {_e(report.get("duration_s", ""))} s &middot; {len(checks)} checks</p>
<p class="meta" id="headline">{_e(headline)}</p>{stop_html}</header>
<main><h2>Summary per flow</h2>{_summary_table(checks, summary)}
{"".join(sections)}</main>
<script type="application/json" id="keyflows-report">{data}</script>
</body></html>
"""


def write_html(path: Path, report: dict[str, Any], results: list[Result], *,
               docs_url: str | None = None, rerun: str = "keyflows conformance") -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render(report, results, docs_url=docs_url, rerun=rerun),
                       encoding="utf-8")
    partial.replace(path)
