"""The checkov scan of ``terraform/`` (``make lint``): every accepted finding has its reason, here and in the docs.

checkov runs offline (``--skip-download``) in its own virtualenv (``.venv-checkov``, requirements-checkov.txt)
with ``terraform/.checkov.yaml``. Each check it skips is listed there with the reason in the comment above
it, and in docs/deploy.md ("Security scan"). When checkov is installed (``make lint`` installs it), the scan
itself runs here too and must find nothing beyond the accepted list.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.test_terraform import REPO, config

CHECKOV_CONFIG = REPO / "terraform" / ".checkov.yaml"
DEPLOY_MD = REPO / "docs" / "deploy.md"


def accepted() -> dict[str, str]:
    """Skipped check id -> its reason (the comment lines right above it in .checkov.yaml)."""
    lines = CHECKOV_CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    found: dict[str, str] = {}
    reason: list[str] = []
    for line in lines[start + 1 :]:
        comment = re.match(r"\s+#\s?(.*)", line)
        entry = re.match(r"\s+-\s+(CKV2?_\w+)\s*$", line)
        if comment:
            reason.append(comment.group(1))
        elif entry:
            found[entry.group(1)] = " ".join(reason)
            reason = []
        elif line.strip():
            break
    return found


def test_every_accepted_finding_has_its_reason() -> None:
    skips = accepted()
    assert skips, "no skip-check entries found"
    for check, reason in skips.items():
        assert reason.startswith(f"{check}:"), f"{check}: the comment above it must start with '{check}:'"
        assert len(reason) > len(check) + 40, f"{check}: give the reason, not just the name"


def test_the_docs_list_the_same_accepted_findings() -> None:
    docs = DEPLOY_MD.read_text()
    section = docs[docs.index("### Security scan") :]
    listed = set(re.findall(r"^\| `(CKV2?_\w+)` \|", section, flags=re.M))
    assert listed == set(accepted()), f"docs/deploy.md lists {sorted(listed)}, .checkov.yaml skips {sorted(accepted())}"


def test_the_scan_is_offline_and_covers_terraform() -> None:
    text = CHECKOV_CONFIG.read_text()
    assert "skip-download: true" in text, "checkov must not call the Prisma Cloud platform"
    assert re.search(r"^directory:\n  - terraform$", text, flags=re.M)
    assert re.search(r"^framework:\n  - terraform$", text, flags=re.M)
    makefile = (REPO / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") :].split("\n\n")[0]
    assert "checkov --config-file terraform/.checkov.yaml" in lint


def test_skipping_deletion_protection_by_id_hides_no_table() -> None:
    """CKV_GCP_121 is skipped for the BI views, by check id: the tables must still be protected."""
    assert "CKV_GCP_121" in accepted()
    assert config().resource("google_bigquery_table", "table")["deletion_protection"] == "${var.deletion_protection}"
    assert config().variables["deletion_protection"]["default"] is True


def _checkov() -> str | None:
    local = REPO / ".venv-checkov" / "bin" / "checkov"
    return os.environ.get("CHECKOV") or (str(local) if local.exists() else shutil.which("checkov"))


@pytest.mark.slow
def test_checkov_finds_nothing_beyond_the_accepted_list() -> None:
    checkov = _checkov()
    if checkov is None:
        pytest.skip("checkov is not installed here; `make lint` installs it into .venv-checkov and runs it")
    result = subprocess.run(
        [checkov, "--config-file", str(CHECKOV_CONFIG)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, f"checkov found more than the accepted list:\n{result.stdout[-6000:]}"
    assert re.search(r"Failed checks: 0\b", result.stdout)
