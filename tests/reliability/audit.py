"""The dependency audit ``make audit`` runs: ``pip-audit`` over the pinned requirements, read as JSON.

* A known vulnerability in any pinned (or resolved) dependency fails it, naming package, version,
  advisory and the versions that fix it.
* When the advisory data cannot be reached (no network, a mirror that does not serve PyPI's JSON API, the
  OSV service unresolvable), it says so plainly and passes: an audit that could not look is not a
  finding, and CI must not fail for that reason alone. It never reports "no known vulnerabilities" when
  it looked nothing up.
* Anything else going wrong (``pip-audit`` missing, a requirement that cannot be resolved) fails.

``python -m tests.reliability.audit requirements.txt requirements-dev.txt``; ``classify`` is the decision,
tested offline in ``test_audit.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

NETWORK = ("ConnectionError", "NameResolutionError", "Max retries exceeded", "timed out", "Timeout",
           "Temporary failure in name resolution", "Name or service not known", "SSLError", "ProxyError",
           "Network is unreachable", "Connection refused")
UNREACHABLE_SKIP = ("not found on PyPI", "could not be audited")


def classify(report: dict[str, Any] | None, stderr: str, returncode: int) -> tuple[int, str]:
    """(exit code, message) for one pip-audit run: 1 on findings or a real failure, 0 otherwise."""
    if report is None:
        if any(marker in stderr for marker in NETWORK):
            return 0, ("pip-audit: the vulnerability advisory data could not be reached (network); "
                       "NOT AUDITED - not a finding. Last error: " + _last_line(stderr))
        return 1, f"pip-audit failed (exit {returncode}): {_last_line(stderr)}"
    deps = report.get("dependencies", [])
    vulnerable = [(d, v) for d in deps for v in d.get("vulns", [])]
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    if vulnerable:
        lines = [f"  {d['name']} {d.get('version', '?')}: {v.get('id')} "
                 f"(fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})" for d, v in vulnerable]
        head = f"pip-audit: {len(vulnerable)} known vulnerabilities in {len(deps)} dependencies:\n"
        return 1, head + "\n".join(lines)
    unreachable = [d for d in skipped if any(s in d["skip_reason"] for s in UNREACHABLE_SKIP)]
    if audited == 0 and deps:
        return 0, (f"pip-audit: the advisory service answered for none of the {len(deps)} dependencies "
                   f"({len(unreachable)} 'not found on PyPI'): the advisory data is not reachable from here; "
                   "NOT AUDITED - not a finding")
    note = f"; {len(skipped)} skipped (could not be looked up)" if skipped else ""
    return 0, f"pip-audit: {audited} dependencies audited, no known vulnerability{note}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def run(requirements: list[str]) -> tuple[int, str]:
    """Run pip-audit over ``requirements`` and classify the result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        argv = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "--timeout", "15", "-f", "json",
                "-o", str(out)]
        for name in requirements:
            argv += ["-r", name]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return 0, "pip-audit: timed out reaching the advisory data; NOT AUDITED - not a finding"
        report = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
        if report is None and "No module named pip_audit" in done.stderr:
            return 1, "pip-audit is not installed: pip install -r requirements-dev.txt"
        return classify(report, done.stderr, done.returncode)


def main(argv: list[str]) -> int:
    """``python -m tests.reliability.audit REQUIREMENTS...``."""
    code, message = run(argv or ["requirements.txt"])
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
