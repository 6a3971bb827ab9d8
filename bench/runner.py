"""Run measurements in fresh processes, against this checkout or another git ref, and take medians.

A ``Version`` is a tree whose ``shared/`` holds the ``goldthread`` to measure: this checkout, or a
``git worktree`` of ``--compare-ref`` in a temporary directory. The bench code itself always comes
from this checkout; ``PYTHONPATH`` puts the version's ``shared/`` first, so ``import goldthread``
resolves there (each result records the file it imported, and the runner checks it).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.worker import RESULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Version:
    """A tree to measure: its label (``working tree`` or the ref) and its root."""

    label: str
    root: Path

    @property
    def shared(self) -> Path:
        """The directory holding this version's ``goldthread`` package."""
        return self.root / "shared"


@dataclass
class Measurement:
    """One thing to time: a worker target at a size, with its keyword arguments."""

    target: str
    n: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float = 3600.0


def git(*args: str, cwd: Path = REPO_ROOT) -> str:
    """Run git and return its stdout (raises on failure)."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Version]:
    """Check ``ref`` out into a temporary worktree for the duration of the block."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tmp = Path(tempfile.mkdtemp(prefix="gt-bench-ref-"))
    path = tmp / "tree"
    git("worktree", "add", "--detach", str(path), sha)
    try:
        yield Version(f"{ref} ({sha[:8]})", path)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(path))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")


def current_version() -> Version:
    """This checkout, labelled with its commit (and ``+dirty`` when files differ)."""
    try:
        sha = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "shared"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return Version("working tree", REPO_ROOT)
    return Version(f"HEAD {sha}{'+dirty' if dirty else ''}", REPO_ROOT)


def run_once(version: Version, m: Measurement) -> dict[str, Any]:
    """Run ``m`` once in a fresh interpreter against ``version``; returns the worker's result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(version.shared), str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.setdefault("PYTHONHASHSEED", "0")
    spec = json.dumps({"target": m.target, "kwargs": {"n": m.n, **m.kwargs}})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.worker", spec], cwd=str(REPO_ROOT), env=env, capture_output=True,
            text=True, timeout=m.timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {m.timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (proc.stderr or proc.stdout)[-1500:]
        return {"error": f"worker exited {proc.returncode} without a result: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
    imported = Path(result.get("goldthread", ""))
    if "error" not in result and version.shared.resolve() not in imported.resolve().parents:
        result["error"] = f"measured the wrong goldthread: {imported} is not under {version.shared}"
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds and peak memory over successful runs; the details of the median run."""
    ok = [r for r in runs if "error" not in r and r.get("seconds") is not None]
    if not ok:
        errors = [r.get("error") or r.get("skipped") for r in runs]
        skipped = [r["skipped"] for r in runs if r.get("skipped")]
        return {"skipped": skipped[0]} if skipped else {"error": errors[0] if errors else "no runs"}
    ok.sort(key=lambda r: r["seconds"])
    middle = ok[(len(ok) - 1) // 2]
    return {
        **middle,
        "seconds": statistics.median(r["seconds"] for r in ok),
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in ok),
        "runs": len(ok),
        "all_seconds": [round(r["seconds"], 4) for r in ok],
    }


def machine() -> str:
    """A one-line description of this machine: CPU, cores, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
