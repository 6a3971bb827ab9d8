"""The screens a person reads: one printer per report (status, a dead letter, a backfill, a patch, the canary).

Each takes the report a library function returned and prints rich tables and plain sentences, never a Python
``repr``; the ``--json`` shape of the same report is printed by the command itself (``output.print_json``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from goldthread.console import output
from goldthread.console.letters import LetterView
from goldthread.console.plan import BackfillReport
from goldthread.console.status import StatusReport


def print_status(console: Console, report: StatusReport) -> None:
    """Per job its last and next run; freshness against the schedule; open letters by reason; the canary; and
    what needs a person."""
    now = report.generated_at
    rows = []
    for job in report.jobs:
        last = job["last_run"] or {}
        upcoming = job["next_run_at"]
        rows.append({"job": job["job"], "last run": output.status_text(last["status"]) if last else "never",
                     "ds": last.get("ds"), "age": output.span(last.get("age_seconds")),
                     "published": last.get("published"), "loaded": last.get("loaded"),
                     "dead": last.get("dead_lettered"), "next run (UTC)": output.when(upcoming) or "by hand",
                     "next in": output.span((upcoming - now).total_seconds()) if upcoming else ""})
    output.print_rows(console, f"goldthread status at {output.when(now)} UTC", rows)
    output.print_rows(console, "Freshness against the schedule", [
        {"job": f["job"], "table": f["table"] or "", "verdict": f["status"], "due at": output.when(f["due_at"]),
         "last run": f["last_status"] or "", "table last loaded": output.when(f["table_last_loaded_at"])}
        for f in report.freshness])
    if report.dead_letters:
        output.print_rows(console, "Open dead letters by reason",
                          [{"reason": r, "letters": n} for r, n in report.dead_letters.items()])
    else:
        console.print("open dead letters: none")
    canary = report.canary
    if canary is None:
        console.print("canary: never run")
    else:
        broken = f", broken at {canary['broken_hop']}" if canary["broken_hop"] else ""
        console.print(f"canary: {escape(canary['status'])} {canary['run_id']}, "
                      f"{output.span(canary['age_seconds'])} ago{broken}")
    if report.ok:
        console.print("[green]healthy: nothing needs a person")
        return
    console.print(f"[red]needs a person ({len(report.problems)}):")
    for problem in report.problems:
        console.print(f"  - {escape(problem)}", soft_wrap=True)


def print_letter(console: Console, view: LetterView) -> None:
    """A dead letter: its fields, every field error, its payload, and its hot document now and whether it validates."""
    output.print_pairs(console, f"dead letter {view.letter['id']} ({view.letter['state']})", view.letter)
    output.print_rows(console, "field errors", view.errors)
    console.print("payload:")
    output.print_json(console, view.payload)
    record = f"{view.collection}/{view.letter['record']}"
    if view.collection is None:
        console.print("hot document: none (this loop reads the broker)")
    elif view.document is None:
        console.print(f"hot document: {record} does not exist now")
    else:
        console.print(f"hot document {record} now:")
        output.print_json(console, view.document)
        if view.validates_now:
            console.print(f"[green]validates now[/]: goldthread replay --id {view.letter['id']} republishes it")
        else:
            output.print_rows(console, "does not validate now", view.validation_errors)
        output.print_pairs(console, "goldthread's marks of the record (ledger)", view.marks)


def print_backfill(console: Console, report: BackfillReport) -> None:
    """A line per day, then days per status (and, for a dry run, what would be published)."""
    title = f"backfill {report.loop} {report.start}..{report.end}" + (" (dry run)" if report.dry_run else "")
    output.print_rows(console, title, [{k: v for k, v in d.items() if k != "records"} for d in report.days])
    console.print(", ".join(f"{status}: {n}" for status, n in report.statuses.items()))
    if report.dry_run:
        console.print(f"would publish {report.to_dict()['due']} records over {len(report.days)} days; "
                      "nothing was published")


def print_patch(console: Console, which: str, dry_run: bool, changes: list[dict[str, Any]],
                summary: dict[str, Any], limit: int) -> None:
    """The changes a patch made (or would make), then its summary in sentences and tables."""
    output.print_rows(console, f"{'would change' if dry_run else 'changed'}: {len(changes)}", changes, limit)
    if which == "fees":
        console.print(f"changed: {summary['changed']}; unchanged: {summary['unchanged']}")
        if summary["days"]:
            output.print_rows(console, "days", [{"day": d, "fees": s} for d, s in sorted(summary["days"].items())])
        for u in summary["unfinalised"]:
            console.print(f"[yellow]unfinalised {u['position_id']}: {escape(str(u['why']))}", soft_wrap=True)
    else:
        console.print(f"still unfilled at the broker: {len(summary['unfilled'])}; "
                      f"fact_trades rows corrected: {summary['warehouse_rows']}")


def print_canary(console: Console, result: Any) -> None:
    """Every hop of a canary run with its time against its budget, and the broken hop."""
    table = Table(title=f"Golden Thread canary {result.run_id}: {'whole' if result.ok else 'BROKEN'}")
    for col in ("hop", "status", "ms", "budget ms", "detail"):
        table.add_column(col, justify="right" if col in ("ms", "budget ms") else "left", overflow="fold")
    colors = {"ok": "green", "FAILED": "red", "skipped": "yellow"}
    for hop in result.hops:
        table.add_row(hop.hop, f"[{colors[hop.status]}]{hop.status}", "" if hop.ms is None else f"{hop.ms:.1f}",
                      "" if hop.budget_ms is None else f"{hop.budget_ms:.0f}", hop.detail)
    console.print(table)
    if not result.ok:
        console.print(f"[red]broken hop: {result.broken_hop}[/] ({escape(str(result.error))})", soft_wrap=True)
