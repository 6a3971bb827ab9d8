"""``goldthread``: the command line, a thin face on the library.

Every command calls one library function and prints its result; ``goldthread <command> --help``
explains each. The README documents every command (a test checks it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from goldthread import logs
from goldthread.config import load_settings, log_target
from goldthread.errors import ConcurrentRunError, ConfigError, GoldthreadError, NotReadyError
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context

console = Console(width=None if sys.stdout.isatty() else 140)
LOOP_NAMES = [loop.value for loop in Loop]


class Exit(IntEnum):
    """The exit codes of ``run``, ``backfill``, ``replay`` and ``patch`` (README "Exit codes"), so cron and CI
    can tell a refusal from a failure and a partial day from a clean one."""

    OK = 0
    """Everything published was loaded (or was already there), or there was nothing to do."""
    FAILED = 1
    """A run failed or stalled, or an error stopped the command."""
    REFUSED = 2
    """Nothing was attempted: bad arguments, a day not ready or in the future, another dispatch holds the day."""
    PARTIAL = 3
    """The run finished but some items were dead-lettered (or, for a replay, some letters still fail)."""


_EXIT_OF_STATUS = {"SUCCEEDED": Exit.OK, "RUNNING": Exit.OK, "PARTIAL": Exit.PARTIAL, "FAILED": Exit.FAILED,
                   "STALLED": Exit.FAILED, "NOT_READY": Exit.REFUSED}


def exit_for(statuses: Sequence[str]) -> Exit:
    """The exit code of a command that ran runs of these statuses: the worst one (FAILED, then PARTIAL, then
    REFUSED), OK when every run succeeded (or is still being delivered in the cloud) or there were none."""
    codes = {_EXIT_OF_STATUS.get(s, Exit.FAILED) for s in statuses}
    for code in (Exit.FAILED, Exit.PARTIAL, Exit.REFUSED):
        if code in codes:
            return code
    return Exit.OK


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from exc


def _context() -> Context:
    ctx = Context(load_settings())
    ctx.warehouse  # noqa: B018 - opened first: a local command waits here for another holding the file, before any run
    if ctx.settings.bus == "local":
        from goldthread.pipeline.local_runtime import wire_local_bus

        wire_local_bus(ctx)
    return ctx


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate weeks of a trading bot and archive them through every loop; print the summary."""
    from goldthread import report
    from goldthread.demo import run_demo
    from goldthread.pipeline.dead_letters import list_dead_letters
    from goldthread.pipeline.runs import list_runs

    settings = load_settings()
    ctx, result = run_demo(settings, days=args.days, seed=args.seed, console=console, force=args.force)
    from goldthread.bi.runs_sync import sync_job_runs

    sync_job_runs(ctx)  # the warehouse copy of job_metadata that pipeline health reads
    console.rule(f"demo {result.start} .. {result.end}: {len(result.steps)} scheduled jobs ran")
    report.print_table_counts(console, report.table_counts(ctx))
    report.print_dead_letters(console, list_dead_letters(ctx, include_replayed=True))
    runs = list_runs(ctx)
    report.print_run_summary(console, runs)
    for line in result.extras.get("notes", []):
        console.print(line)
    from goldthread.bi.canary import run_canary
    from goldthread.bi.dashboard import build_for_context

    canary = run_canary(ctx)
    console.print(f"golden thread canary: {'whole' if canary.ok else f'BROKEN at {canary.broken_hop}'} "
                  f"(run {canary.run_id})")
    console.print(f"data: {settings.home.resolve()}")
    console.print(f"logs: {logs.where()} (goldthread logs --run RUN_ID)")
    console.print(f"dashboard: {build_for_context(ctx, settings.home / 'dashboard.html')}")
    ctx.close()
    return 0 if not report.reconciliation_failures(runs) and canary.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    """Dispatch one loop for one day and deliver its items."""
    from goldthread.pipeline.local_runtime import run_loop

    ctx = _context()
    run = run_loop(ctx, args.loop, args.ds)
    console.print_json(run.model_dump_json())
    return exit_for([run.status.value])


def cmd_backfill(args: argparse.Namespace) -> int:
    """Run one loop for every day from --start to --end, with a progress bar."""
    from goldthread.errors import FutureDayError, NotReadyError
    from goldthread.loops import get_loop
    from goldthread.pipeline.local_runtime import run_loop

    ctx = _context()
    try:  # a range reaching a day the loop refuses for good (a future day) starts no run at all
        get_loop(args.loop).check_ready(ctx, args.end)
    except FutureDayError:
        raise
    except NotReadyError:
        pass  # not ready yet: reported day by day below
    days = [args.start + dt.timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    statuses: dict[str, int] = {}
    with Progress(console=console) as progress:
        task = progress.add_task(f"backfill {args.loop}", total=len(days))
        for day in days:
            try:
                status = run_loop(ctx, args.loop, day).status.value
            except NotReadyError as exc:
                console.print(f"[yellow]{day}: {exc}")
                status = "NOT_READY"
            statuses[status] = statuses.get(status, 0) + 1
            progress.advance(task)
    console.print(", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())))
    ran = [status for status in statuses if status != "NOT_READY"]  # days not ready yet refuse only if all do
    return exit_for(ran or list(statuses))


def cmd_runs(args: argparse.Namespace) -> int:
    """List runs from job_metadata (marking stalled ones first)."""
    from goldthread import report
    from goldthread.pipeline.runs import list_runs, mark_stalled

    ctx = _context()
    mark_stalled(ctx)
    runs = list_runs(ctx, args.job, args.ds)
    report.print_runs(console, runs, args.limit)
    report.print_run_summary(console, runs)
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List dead-lettered items with their field-level reasons."""
    from goldthread import report
    from goldthread.pipeline.dead_letters import list_dead_letters

    ctx = _context()
    letters = list_dead_letters(ctx, args.loop, args.reason, args.ids, include_replayed=args.all)
    report.print_dead_letters(console, letters, args.limit)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-validate dead letters and republish those that now pass (--dry-run only reports)."""
    from goldthread.adapters.local_bus import LocalBus
    from goldthread.pipeline.replay import replay

    ctx = _context()
    result = replay(ctx, args.loop, args.reason, args.ids, dry_run=args.dry_run)
    failing = result.still_failing + result.not_replayable
    if args.dry_run:
        console.print(f"would pass: {len(result.would_pass)}; still failing: {len(result.still_failing)}; "
                      f"not replayable: {len(result.not_replayable)}")
    for entry in failing:
        console.print(f"  [yellow]{entry['loop']} {entry['doc_id']}[/]: {entry['why']}")
    statuses = ["PARTIAL"] if failing else []
    if result.run is not None:
        if isinstance(ctx.bus, LocalBus):
            ctx.bus.run_until_idle()
        from goldthread.pipeline.runs import get_run

        run = get_run(ctx, result.run.run_id) or result.run
        console.print(f"replayed {len(result.would_pass)} dead letters as {run.published} items under run "
                      f"{run.run_id}: loaded {run.loaded}, duplicates {run.duplicates}, dead-lettered again "
                      f"{run.dead_lettered} ({run.status.value}); still failing: {len(failing)}")
        statuses.append(run.status.value)
    elif not args.dry_run:
        console.print(f"nothing to replay; still failing: {len(failing)}")
    return exit_for(statuses)


def cmd_patch(args: argparse.Namespace) -> int:
    """Run a maintenance patch: `fees --ds DATE` (T+1 fee reconciliation) or `prices` (missing fill prices)."""
    from rich.table import Table

    ctx = _context()
    if args.which == "fees":
        if args.ds is None:
            raise GoldthreadError("patch fees needs --ds DATE (the trading day whose fees were posted)")
        from goldthread.patches.fee_patch import patch_fees

        fees = patch_fees(ctx, args.ds, dry_run=args.dry_run)
        changes, extra = fees.changes, [f"unchanged: {fees.unchanged}", f"days: {fees.days}"]
        extra += [f"[yellow]unfinalised {u['position_id']}: {u['why']}" for u in fees.unfinalised]
        run = fees.run
    else:
        from goldthread.patches.price_patch import patch_prices

        prices = patch_prices(ctx, dry_run=args.dry_run)
        changes = prices.changes
        extra = [f"still unfilled at the broker: {len(prices.unfilled)}",
                 f"fact_trades rows corrected: {prices.warehouse_rows}"]
        run = prices.run
    table = Table(title=f"{'would change' if args.dry_run else 'changed'}: {len(changes)}")
    for col in sorted({k for c in changes for k in c}):
        table.add_column(col)
    for change in changes[: args.limit]:
        table.add_row(*(str(change.get(col, "")) for col in sorted({k for c in changes for k in c})))
    console.print(table)
    for line in extra:
        console.print(line)
    if run is not None:
        console.print(f"run {run.run_id}: {run.status.value}")
    return exit_for([run.status.value] if run is not None else [])


def cmd_schema(args: argparse.Namespace) -> int:
    """Generate (or --check) the BigQuery schema files, DuckDB DDL and docs/schema.md from the models."""
    from goldthread.schema.generate import stale_artifacts, write_artifacts

    if args.action == "check":
        stale = stale_artifacts()
        for path in stale:
            console.print(f"[red]stale: {path}")
        return 1 if stale else 0
    for path in write_artifacts():
        console.print(f"wrote {path}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Build the self-contained HTML dashboard from the marts (offline, no CDN); --serve serves it on 127.0.0.1."""
    from goldthread.bi.dashboard import build_for_context, make_server

    ctx = _context()
    path = build_for_context(ctx, args.out or ctx.settings.home / "dashboard.html")
    ctx.close()
    console.print(f"dashboard: {path}")
    if args.serve:
        server = make_server(path, args.port)
        console.print(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """Send a canary record along the Golden Thread and time every hop; exit 1 naming the broken hop."""
    from rich.table import Table

    from goldthread.bi.canary import run_canary

    ctx = _context()
    result = run_canary(ctx, timeout=args.timeout)
    if args.json:
        console.print_json(data=result.to_dict())
    else:
        table = Table(title=f"Golden Thread canary {result.run_id}: {'whole' if result.ok else 'BROKEN'}")
        for col in ("hop", "status", "ms", "budget ms", "detail"):
            table.add_column(col, justify="right" if col in ("ms", "budget ms") else "left", overflow="fold")
        colors = {"ok": "green", "FAILED": "red", "skipped": "yellow"}
        for hop in result.hops:
            table.add_row(hop.hop, f"[{colors[hop.status]}]{hop.status}", "" if hop.ms is None else f"{hop.ms:.1f}",
                          "" if hop.budget_ms is None else f"{hop.budget_ms:.0f}", hop.detail)
        console.print(table)
        if not result.ok:
            console.print(f"[red]broken hop: {result.broken_hop}[/] ({result.error})")
    ctx.close()
    return 0 if result.ok else 1


def cmd_trace(args: argparse.Namespace) -> int:
    """Show one record's journey: hot document, work items, warehouse row or dead letter, patches, mart rows."""
    from goldthread.bi.trace import print_trace, trace

    ctx = _context()
    report = trace(ctx, args.id)
    if args.json:
        console.print_json(data=report.to_dict())
    else:
        print_trace(console, report, args.limit)
    ctx.close()
    return 0 if report.found else 1


def cmd_logs(args: argparse.Namespace) -> int:
    """Print one run's log lines from GOLDTHREAD_HOME/logs, rotated files included; --json prints them raw."""
    from goldthread.log_files import human_line, run_lines

    directory = load_settings().log_dir
    lines = run_lines(directory, args.run)
    if not lines:
        console.print(f"[red]not found:[/] no log lines of run {args.run} in {directory}")
        return Exit.FAILED
    for line in lines:
        console.out(line if args.json else human_line(line), highlight=False)
    return Exit.OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each sub-command's help is its function's docstring."""
    parser = argparse.ArgumentParser(prog="goldthread", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=(func.__doc__ or "").splitlines()[0], description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo)
    p.add_argument("--days", type=int, default=21, help="days of trading to simulate (default 21)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--force", action="store_true",
                   help="reset GOLDTHREAD_HOME even if it holds data the demo did not write (deletes it)")
    p = add("run", cmd_run)
    p.add_argument("loop", choices=LOOP_NAMES)
    p.add_argument("--ds", type=_date, required=True, help="partition day, YYYY-MM-DD (UTC)")
    p = add("backfill", cmd_backfill)
    p.add_argument("loop", choices=LOOP_NAMES)
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p = add("runs", cmd_runs)
    p.add_argument("--job", help="loop, patch, replay or canary")
    p.add_argument("--ds", type=_date)
    p.add_argument("--limit", type=int, default=40)
    p = add("dead-letters", cmd_dead_letters)
    p.add_argument("action", choices=["list"])
    p.add_argument("--loop", choices=LOOP_NAMES)
    p.add_argument("--reason", help="reason code, e.g. VALIDATION, SCD_CONFLICT, MAX_ATTEMPTS")
    p.add_argument("--id", dest="ids", action="append", help="dead-letter or document id (repeatable)")
    p.add_argument("--all", action="store_true", help="include dead letters already replayed")
    p.add_argument("--limit", type=int, default=50)
    p = add("replay", cmd_replay)
    p.add_argument("--loop", choices=LOOP_NAMES)
    p.add_argument("--reason")
    p.add_argument("--id", dest="ids", action="append")
    p.add_argument("--dry-run", action="store_true", help="show what would pass; publish nothing")
    p = add("patch", cmd_patch)
    p.add_argument("which", choices=["fees", "prices"])
    p.add_argument("--ds", type=_date, help="trading day (fees)")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--limit", type=int, default=30)
    p = add("schema", cmd_schema)
    p.add_argument("action", choices=["generate", "check"])
    p = add("dashboard", cmd_dashboard)
    p.add_argument("--out", type=Path, help="where to write the HTML (default GOLDTHREAD_HOME/dashboard.html)")
    p.add_argument("--serve", action="store_true", help="serve it on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=8050)
    p = add("canary", cmd_canary)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery (default 30)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = add("trace", cmd_trace)
    p.add_argument("id", help="signal, position, run or dead-letter id")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.add_argument("--limit", type=int, default=30, help="rows shown per stage")
    p = add("logs", cmd_logs)
    p.add_argument("--run", required=True, help="run id (as `runs` and `trace` show it)")
    p.add_argument("--json", action="store_true", help="print the raw JSON lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``goldthread`` command."""
    logs.configure(level=os.environ.get("GOLDTHREAD_LOG_LEVEL", "ERROR"), files=log_target())
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConcurrentRunError, NotReadyError, ConfigError) as exc:
        console.print(f"[red]refused:[/] {exc}")
        return Exit.REFUSED
    except GoldthreadError as exc:
        console.print(f"[red]error:[/] {exc}")
        return Exit.FAILED


if __name__ == "__main__":
    sys.exit(main())
