"""The dependency audit's decision (``audit.classify``): a known vulnerability fails it with the advisory and
its fix; advisory data out of reach passes with a plain "not audited", never a false "no known
vulnerabilities"; any other failure of pip-audit fails. Offline: canned pip-audit JSON reports."""

from __future__ import annotations

from tests.reliability.audit import classify

CLEAN = {"dependencies": [{"name": "duckdb", "version": "2.0.1", "vulns": []},
                          {"name": "rich", "version": "15.0.0", "vulns": []}]}
VULNERABLE = {"dependencies": [
    {"name": "duckdb", "version": "2.0.1", "vulns": []},
    {"name": "jinja2", "version": "3.1.3", "vulns": [{"id": "GHSA-h75v-3vvj-5mfj", "fix_versions": ["3.1.4"]}]},
]}
NOT_REACHED = {"dependencies": [
    {"name": "duckdb", "skip_reason": "Dependency not found on PyPI and could not be audited: duckdb (2.0.1)"},
    {"name": "rich", "skip_reason": "Dependency not found on PyPI and could not be audited: rich (15.0.0)"},
]}
OSV_DOWN = ("Traceback (most recent call last):\n  ...\nrequests.exceptions.ConnectionError: HTTPSConnectionPool("
            "host='api.osv.dev', port=443): Max retries exceeded (Caused by NameResolutionError(...))")


def test_a_known_vulnerability_fails_naming_the_advisory_and_the_fix() -> None:
    code, message = classify(VULNERABLE, "", 1)
    assert code == 1 and "jinja2 3.1.3: GHSA-h75v-3vvj-5mfj (fixed in 3.1.4)" in message


def test_advisory_data_out_of_reach_passes_and_says_not_audited() -> None:
    for report, stderr in ((NOT_REACHED, ""), (None, OSV_DOWN)):
        code, message = classify(report, stderr, 1)
        assert code == 0 and "NOT AUDITED" in message and "no known vulnerability" not in message


def test_a_clean_audit_passes_and_counts_what_it_looked_up() -> None:
    assert classify(CLEAN, "", 0) == (0, "pip-audit: 2 dependencies audited, no known vulnerability")


def test_any_other_failure_fails() -> None:
    code, message = classify(None, "ERROR: Could not find a version that satisfies the requirement nope==9", 1)
    assert code == 1 and "satisfies the requirement" in message
