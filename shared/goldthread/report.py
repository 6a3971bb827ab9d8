"""Summaries a person reads in the terminal: rows per table, runs and their reconciliation, dead letters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.models.warehouse import ALL_TABLES
from goldthread.pipeline.context import Context
from goldthread.ports.warehouse import safe_identifier


def table_counts(ctx: Context) -> dict[str, int]:
    """Rows per warehouse table."""
    return {
        m.__table__: int(ctx.warehouse.query(f"SELECT COUNT(*) AS n FROM {safe_identifier(m.__table__)}")[0]["n"])
        for m in ALL_TABLES
    }


FINISHED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
"""Statuses of runs whose dispatch completed and whose every item has an outcome: the ones that reconcile."""


def reconciliation_failures(runs: Sequence[JobMetadata]) -> list[JobMetadata]:
    """Finished runs (SUCCEEDED or PARTIAL) whose counts do not reconcile."""
    return [r for r in runs if r.status in FINISHED and not r.reconciled]


def still_due(run: JobMetadata) -> int | None:
    """Records the run's dispatch found but had not published when it stopped (None if it never said)."""
    due = run.details.get("due")
    if run.dispatched_at is not None or not isinstance(due, int):
        return None
    return max(due - run.published, 0)


def print_table_counts(console: Console, counts: dict[str, int]) -> None:
    """Rows per table."""
    table = Table(title="Warehouse rows per table")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    console.print(table)


def print_runs(console: Console, runs: Sequence[JobMetadata], limit: int = 40) -> None:
    """Runs with their counts; the status column is what a person checks first. ``reconciled`` says ``yes``
    or ``no`` only for a finished run; an unfinished one says ``unfinished`` (and how many records its
    dispatch still had to publish, when it stopped half-way)."""
    table = Table(title=f"Runs (newest {min(limit, len(runs))} of {len(runs)})")
    for col in ("run_id", "job", "ds", "status", "published", "loaded", "dup", "dead", "reconciled"):
        table.add_column(col, justify="right" if col in ("published", "loaded", "dup", "dead") else "left")
    colors = {"SUCCEEDED": "green", "PARTIAL": "yellow", "FAILED": "red", "STALLED": "red", "RUNNING": "cyan"}
    for r in runs[:limit]:
        if r.status in FINISHED:
            verdict = "yes" if r.reconciled else "no"
        else:
            due = still_due(r)
            verdict = "unfinished" + (f", {due} not published" if due else "")
        table.add_row(
            r.run_id, r.loop, r.ds.isoformat(), f"[{colors[r.status.value]}]{r.status.value}",
            str(r.published), str(r.loaded), str(r.duplicates), str(r.dead_lettered), verdict,
        )
    console.print(table)


def print_run_summary(console: Console, runs: Sequence[JobMetadata]) -> None:
    """Runs per job and status, the reconciliation verdict of the finished runs, and the unfinished ones.

    Only finished runs (SUCCEEDED, PARTIAL: the dispatch completed and every item has an outcome) are summed
    into the equation, and it is printed with ``=`` only when it holds; RUNNING, STALLED and FAILED runs are
    listed apart with their own counts, never summed into a claim they cannot back.
    """
    counts = Counter((r.loop, r.status.value) for r in runs)
    table = Table(title="Runs per job and status")
    statuses = [s.value for s in RunStatus]
    table.add_column("job")
    for s in statuses:
        table.add_column(s, justify="right")
    for job in sorted({r.loop for r in runs}):
        table.add_row(job, *(str(counts.get((job, s), 0)) for s in statuses))
    console.print(table)
    finished = [r for r in runs if r.status in FINISHED]
    failures = reconciliation_failures(finished)
    published = sum(r.published for r in finished)
    accounted = sum(r.processed for r in finished)
    sign = "=" if published == accounted else "!="
    verdict = ("[green]all finished runs reconcile" if not failures
               else f"[red]{len(failures)} finished runs do not reconcile")
    console.print(f"{len(finished)} finished runs: published {published} {sign} "
                  f"loaded + duplicates + dead-lettered {accounted}: {verdict}")
    unfinished = [r for r in runs if r.status not in FINISHED]
    if not unfinished:
        return
    by_status = Counter(r.status.value for r in unfinished)
    console.print(
        f"[yellow]{len(unfinished)} unfinished runs ("
        + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        + "), not summed above:"
    )
    for r in unfinished:
        due = still_due(r)
        console.print(
            f"  {r.run_id} {r.status.value}: published {r.published}, loaded {r.loaded}, "
            f"duplicates {r.duplicates}, dead-lettered {r.dead_lettered}, "
            f"{max(r.published - r.processed, 0)} published without an outcome"
            + (f", {due} found but not published" if due else "")
        )


def print_dead_letters(console: Console, letters: Sequence[dict[str, Any]], limit: int = 30) -> None:
    """Dead letters with their reasons."""
    table = Table(title=f"Dead letters ({len(letters)})")
    for col in ("loop", "doc_id", "reason", "error", "replayed by"):
        table.add_column(col, overflow="fold")
    for d in letters[:limit]:
        table.add_row(
            d["loop"], d["doc_id"], d["reason_code"], str(d["error_message"])[:160], str(d.get("replay_run_id") or "")
        )
    console.print(table)
