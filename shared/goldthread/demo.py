"""The demo: a few weeks of a simulated trading bot, archived day by day through the local bus.

Runs on a fresh checkout with nothing configured: embedded hot store, bus, warehouse, broker and
market data under ``GOLDTHREAD_HOME`` (default ``.goldthread/``). Each simulated day the bot trades,
then the scheduler's jobs run as they would in production: Loop A (closed trades), Loop C (expired
signals), Loop D (account snapshot), Loop B for the day whose 7-day window just ended, and the fee
patch at T+1. Some documents are broken on purpose; at the end one is fixed and replayed.

The demo starts from nothing, so it resets its home, and it never deletes data that is not its own: it marks
a home it set up with a ``.goldthread-demo`` file, and resets only an empty home or a marked one. A home
holding a hot store, warehouse or broker ledger without the mark is refused (``NotADemoHomeError``, exit 2)
unless ``force`` is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.errors import ConfigError, NotReadyError
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.sim.bot import SimBot


class SimClock:
    """A settable clock shared by the bot, the broker and the pipeline."""

    def __init__(self, start: dt.datetime) -> None:
        self.moment = start

    def now(self) -> dt.datetime:
        """The simulated time."""
        return self.moment

    def set(self, moment: dt.datetime) -> None:
        """Move the simulated time (never backwards)."""
        self.moment = max(self.moment, moment)


@dataclass
class DemoResult:
    """What the demo did, for the summary and the tests."""

    start: dt.date
    end: dt.date
    broken: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    steps: list[tuple[str, dt.date]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


DEMO_MARKER = ".goldthread-demo"
"""The file that marks a home as the demo's: the demo resets such a home (and an empty one) without asking."""
_STORE_SUFFIXES = ("", "-wal", "-shm", ".wal")


class NotADemoHomeError(ConfigError):
    """The demo was pointed at a home holding data it did not write: nothing is deleted, nothing runs."""


def store_files(settings: Settings) -> list[Path]:
    """The embedded stores' files in the home (hot store, warehouse, broker ledger, with their journals)."""
    return [candidate
            for path in (settings.hot_path, settings.warehouse_path, settings.broker_path)
            for suffix in _STORE_SUFFIXES
            if (candidate := path.with_name(path.name + suffix)).exists()]


def is_demo_home(settings: Settings) -> bool:
    """Whether the demo may reset this home: it holds no store, or the demo marked it as its own."""
    return (settings.home / DEMO_MARKER).is_file() or not store_files(settings)


def reset_home(settings: Settings, force: bool = False) -> None:
    """Remove the embedded stores the demo writes, so it starts from nothing, and mark the home as the demo's.

    Refuses (``NotADemoHomeError``), deleting nothing, when the home holds stores the demo did not write,
    unless ``force``: a person's hot store or warehouse is never lost to a demo by accident."""
    if not force and not is_demo_home(settings):
        names = ", ".join(sorted({p.name for p in store_files(settings)}))
        raise NotADemoHomeError(
            f"{settings.home} holds data the demo did not write ({names}): use an empty GOLDTHREAD_HOME, or "
            f"--force to delete it")
    settings.home.mkdir(parents=True, exist_ok=True)
    for candidate in store_files(settings):
        candidate.unlink()
    (settings.home / DEMO_MARKER).write_text(
        "This home belongs to `goldthread demo`: the next demo deletes its hot store, warehouse and broker ledger.\n")


def build_demo_context(settings: Settings, start: dt.date) -> tuple[Context, SimClock, SimulatedBroker, SimBot]:
    """Embedded context driven by a simulated clock, with the bot that feeds it."""
    clock = SimClock(dt.datetime.combine(start, dt.time(), dt.UTC))
    market = SyntheticMarketData()
    broker = SimulatedBroker(settings.broker_path, clock=clock.now, market=market)
    ctx = Context(settings, clock=clock.now, broker=broker, market_data=market)
    wire_local_bus(ctx)
    bot = SimBot(ctx.hot, broker, market, start)
    return ctx, clock, broker, bot


def scheduled_jobs(day: dt.date, start: dt.date, settings: Settings) -> list[tuple[str, dt.date]]:
    """The jobs the scheduler runs for ``day`` (as in ``terraform/``): Loop D at the day's US close, on the
    day itself, and the others in the night after it."""
    jobs: list[tuple[str, dt.date]] = [
        (Loop.TRADES.value, day),
        (Loop.ACCOUNTS.value, day),
    ]
    expiry_day = day - dt.timedelta(days=1 + int(settings.expiry_lookahead.total_seconds() // 86400))
    if expiry_day >= start:
        jobs.append((Loop.EXPIRED_SIGNALS.value, expiry_day))
    window_day = day - dt.timedelta(days=settings.validity_window.days)
    if window_day >= start:
        jobs.append((Loop.REJECTED_SIGNALS.value, window_day))
    jobs.append(("patch_prices", day))
    if day - dt.timedelta(days=1) >= start:
        jobs.append(("patch_fees", day - dt.timedelta(days=1)))
    return jobs


JobRunner = Callable[[Context, str, dt.date], Any]


def run_job(ctx: Context, job: str, ds: dt.date) -> Any:
    """Run one scheduled job locally: a loop through the local bus, or a patch."""
    if job == "patch_fees":
        from goldthread.patches.fee_patch import patch_fees

        return patch_fees(ctx, ds)
    if job == "patch_prices":
        from goldthread.patches.price_patch import patch_prices

        return patch_prices(ctx)
    return run_loop(ctx, job, ds)


def run_demo(
    settings: Settings,
    days: int = 21,
    seed: int = 42,
    console: Console | None = None,
    end: dt.date | None = None,
    job_runner: JobRunner = run_job,
    force: bool = False,
) -> tuple[Context, DemoResult]:
    """Simulate ``days`` days of trading and archive them; returns the context for summaries. The home is reset
    first: refused when it holds data the demo did not write, unless ``force`` (see ``reset_home``)."""
    console = console or Console()
    reset_home(settings, force=force)
    end = end or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    start = end - dt.timedelta(days=days - 1)
    ctx, clock, broker, bot = build_demo_context(settings, start)
    bot.seed = seed
    for late in (start + dt.timedelta(days=3), start + dt.timedelta(days=days // 2 + 1)):
        # two days whose fees the broker posts late (T+2): the fee patch must wait, not guess
        broker.delay_fee_posting(late, dt.datetime.combine(late + dt.timedelta(days=2), dt.time(6), dt.UTC))
    bot.register_strategies()
    bot.hold_options()
    result = DemoResult(start=start, end=end)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        task = progress.add_task("simulating and archiving", total=days)
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            clock.set(dt.datetime.combine(day, dt.time(), dt.UTC))
            bot.trade_day(day)
            jobs = scheduled_jobs(day, start, settings)
            # Loop D snapshots the live account on the day itself, after the US close (17:00 New York, as
            # scheduled); the other jobs run in the night after the day
            clock.set(dt.datetime.combine(day, dt.time(22), dt.UTC))
            run_jobs(ctx, [j for j in jobs if j[0] == Loop.ACCOUNTS.value], job_runner, result, console)
            if offset == days // 2:
                clock.set(dt.datetime.combine(day, dt.time(23, 30), dt.UTC))
                result.broken = bot.break_some_documents(day)
            clock.set(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(3), dt.UTC))
            run_jobs(ctx, [j for j in jobs if j[0] != Loop.ACCOUNTS.value], job_runner, result, console)
            progress.advance(task)
    revision = correct_after_archiving(ctx, scheduled_jobs(end, start, settings), job_runner)
    result.extras["notes"] = fix_and_replay(ctx, result) + revision + patch_notes(ctx)
    return ctx, result


def run_jobs(
    ctx: Context, jobs: list[tuple[str, dt.date]], job_runner: JobRunner, result: DemoResult, console: Console
) -> None:
    """Run scheduled jobs in order, recording each that ran; a day not ready yet is reported and skipped."""
    for job, ds in jobs:
        try:
            job_runner(ctx, job, ds)
            result.steps.append((job, ds))
        except NotReadyError as exc:
            console.print(f"[yellow]{job} {ds}: {exc}")


def correct_after_archiving(ctx: Context, last_jobs: list[tuple[str, dt.date]], job_runner: JobRunner) -> list[str]:
    """Correct an archived position through the writer API (the bot learned its real commission) and run the
    last day's Loop A and fee patch again: the row becomes revision 2, its old values kept in row_revisions."""
    from goldthread.ledger import marks
    from goldthread.models import LivePosition
    from goldthread.writer import POSITIONS, HotWriter

    docs = dict(ctx.hot.query(POSITIONS))
    held = marks.read_marks(ctx.hot, POSITIONS, list(docs))
    archived = sorted((doc_id, doc) for doc_id, doc in docs.items()
                      if doc_id in held and held[doc_id].archived_run_id and not doc.get("is_canary"))
    if not archived:
        return []
    doc_id, doc = archived[0]
    old_fee = Decimal(str(doc["est_fee_usd"]))
    corrected = LivePosition.model_validate({**doc, "est_fee_usd": old_fee + Decimal("0.25")})
    HotWriter(ctx.hot).save_position(corrected)
    for job, ds in last_jobs:  # the new revision's fee is an estimate again until the fee patch finalises it
        if job in ("trades", "patch_fees"):
            job_runner(ctx, job, ds)
    (row,) = ctx.warehouse.query("SELECT revision, run_id FROM fact_trades WHERE position_id = @p", {"p": doc_id})
    return [f"corrected {doc_id} after it was archived (est. fee {old_fee} -> {corrected.est_fee_usd}): run "
            f"{row['run_id']} loaded it as revision {row['revision']}, the old values kept in row_revisions"]


def fix_and_replay(ctx: Context, result: DemoResult) -> list[str]:
    """Fix one broken position the way a person would (rewrite it through the writer API) and replay it."""
    from goldthread.adapters.local_bus import LocalBus
    from goldthread.ledger.runs import get_run
    from goldthread.models import LivePosition
    from goldthread.pipeline.replay import replay
    from goldthread.writer import POSITIONS, HotWriter

    broken = ctx.hot.get(POSITIONS, "pos-broken-qty")
    if broken is None:
        return []
    fixed = LivePosition.model_validate({**broken, "qty": abs(Decimal(broken["qty"]))})
    HotWriter(ctx.hot).save_position(fixed)
    report = replay(ctx, ids=["pos-broken-qty"])
    if isinstance(ctx.bus, LocalBus):
        ctx.bus.run_until_idle()
    if report.run is None:
        return ["[yellow]replay of pos-broken-qty published nothing"]
    run = get_run(ctx, report.run.run_id)
    assert run is not None
    return [f"fixed pos-broken-qty (qty -5 -> {fixed.qty}) and replayed it: run {run.run_id} {run.status.value}, "
            f"loaded {run.loaded}"]


def patch_notes(ctx: Context) -> list[str]:
    """What the patches did, in one line each."""
    fees = ctx.warehouse.query(
        "SELECT COUNTIF(fee_finalized) AS finalised, COUNTIF(NOT fee_finalized) AS open_, "
        "SUM(IF(fee_finalized, est_fee_usd, 0)) AS est, SUM(actual_fee_usd) AS actual FROM fact_trades"
    )[0]
    prices = ctx.warehouse.query(
        "SELECT COUNT(DISTINCT record_key) AS n FROM patch_audit WHERE patch = 'patch_prices' "
        "AND table_name = 'live_positions'"
    )[0]
    return [
        f"fee patch: {fees['finalised']} trades finalised (estimated ${fees['est'] or 0:.2f} -> actual "
        f"${fees['actual'] or 0:.2f}); {fees['open_']} await their broker fees",
        f"price patch: {prices['n']} positions got their missing fill price from the broker",
    ]
