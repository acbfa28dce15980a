"""The runner against hostile servers with DEFAULT options (`nox -s conformance-hostile`).

For each server of tests/hostile_servers.py (drip: one byte every 3 s on every route;
huge: 100 MB bodies on every route; huge-answers: honest capabilities, then 100 MB
bodies on every other route), run `keyflows conformance --base-url URL` with no
other option but the report paths, and require: exit status 1 within 5 minutes, peak
resident memory of the runner under 300 MB, and both reports parsing. Prints one line
per server; exits 1 if any requirement fails. Not part of the test suite (a drip run
takes about 35 s of waiting on deadlines).
"""

from __future__ import annotations

import json
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_servers import hostile, run_measured

LIMIT_S = 300.0
LIMIT_RSS_KB = 300 * 1024


def soak(kind: str) -> list[str]:
    problems = []
    with tempfile.TemporaryDirectory() as tmp, hostile(kind, interval=3.0) as url:
        report, junit = Path(tmp) / "r.json", Path(tmp) / "r.xml"
        done, elapsed, peak_kb = run_measured("conformance", "--base-url", url,
                                              "--report-json", str(report), "--junit-xml",
                                              str(junit), timeout=LIMIT_S + 60)
        code = done.returncode
        rss_mb = peak_kb / 1024
        try:
            summary = json.loads(report.read_text())["summary"]
            ET.parse(junit)
            parsed = "both reports parse"
        except (OSError, ValueError, ET.ParseError) as exc:
            summary, parsed = {}, f"reports unusable: {exc}"
            problems.append(parsed)
        print(f"{kind:12}  exit {code}  {elapsed:6.1f} s  peak RSS {rss_mb:6.1f} MB  {parsed}  "
              f"{ {k: v for k, v in summary.items() if v} }")
        if code != 1:
            problems.append(f"{kind}: exit status {code}, expected 1")
        if elapsed > LIMIT_S:
            problems.append(f"{kind}: {elapsed:.0f} s, limit {LIMIT_S:.0f} s")
        if peak_kb > LIMIT_RSS_KB:
            problems.append(f"{kind}: peak RSS {rss_mb:.0f} MB, limit 300 MB")
    return problems


def main() -> int:
    problems = [p for kind in ("drip", "huge", "huge-answers") for p in soak(kind)]
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
