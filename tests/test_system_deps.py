"""``tests/support/system_deps.sh`` (what ``make test`` runs first) and the README's account of it (issue 14, item 10).

The script runs against stand-ins on an otherwise empty ``PATH``: an ``apt-get`` that records its arguments and
fails while "another process holds the lock" (apt's own message), ``id``, ``sudo`` and ``sleep`` (recording,
not sleeping). Proves: nothing is installed and no root is needed when everything is present; a held lock is
waited for (apt's ``DPkg::Lock::Timeout`` on every call, and a retry of the lists lock apt does not wait for),
bounded; another apt error is not retried; without root it goes through passwordless sudo, and with neither it
stops with one clear message. The README says what ``make test`` needs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "support" / "system_deps.sh"
BASH = shutil.which("bash") or "/bin/bash"
LOCKED = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)"

APT_GET = f"""#!{BASH}
echo "apt-get $*" >> "$CALLS"
if [[ " $* " == *" update "* ]]; then
  left=$(<"$LOCKED_FOR")
  if (( left > 0 )); then
    echo $((left - 1)) > "$LOCKED_FOR"
    echo "{LOCKED}" >&2
    echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
    exit 100
  fi
fi
if [[ -n "${{APT_FAILS:-}}" ]]; then echo "$APT_FAILS" >&2; exit 100; fi
exit 0
"""
SUDO = f"""#!{BASH}
echo "sudo $*" >> "$CALLS"
[[ "$1" == "-n" ]] || exit 1
[[ "${{SUDO_OK:-}}" == 1 ]] || {{ echo "sudo: a password is required" >&2; exit 1; }}
[[ "$2" == "true" ]] && exit 0
shift
exec "$@"
"""
ID = f"""#!{BASH}
echo "${{FAKE_UID:-0}}"
"""
SLEEP = f"""#!{BASH}
echo "sleep $*" >> "$CALLS"
"""
PRESENT = f"""#!{BASH}
exit 0
"""


def stand_ins(tmp_path: Path, present: tuple[str, ...], sudo: bool) -> Path:
    """A directory for PATH holding the stand-ins, the tools that are "installed", and the real ``env``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"apt-get": APT_GET, "id": ID, "sleep": SLEEP, **{name: PRESENT for name in present}}
    if sudo:
        scripts["sudo"] = SUDO
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    real_env = shutil.which("env")
    assert real_env
    (bin_dir / "env").symlink_to(real_env)
    return bin_dir


def run_script(
    tmp_path: Path, *, present: tuple[str, ...] = ("chromium", "chromedriver", "java", "gcloud"), uid: int = 0,
    sudo: bool = False, sudo_ok: bool = False, locked_for: int = 0, **env: str,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = stand_ins(tmp_path, present, sudo)
    calls = tmp_path / "calls"
    calls.touch()
    (tmp_path / "locked_for").write_text(str(locked_for))
    environ = {"PATH": str(bin_dir), "CALLS": str(calls), "LOCKED_FOR": str(tmp_path / "locked_for"),
               "FAKE_UID": str(uid), "SUDO_OK": "1" if sudo_ok else "0", **env}
    done = subprocess.run([BASH, str(SCRIPT)], env=environ, capture_output=True, text=True, timeout=60, check=False)
    return done, calls.read_text().splitlines()


def test_nothing_to_install_needs_no_root(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, uid=1000)
    assert done.returncode == 0, done.stderr
    assert calls == [] and done.stdout == "" and done.stderr == ""


def test_a_held_lock_is_waited_for(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, present=("chromium", "chromedriver", "gcloud"), locked_for=2)
    assert done.returncode == 0, done.stderr
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt == ["apt-get -o DPkg::Lock::Timeout=600 update -qq"] * 3 + [
        "apt-get -o DPkg::Lock::Timeout=600 install -y -qq default-jre-headless"]
    assert [c for c in calls if c.startswith("sleep")] == ["sleep 5", "sleep 5"]
    assert done.stdout.count("waiting (up to 600 s) for another apt or dpkg to release its lock") == 1
    assert "installing: default-jre-headless" in done.stdout


def test_the_wait_is_bounded(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, present=(), locked_for=1000, GOLDTHREAD_APT_LOCK_WAIT_SECONDS="0")
    assert done.returncode == 1
    assert LOCKED in done.stderr and "error: apt-get update failed" in done.stderr
    assert not any("install" in c for c in calls if c.startswith("apt-get"))


def test_another_apt_error_is_not_retried(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, present=("chromium", "chromedriver"),
                             APT_FAILS="E: Unable to locate package default-jre-headless")
    assert done.returncode == 1
    assert "Unable to locate package" in done.stderr
    assert [c for c in calls if c.startswith("sleep")] == []
    assert "gcloud is not installed" not in done.stderr  # it stopped at the failure


@pytest.mark.parametrize("sudo_ok", [True, False])
def test_without_root_passwordless_sudo_or_a_clear_refusal(tmp_path: Path, sudo_ok: bool) -> None:
    done, calls = run_script(tmp_path, present=("chromium", "chromedriver", "gcloud"), uid=1000, sudo=True,
                             sudo_ok=sudo_ok)
    if sudo_ok:
        assert done.returncode == 0, done.stderr
        assert "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq " \
               "default-jre-headless" in calls
    else:
        assert done.returncode == 1
        assert "root or passwordless sudo" in done.stderr and "apt-get install default-jre-headless" in done.stderr
        assert not any(c.startswith("apt-get") for c in calls)


def test_no_root_and_no_sudo_is_refused(tmp_path: Path) -> None:
    done, calls = run_script(tmp_path, present=(), uid=1000)
    assert done.returncode == 1
    assert "root or passwordless sudo" in done.stderr and "chromium chromium-driver default-jre-headless" in done.stderr
    assert calls == []


def test_a_missing_gcloud_is_named(tmp_path: Path) -> None:
    done, _ = run_script(tmp_path, present=("chromium", "chromedriver", "java"))
    assert done.returncode == 0
    assert "gcloud is not installed" in done.stderr and "google-cloud-cli-pubsub-emulator" in done.stderr


def test_the_readme_says_what_make_test_needs() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Quick start")
    quick_start = text[start:text.index("\n## ", start + 1)]
    for needed in ("root", "passwordless sudo", "apt-get", "Java runtime", "gcloud", "Firestore", "Pub/Sub",
                   "emulator", "dpkg lock", "tests/support/system_deps.sh", "GOLDTHREAD_APT_LOCK_WAIT_SECONDS"):
        assert needed in quick_start, f"README's quick start does not say {needed!r}"
    assert os.access(SCRIPT, os.R_OK)
