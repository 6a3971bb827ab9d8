"""goldthread: the command line, a thin face on the library.

Every command calls one library function (or one in ``goldthread.console``) and prints its result: rich tables for
a person, one JSON shape with ``--json`` (README "JSON output"). ``goldthread <command> --help`` explains each;
the README documents every command and option (a test checks it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from goldthread import logs
from goldthread.config import load_settings, log_target
from goldthread.console import output
from goldthread.console.checks import arg_count, arg_date, arg_port, arg_seconds
from goldthread.errors import (
    ConcurrentRunError,
    ConfigError,
    GoldthreadError,
    NotFoundError,
    NotReadyError,
    RefusedError,
)
from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context

console = Console(width=None if sys.stdout.isatty() else 140)
LOOP_NAMES = [loop.value for loop in Loop]
log = logs.get_logger("cli")


class Exit(IntEnum):
    """The exit codes of every command (README "Exit codes"), so cron and CI can tell a refusal from a failure
    and a partial day from a clean one."""

    OK = 0
    """Everything published was loaded (or was already there), or there was nothing to do; ``status``: healthy."""
    FAILED = 1
    """A run failed or stalled, an id was not found, or an error stopped the command."""
    REFUSED = 2
    """Nothing was attempted: bad arguments, a day not ready or in the future, another dispatch holds the day."""
    PARTIAL = 3
    """The run finished but some items were dead-lettered (for a replay, some letters still fail); ``status``:
    something needs a person."""


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


def _context(reads_only: bool = False) -> Context:
    """The context of a command: the home checked first (``console.checks.prepare_home``), its stores opened
    read-only when the command only reads and the home cannot be written."""
    from goldthread.console.checks import prepare_home

    ctx = Context(prepare_home(load_settings(), reads_only))
    ctx.warehouse  # noqa: B018 - opened first: a local command waits here for another holding the file, before any run
    if ctx.settings.bus == "local" and not reads_only:
        from goldthread.pipeline.local_runtime import wire_local_bus

        wire_local_bus(ctx)
    return ctx


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate weeks of a trading bot and archive them through every loop; print the summary."""
    from goldthread import report
    from goldthread.demo import run_demo
    from goldthread.ledger.runs import list_runs
    from goldthread.pipeline.dead_letters import list_dead_letters

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
    from goldthread.console.checks import check_day
    from goldthread.pipeline.local_runtime import run_loop

    check_day(args.loop, args.ds, _today())
    ctx = _context()
    run = run_loop(ctx, args.loop, args.ds, sweep=True if args.sweep else None)
    record = output.run_record(run, ctx.now())
    ctx.close()
    output.show(console, args.json, {"run": record},
                lambda: output.print_pairs(console, f"run {run.run_id}: {run.status.value}", record))
    return exit_for([run.status.value])


def cmd_backfill(args: argparse.Namespace) -> int:
    """Run one loop for every day from --start to --end with a progress bar (--dry-run: records due per day)."""
    from rich.progress import Progress

    from goldthread.console import plan, screens
    from goldthread.console.checks import check_day, check_range
    from goldthread.pipeline.local_runtime import run_loop

    check_range(args.start, args.end)
    check_day(args.loop, args.end, _today())
    ctx = _context()
    plan.check_range_ready(ctx, args.loop, args.end)  # a day the loop refuses for good starts no run at all
    if args.dry_run:
        report = plan.dry_run(ctx, args.loop, args.start, args.end)
    else:
        with Progress(console=console, disable=args.json) as progress:
            task = progress.add_task(f"backfill {args.loop}", total=(args.end - args.start).days + 1)
            def run_day(ctx: Context, loop: str, day: dt.date) -> JobMetadata:
                return run_loop(ctx, loop, day, sweep=True if args.sweep and day == args.end else None)

            report = plan.backfill(ctx, args.loop, args.start, args.end, run_day,
                                   on_day=lambda _day: progress.advance(task))
    ctx.close()
    output.show(console, args.json, report.to_dict(), lambda: screens.print_backfill(console, report))
    if args.dry_run:
        return Exit.OK
    statuses = [str(d["status"]) for d in report.days]
    ran = [s for s in statuses if s != "NOT_READY"]  # days not ready yet refuse only if all do
    return exit_for(ran or statuses)


def cmd_runs(args: argparse.Namespace) -> int:
    """List runs from job_metadata with start, duration and counts (marking stalled ones first, unless read-only)."""
    from goldthread import report
    from goldthread.console.status import KNOWN_JOBS
    from goldthread.ledger.runs import list_runs, mark_stalled

    ctx = _context(reads_only=True)
    if not ctx.settings.read_only:
        mark_stalled(ctx)
    runs = list_runs(ctx, args.job, args.ds)
    if args.job and not runs and args.job not in KNOWN_JOBS:
        raise NotFoundError(f"not found: no job {args.job!r} (jobs: {', '.join(KNOWN_JOBS)})")
    if args.status:
        runs = [r for r in runs if r.status.value == args.status]
    if args.since:
        runs = [r for r in runs if r.started_at.date() >= args.since]
    now = ctx.now()
    ctx.close()
    if args.json:
        output.print_json(console, {"runs": [output.run_record(r, now) for r in runs[: args.limit]],
                                    "total": len(runs), "summary": output.summary_counts(runs)})
        return Exit.OK
    output.print_runs(console, runs, args.limit, now)
    report.print_run_summary(console, runs)
    return Exit.OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List, show or discard dead letters: ids, reasons, payloads, the record as it is now."""
    from goldthread.console import letters, screens

    ctx = _context(reads_only=args.action in ("list", "show"))
    try:
        if args.action == "list":
            from goldthread.pipeline.dead_letters import list_dead_letters

            letters.check_ids(ctx, args.ids)
            found = list_dead_letters(ctx, args.loop, args.reason, args.ids, include_replayed=args.all)
            output.show(console, args.json, {"dead_letters": [output.letter_record(d, ctx.now())
                                                              for d in found[: args.limit]], "total": len(found)},
                        lambda: output.print_letters(console, found, args.limit, ctx.now()))
        elif args.action == "show":
            view = letters.show_dead_letter(ctx, args.id)
            output.show(console, args.json, view.to_dict(), lambda: screens.print_letter(console, view))
        else:
            record = letters.discard(ctx, args.id, args.reason)
            output.show(console, args.json, {"dead_letter": record}, lambda: console.print(
                f"discarded {record['id']} ({record['loop']} {record['record']}) by {record['discarded_by']}: "
                f"{escape(str(record['discard_reason']))}"))
    finally:
        ctx.close()
    return Exit.OK


def cmd_hot(args: argparse.Namespace) -> int:
    """Read a hot document (get), or validate one and write it through the writer API (put)."""
    from goldthread.console import letters

    ctx = _context(reads_only=args.action == "get")
    try:
        if args.action == "get":
            result = letters.hot_get(ctx, args.collection, args.id)
        else:
            text = args.file.read_text(encoding="utf-8") if args.file else sys.stdin.read()
            try:
                result = letters.hot_put(ctx, args.collection, args.id, text)
            except letters.InvalidDocument as exc:
                if args.json:
                    output.print_json(console, {"error": str(exc), "errors": exc.errors, "exit_code": Exit.FAILED})
                else:
                    console.print(f"[red]refused, nothing written:[/] {escape(str(exc))}", soft_wrap=True)
                    output.print_rows(console, "field errors", exc.errors)
                return Exit.FAILED
    finally:
        ctx.close()
    if args.json:
        output.print_json(console, result)
    else:
        output.print_json(console, result["document"])
        if args.action == "put":
            console.print(f"[green]written[/] {args.collection}/{args.id} (archive and dead-letter marks cleared)")
        elif not result["validates"]:
            output.print_rows(console, "[red]does not validate now[/]", result["validation_errors"])
    return Exit.OK


def cmd_status(args: argparse.Namespace) -> int:
    """The pipeline at a glance: last and next run per job, open dead letters, freshness, the canary; exit 3 when
    something needs a person."""
    from goldthread.console import screens
    from goldthread.console.status import build_status

    ctx = _context(reads_only=True)
    report = build_status(ctx)
    ctx.close()
    output.show(console, args.json, report.to_dict(), lambda: screens.print_status(console, report))
    return Exit.OK if report.ok else Exit.PARTIAL


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-validate dead letters and republish those that now pass (--dry-run only reports)."""
    from goldthread.adapters.local_bus import LocalBus
    from goldthread.console.letters import check_ids
    from goldthread.ledger.runs import get_run
    from goldthread.pipeline.replay import replay

    ctx = _context()
    check_ids(ctx, args.ids)
    result = replay(ctx, args.loop, args.reason, args.ids, dry_run=args.dry_run)
    failing = result.still_failing + result.not_replayable
    statuses = ["PARTIAL"] if failing else []
    run = None
    if result.run is not None:
        if isinstance(ctx.bus, LocalBus):
            ctx.bus.run_until_idle()
        run = get_run(ctx, result.run.run_id) or result.run
        statuses.append(run.status.value)
    now = ctx.now()
    ctx.close()
    if args.json:
        output.print_json(console, {"dry_run": args.dry_run, "would_pass": result.would_pass,
                                    "still_failing": result.still_failing, "not_replayable": result.not_replayable,
                                    "run": output.run_record(run, now) if run else None})
        return exit_for(statuses)
    if args.dry_run:
        console.print(f"would pass: {len(result.would_pass)}; still failing: {len(result.still_failing)}; "
                      f"not replayable: {len(result.not_replayable)}")
    for entry in failing:
        console.print(f"  [yellow]{entry['loop']} {entry['doc_id']}[/]: {escape(str(entry['why']))}", soft_wrap=True)
    if run is not None:
        console.print(f"replayed {len(result.would_pass)} dead letters as {run.published} items under run "
                      f"{run.run_id}: loaded {run.loaded}, duplicates {run.duplicates}, dead-lettered again "
                      f"{run.dead_lettered} ({run.status.value}); still failing: {len(failing)}")
    elif not args.dry_run:
        console.print(f"nothing to replay; still failing: {len(failing)}")
    return exit_for(statuses)


def cmd_patch(args: argparse.Namespace) -> int:
    """Run a maintenance patch: fees --ds DATE (T+1 fee reconciliation) or prices (missing fill prices)."""
    from goldthread.console import screens

    if args.which == "fees" and args.ds is None:
        raise RefusedError("patch fees needs --ds DATE (the trading day whose fees were posted)")
    ctx = _context()
    summary: dict[str, Any]
    if args.which == "fees":
        from goldthread.console.checks import check_day
        from goldthread.patches.fee_patch import patch_fees

        check_day("patch fees", args.ds, _today())
        fees = patch_fees(ctx, args.ds, dry_run=args.dry_run)
        changes, run = fees.changes, fees.run
        summary = {"ds": fees.ds, "changed": len(changes), "unchanged": fees.unchanged, "days": fees.days,
                   "unfinalised": fees.unfinalised}
    else:
        from goldthread.patches.price_patch import patch_prices

        prices = patch_prices(ctx, dry_run=args.dry_run)
        changes, run = prices.changes, prices.run
        summary = {"changed": len(changes), "unfilled": prices.unfilled, "mismatched": prices.mismatched,
                   "warehouse_rows": prices.warehouse_rows}
    now = ctx.now()
    ctx.close()
    if args.json:
        output.print_json(console, {"patch": args.which, "dry_run": args.dry_run, "changes": changes,
                                    "summary": summary, "run": output.run_record(run, now) if run else None})
        return exit_for([run.status.value] if run is not None else [])
    screens.print_patch(console, args.which, args.dry_run, changes, summary, args.limit)
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
    from goldthread.bi.dashboard import build_dashboard, build_for_context, make_server

    ctx = _context(reads_only=True)
    out = args.out or ctx.settings.home / "dashboard.html"
    try:  # a read-only home's marts are read as they are (job_runs is synced only where it can be written)
        path = (build_dashboard(ctx.warehouse, out, now=ctx.now()) if ctx.settings.read_only
                else build_for_context(ctx, out))
    except OSError as exc:
        raise GoldthreadError(f"cannot write the dashboard to {str(out)!r}: {exc.strerror or exc}; "
                              "choose another place with --out") from None
    finally:
        ctx.close()
    console.print(f"dashboard: {path}")
    if args.serve:
        try:
            server = make_server(path, args.port)
        except OSError as exc:
            raise GoldthreadError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc} "
                                  "(another server holds the port? choose one with --port)") from None
        console.print(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return Exit.OK


def cmd_canary(args: argparse.Namespace) -> int:
    """Send a canary record along the Golden Thread and time every hop; exit 1 naming the broken hop."""
    from goldthread.bi.canary import run_canary
    from goldthread.console import screens

    ctx = _context()
    result = run_canary(ctx, timeout=args.timeout)
    ctx.close()
    output.show(console, args.json, result.to_dict(), lambda: screens.print_canary(console, result))
    return Exit.OK if result.ok else Exit.FAILED


def cmd_trace(args: argparse.Namespace) -> int:
    """Show one record's journey: hot document, work items, warehouse row or dead letter, patches, mart rows."""
    from goldthread.bi.trace import print_trace, trace

    ctx = _context(reads_only=True)
    report = trace(ctx, args.id)
    ctx.close()
    if not report.found:
        raise NotFoundError(f"not found: {args.id!r} names no signal, position, run or dead letter")
    output.show(console, args.json, report.to_dict(), lambda: print_trace(console, report, args.limit))
    return Exit.OK


def _plain(doc: str | None) -> str:
    """A docstring as help text: reStructuredText quotes dropped."""
    return (doc or "").replace("``", "")


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
    """The argument parser; each sub-command's help is its function's docstring, each option says its default."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="goldthread", description=_plain(__doc__).splitlines()[0],
                                     formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def add(name: str, func: Callable[[argparse.Namespace], int], within: Any = sub) -> argparse.ArgumentParser:
        doc = _plain(func.__doc__)
        p: argparse.ArgumentParser = within.add_parser(name, help=doc.splitlines()[0], description=doc,
                                                       formatter_class=formatter)
        p.set_defaults(func=func)
        return p

    def json_flag(p: argparse.ArgumentParser, help: str = "print one JSON document (README 'JSON output')") -> None:
        p.add_argument("--json", action="store_true", help=help)

    def loop_arg(p: argparse.ArgumentParser, *flags: str, **kw: Any) -> None:
        p.add_argument(*(flags or ("loop",)), type=str.lower, choices=LOOP_NAMES, **kw)

    p = add("demo", cmd_demo)
    p.add_argument("--days", type=arg_count, default=21, help="days of trading to simulate")
    p.add_argument("--seed", type=int, default=42, help="seed of the simulated bot (same seed, same days)")
    p.add_argument("--force", action="store_true",
                   help="reset GOLDTHREAD_HOME even if it holds data the demo did not write (deletes it)")
    p = add("run", cmd_run)
    loop_arg(p, help="the loop to run")
    p.add_argument("--ds", type=arg_date, required=True, help="partition day, YYYY-MM-DD (UTC), today at the latest")
    p.add_argument("--sweep", action="store_true",
                   help="read the whole collection, not only the day (otherwise GOLDTHREAD_SWEEP_EVERY_DAYS decides)")
    json_flag(p)
    p = add("backfill", cmd_backfill)
    loop_arg(p, help="the loop to run")
    p.add_argument("--start", type=arg_date, required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--end", type=arg_date, required=True, help="last day, YYYY-MM-DD (from --start to today)")
    p.add_argument("--dry-run", action="store_true", help="print the records due per day; start no run")
    p.add_argument("--sweep", action="store_true",
                   help="the last day's run reads the whole collection (records outside every day of the range)")
    json_flag(p)
    p = add("runs", cmd_runs)
    p.add_argument("--job", help="only this job: a loop, patch_fees, patch_prices, replay or canary")
    p.add_argument("--ds", type=arg_date, help="only runs of this partition day")
    p.add_argument("--status", type=str.upper, choices=[s.value for s in RunStatus], help="only runs in this status")
    p.add_argument("--since", type=arg_date, help="only runs started on or after this day (UTC)")
    p.add_argument("--limit", type=arg_count, default=40, help="rows shown (the summary counts every run)")
    json_flag(p)
    p = add("dead-letters", cmd_dead_letters)
    actions = p.add_subparsers(dest="action", required=True, metavar="action")
    q = add("list", cmd_dead_letters, actions)
    loop_arg(q, "--loop", help="only this loop's letters (any case)")
    q.add_argument("--reason", help="only this reason code, any case: VALIDATION, SCD_CONFLICT, MAX_ATTEMPTS ...")
    q.add_argument("--id", dest="ids", action="append", help="dead-letter or record id (repeatable)")
    q.add_argument("--all", action="store_true", help="include letters already replayed or discarded")
    q.add_argument("--limit", type=arg_count, default=50, help="rows shown")
    json_flag(q)
    q = add("show", cmd_dead_letters, actions)
    q.add_argument("id", help="dead-letter id (the id column of dead-letters list)")
    json_flag(q)
    q = add("discard", cmd_dead_letters, actions)
    q.add_argument("id", help="dead-letter id")
    q.add_argument("--reason", required=True, help="why it will not be fixed (stored with who and when)")
    json_flag(q)
    p = add("hot", cmd_hot)
    actions = p.add_subparsers(dest="action", required=True, metavar="action")
    for name in ("get", "put"):
        q = add(name, cmd_hot, actions)
        q.add_argument("collection", help="live_signals, rejected_signals, live_positions or strategies"
                       + (" (or job_metadata)" if name == "get" else ""))
        q.add_argument("id", help="document id (a strategy's is strategy_id:version)")
        if name == "put":
            q.add_argument("--file", type=Path, help="the document as JSON (default: read standard input)")
        json_flag(q)
    p = add("status", cmd_status)
    json_flag(p)
    p = add("replay", cmd_replay)
    loop_arg(p, "--loop", help="only this loop's letters")
    p.add_argument("--reason", help="only this reason code (any case)")
    p.add_argument("--id", dest="ids", action="append", help="dead-letter or record id (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show what would pass; publish nothing")
    json_flag(p)
    p = add("patch", cmd_patch)
    p.add_argument("which", choices=["fees", "prices"], help="fees (T+1 posted fees) or prices (missing fills)")
    p.add_argument("--ds", type=arg_date, help="trading day (fees only)")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--limit", type=arg_count, default=30, help="changes shown")
    json_flag(p)
    p = add("schema", cmd_schema)
    p.add_argument("action", choices=["generate", "check"], help="write the generated files, or list stale ones")
    p = add("dashboard", cmd_dashboard)
    p.add_argument("--out", type=Path, help="where to write the HTML (default GOLDTHREAD_HOME/dashboard.html)")
    p.add_argument("--serve", action="store_true", help="serve it on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=arg_port, default=8050, help="port of --serve (0: any free port)")
    p = add("canary", cmd_canary)
    p.add_argument("--timeout", type=arg_seconds, default=30.0, help="seconds to wait for delivery")
    json_flag(p)
    p = add("trace", cmd_trace)
    p.add_argument("id", help="signal, position, run or dead-letter id")
    p.add_argument("--limit", type=arg_count, default=30, help="rows shown per stage")
    json_flag(p)
    p = add("logs", cmd_logs)
    p.add_argument("--run", required=True, help="run id (as `runs` and `trace` show it)")
    json_flag(p, "print the raw JSON lines")
    return parser


def _refuse(args: argparse.Namespace, label: str, message: str, code: Exit) -> int:
    """Say in one line why the command stopped (as JSON with --json) and return its exit code."""
    if getattr(args, "json", False):
        output.print_json(console, {"error": message, "exit_code": int(code)})
    else:
        console.print(f"[red]{label}[/]{escape(message)}", soft_wrap=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the goldthread command: no input ends in a traceback (run with GOLDTHREAD_LOG_LEVEL=DEBUG
    to log one for an unexpected error)."""
    logs.configure(level=os.environ.get("GOLDTHREAD_LOG_LEVEL", "ERROR"), files=log_target())
    argv = list(sys.argv[1:] if argv is None else argv)
    from goldthread.console.checks import not_utf8

    bad = not_utf8(argv)
    if bad is not None:
        console.print(f"[red]refused:[/] argument '{escape(bad)}' is not UTF-8 text", soft_wrap=True)
        return Exit.REFUSED
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NotFoundError as exc:
        return _refuse(args, "", str(exc), Exit.FAILED)  # the message says "not found: ..."
    except (ConcurrentRunError, NotReadyError, ConfigError, RefusedError) as exc:
        return _refuse(args, "refused: ", str(exc), Exit.REFUSED)
    except GoldthreadError as exc:
        return _refuse(args, "error: ", str(exc), Exit.FAILED)
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        return _refuse(args, "error: ", f"{type(exc).__name__}: {exc} (GOLDTHREAD_LOG_LEVEL=DEBUG logs the traceback)",
                       Exit.FAILED)


if __name__ == "__main__":
    sys.exit(main())
