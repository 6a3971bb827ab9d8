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


def reconciliation_failures(runs: Sequence[JobMetadata]) -> list[JobMetadata]:
    """Finished runs (SUCCEEDED or PARTIAL) whose counts do not reconcile."""
    return [
        r for r in runs
        if r.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) and r.published != r.processed
    ]


def print_table_counts(console: Console, counts: dict[str, int]) -> None:
    """Rows per table."""
    table = Table(title="Warehouse rows per table")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    console.print(table)


def print_runs(console: Console, runs: Sequence[JobMetadata], limit: int = 40) -> None:
    """Runs with their counts; the status column is what a person checks first."""
    table = Table(title=f"Runs (newest {min(limit, len(runs))} of {len(runs)})")
    for col in ("run_id", "job", "ds", "status", "published", "loaded", "dup", "dead", "reconciled"):
        table.add_column(col, justify="right" if col in ("published", "loaded", "dup", "dead") else "left")
    colors = {"SUCCEEDED": "green", "PARTIAL": "yellow", "FAILED": "red", "STALLED": "red", "RUNNING": "cyan"}
    for r in runs[:limit]:
        table.add_row(
            r.run_id, r.loop, r.ds.isoformat(), f"[{colors[r.status.value]}]{r.status.value}",
            str(r.published), str(r.loaded), str(r.duplicates), str(r.dead_lettered),
            "yes" if r.reconciled else "no",
        )
    console.print(table)


def print_run_summary(console: Console, runs: Sequence[JobMetadata]) -> None:
    """Runs per job and status, and the reconciliation verdict."""
    counts = Counter((r.loop, r.status.value) for r in runs)
    table = Table(title="Runs per job and status")
    statuses = [s.value for s in RunStatus]
    table.add_column("job")
    for s in statuses:
        table.add_column(s, justify="right")
    for job in sorted({r.loop for r in runs}):
        table.add_row(job, *(str(counts.get((job, s), 0)) for s in statuses))
    console.print(table)
    failures = reconciliation_failures(runs)
    published = sum(r.published for r in runs)
    accounted = sum(r.processed for r in runs)
    verdict = "[green]all finished runs reconcile" if not failures else f"[red]{len(failures)} runs do not reconcile"
    console.print(f"published {published} = loaded + duplicates + dead-lettered {accounted}: {verdict}")


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
