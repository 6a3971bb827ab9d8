"""The Golden Thread canary: push one marked record through every hop and prove each one works, in time.

``run_canary`` writes a canary signal and a canary closed position through the writer API (both
``is_canary=True``), publishes ONE work item for that position to the trades topic under a run of its own
(job ``canary``), and follows it: the subscriber validates it like any record (SchemaGuardian, the
broker's fills, the strategy version), writes its ``fact_trades`` row and marks it archived; the canary
then reads the row back and queries every mart. Each hop is timed and held to a budget:

============== ================================================================= ===========
hop            what is timed                                                      budget
============== ================================================================= ===========
signal_write   ``HotWriter.record_signal`` (the spec's real-time tier)            100 ms
position_write the canary orders at the broker, open and close through the writer 1 s
dispatch       the run record and publishing the work item                        2 s
delivery       publish -> the subscriber recorded the item's outcome              the timeout
validation     the outcome is ``loaded`` (else: the dead letter's reasons)        2 s
warehouse_write the row read back by key: values, canary flag, archive mark       5 s
mart_visibility every mart answers; the row is in ``mart_golden_thread`` only     10 s
============== ================================================================= ===========

**Isolation.** The canary never runs a loop's dispatch: it publishes only its own position's id, under
its own run, so it neither archives nor double-counts any real record, whatever is due. Its documents
carry a strategy of their own (``golden_thread_canary``, marked in its parameters) and ``is_canary``, so
every business mart excludes them; a canary whose thread broke sets its position aside (the dead-letter
mark names the canary run) so no real dispatch ever picks it up. On the simulator, the two canary orders
are placed once and reused by every run (the account moves by cents once, not every hour); on a live
broker, ``GOLDTHREAD_CANARY_ORDERS=entry_id,exit_id`` names two filled orders to reference instead.

**Result.** The run's ``job_metadata`` details hold every hop (``hop_ms``, ``broken_hop``); a broken hop
marks the run FAILED and logs an ERROR with the ``hop`` label (what a log-based alert matches); the run is
then synced to ``job_runs`` so ``mart_golden_thread`` and the dashboard show the latest result.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from goldthread import logs
from goldthread.errors import (
    ConcurrentRunError,
    GoldthreadError,
    HopFailedError,
    TransientError,
)
from goldthread.ledger import marks, runs
from goldthread.logs import get_logger
from goldthread.models.broker import BrokerOrder, OrderSide
from goldthread.models.hot import AssetClass, LivePosition, LiveSignal, PositionStatus, Side, SignalStatus, Strategy
from goldthread.models.warehouse import FactTrade, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.ports.bus import InProcessBus
from goldthread.ports.hot_store import Outcome
from goldthread.writer import POSITIONS, STRATEGIES, HotWriter

log = get_logger("canary")

JOB = "canary"
HOPS: tuple[str, ...] = (
    "signal_write", "position_write", "dispatch", "delivery", "validation", "warehouse_write", "mart_visibility",
)
DEFAULT_BUDGETS_MS: dict[str, float] = {
    "signal_write": 100.0, "position_write": 1000.0, "dispatch": 2000.0, "validation": 2000.0,
    "warehouse_write": 5000.0, "mart_visibility": 10000.0,
}
"""Budgets per hop in milliseconds; ``delivery`` is bounded by the canary's timeout instead."""

STRATEGY_ID = "golden_thread_canary"
STRATEGY_VERSION = "1"
STRATEGY_MARKER = "golden_thread_canary"
"""Parameter key that marks the canary's strategy; ``mart_strategy_performance`` leaves such versions out."""
DEPLOYED_AT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
SYMBOL = "BTC/USD"
QTY = Decimal("0.0001")
DEFAULT_ORDERS = ("golden-thread-canary-entry", "golden-thread-canary-exit")
ORDERS_ENV = "GOLDTHREAD_CANARY_ORDERS"


@dataclass
class HopResult:
    """One hop: passed or not, how long it took against its budget, and what was seen."""

    hop: str
    ok: bool | None = None
    ms: float | None = None
    budget_ms: float | None = None
    detail: str = ""

    @property
    def status(self) -> str:
        """``ok``, ``FAILED`` or ``skipped`` (a hop after a hard failure is not attempted)."""
        return "skipped" if self.ok is None else ("ok" if self.ok else "FAILED")


@dataclass
class CanaryResult:
    """The outcome of one canary run."""

    run_id: str
    position_id: str
    signal_id: str
    hops: list[HopResult] = field(default_factory=list)
    error: str | None = None

    @property
    def broken_hop(self) -> str | None:
        """The first hop that failed or exceeded its budget."""
        return next((h.hop for h in self.hops if h.ok is False), None)

    @property
    def ok(self) -> bool:
        """Every hop passed within its budget."""
        return all(h.ok for h in self.hops) and len(self.hops) == len(HOPS)

    def hop(self, name: str) -> HopResult:
        """The result of the hop ``name``."""
        return next(h for h in self.hops if h.hop == name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the HTTP function answers and ``job_metadata`` keeps)."""
        return {
            "ok": self.ok, "run_id": self.run_id, "position_id": self.position_id, "signal_id": self.signal_id,
            "broken_hop": self.broken_hop, "error": self.error,
            "hop_ms": {h.hop: h.ms for h in self.hops if h.ms is not None},
            "hops": [{**asdict(h), "status": h.status} for h in self.hops],
        }


class _Broken(Exception):
    """A hard failure inside a hop (the hop and its reason); internal to the canary."""

    def __init__(self, hop: str, detail: str) -> None:
        super().__init__(detail)
        self.hop = hop
        self.detail = detail


class _Timer:
    """Times one hop with the canary's clock and records it against its budget."""

    def __init__(self, result: CanaryResult, hop: str, budget_ms: float | None, clock: Callable[[], float]) -> None:
        self.entry = HopResult(hop, budget_ms=budget_ms)
        result.hops.append(self.entry)
        self.clock = clock

    def __enter__(self) -> HopResult:
        self.started = self.clock()
        return self.entry

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        self.entry.ms = round((self.clock() - self.started) * 1000, 3)
        if exc is not None:
            if isinstance(exc, _Broken):
                self.entry.ok, self.entry.detail = False, exc.detail
                return False
            if isinstance(exc, Exception):  # a canary reports a broken hop; it does not crash on one
                self.entry.ok, self.entry.detail = False, f"{type(exc).__name__}: {exc}"[:1000]
                if not isinstance(exc, GoldthreadError):
                    log.error("canary hop %s raised", self.entry.hop, exc_info=exc, extra={"hop": self.entry.hop})
                raise _Broken(self.entry.hop, self.entry.detail) from exc
            return False
        budget = self.entry.budget_ms
        if budget is not None and self.entry.ms > budget:
            self.entry.ok = False
            self.entry.detail = f"took {self.entry.ms:.1f} ms, over its {budget:.0f} ms budget. {self.entry.detail}"
        elif self.entry.ok is None:
            self.entry.ok = True
        return False


def canary_order_ids() -> tuple[str, str]:
    """The entry and exit order ids the canary position references (``GOLDTHREAD_CANARY_ORDERS`` or defaults)."""
    configured = os.environ.get(ORDERS_ENV, "")
    parts = [p.strip() for p in configured.split(",") if p.strip()]
    return (parts[0], parts[1]) if len(parts) == 2 else DEFAULT_ORDERS


def canary_orders(ctx: Context, at: dt.datetime) -> tuple[BrokerOrder, BrokerOrder]:
    """The two filled canary orders; the simulator places them on first use (a live broker never)."""
    entry_id, exit_id = canary_order_ids()
    orders = ctx.broker.get_orders([entry_id, exit_id])
    missing = [oid for oid in (entry_id, exit_id) if oid not in orders or not orders[oid].is_filled]
    submit = getattr(ctx.broker, "submit_market_order", None)
    if missing and submit is not None:
        for oid, side in ((entry_id, OrderSide.BUY), (exit_id, OrderSide.SELL)):
            if oid in missing:
                submit(oid, SYMBOL, side, QTY, at, AssetClass.CRYPTO.value)
        orders = ctx.broker.get_orders([entry_id, exit_id])
        missing = [oid for oid in (entry_id, exit_id) if oid not in orders or not orders[oid].is_filled]
    if missing:
        raise _Broken("position_write", f"the broker has no filled canary order {', '.join(missing)}: set "
                                        f"{ORDERS_ENV}=entry_id,exit_id to two filled orders of the account")
    return orders[entry_id], orders[exit_id]


def _ensure_strategy(ctx: Context, writer: HotWriter) -> None:
    doc_id = f"{STRATEGY_ID}:{STRATEGY_VERSION}"
    if ctx.hot.get(STRATEGIES, doc_id) is None:
        writer.register_strategy(Strategy(
            strategy_id=STRATEGY_ID, version=STRATEGY_VERSION, deployed_at=DEPLOYED_AT, is_canary=True,
            params={STRATEGY_MARKER: True, "purpose": "Golden Thread canary; excluded from every business mart"},
        ))


def _ensure_dim_strategy(ctx: Context) -> None:
    from goldthread.loops.strategies import sync_dim_strategy

    found = ctx.warehouse.query(
        "SELECT COUNT(*) AS n FROM dim_strategy WHERE strategy_sk = @sk", {"sk": f"{STRATEGY_ID}:{STRATEGY_VERSION}"}
    )
    if not found or not found[0]["n"]:
        sync_dim_strategy(ctx)  # what a trades dispatch does before publishing


def _prepare(ctx: Context, writer: HotWriter, now: dt.datetime) -> tuple[BrokerOrder, BrokerOrder]:
    """Untimed set-up: the canary strategy (hot store and dim_strategy) and the two filled orders."""
    try:
        _ensure_strategy(ctx, writer)
    except GoldthreadError as exc:
        raise _Broken("signal_write", f"cannot register the canary strategy: {exc}"[:1000]) from exc
    try:
        _ensure_dim_strategy(ctx)
    except GoldthreadError as exc:
        raise _Broken("warehouse_write", f"cannot put the canary strategy in dim_strategy: {exc}"[:1000]) from exc
    try:
        return canary_orders(ctx, now)
    except GoldthreadError as exc:
        raise _Broken("position_write", f"the broker cannot give the canary orders: {exc}"[:1000]) from exc


def _delivered_count(ctx: Context) -> int | None:
    """Deliveries so far on the trades subscription, when the bus can tell (the local bus can)."""
    bus = ctx.bus
    if not isinstance(bus, InProcessBus):
        return None
    try:
        return bus.subscription(ctx.settings.subscription(Loop.TRADES)).delivered
    except KeyError:
        return None


def _wait_for_outcome(
    ctx: Context, run_id: str, item_id: str, timeout: float, clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str | None:
    if isinstance(ctx.bus, InProcessBus):
        ctx.bus.run_until_idle(max_seconds=timeout)
    deadline = clock() + timeout
    while True:
        outcome = ctx.hot.item_outcomes(run_id).get(item_id)
        if outcome is not None or clock() >= deadline or isinstance(ctx.bus, InProcessBus):
            return outcome
        sleep(0.25)


def _diagnose_silence(ctx: Context, run_id: str, item: WorkItem, delivered_before: int | None) -> _Broken:
    """Name the hop when the item got no outcome in time: undelivered, invalid, or unwritable."""
    from goldthread.bi.runs_sync import sync_job_runs
    from goldthread.loops import get_loop

    waited = "no outcome for the canary item within the timeout"
    if ctx.warehouse.get_rows(FactTrade, [row_id_for("fact_trades", item.doc_id)]):
        return _Broken("delivery", f"{waited}, although its row was written: the subscriber never acknowledged it")
    try:
        failure = get_loop(Loop.TRADES).check(ctx, item)
    except TransientError as exc:
        return _Broken("validation", f"{waited}; validating it fails for now: {type(exc).__name__}: {exc}"[:1000])
    delivered_after = _delivered_count(ctx)
    if delivered_before is not None and delivered_after == delivered_before:
        return _Broken("delivery", f"{waited}: the bus never delivered it to the trades subscriber")
    try:  # the canary's own bookkeeping write doubles as a probe of the warehouse
        sync_job_runs(ctx, [run_id])
    except GoldthreadError as exc:
        return _Broken("warehouse_write", f"{waited}; the warehouse refuses writes: {type(exc).__name__}: {exc}"[:1000])
    if failure is not None:
        return _Broken("validation", f"{waited}; it is invalid ({failure}) and its dead letter was not recorded")
    return _Broken("delivery", f"{waited}: the subscriber did not receive it or keeps failing (see the logs of run "
                               f"{run_id}: {logs.where(run_id)})")


def _check_row(ctx: Context, run_id: str, position: LivePosition) -> str:
    rows = ctx.warehouse.get_rows(FactTrade, [row_id_for("fact_trades", position.position_id)])
    if not rows:
        raise _Broken("warehouse_write", "the canary row is not in fact_trades")
    try:
        row = FactTrade.model_validate(rows[0])
    except ValueError as exc:
        raise _Broken("warehouse_write", f"the stored row does not validate: {exc}"[:1000]) from exc
    wrong = [
        name for name, ok in (
            ("run_id", row.run_id == run_id), ("is_canary", row.is_canary), ("qty", row.qty == position.qty),
            ("strategy_version", row.strategy_version == STRATEGY_VERSION), ("symbol", row.symbol == SYMBOL),
        ) if not ok
    ]
    if wrong:
        raise _Broken("warehouse_write", f"the stored row differs from what was written: {', '.join(wrong)}")
    held = marks.read_marks(ctx.hot, POSITIONS, [position.position_id]).get(position.position_id)
    if held is None or held.archived_run_id != run_id:
        raise _Broken("warehouse_write", f"row written but the ledger does not mark the position archived by {run_id}")
    return f"fact_trades row {row.row_id} (run {row.run_id})"


def _check_marts(ctx: Context, position_id: str, ds: dt.date) -> str:
    """Every mart answers for the canary's day, reading only that day's partitions where the mart prunes.

    A prunable mart is queried with ``WHERE ds = @ds``; the history-wide ones are queried for the canary's
    own strategy (``mart_strategy_performance``, clustered by strategy) or day (``mart_equity_curve``, one
    small snapshot row per account and day).
    """
    from goldthread.bi.marts import CANARY_MART, MART_NAMES

    day: dict[str, Any] = {"ds": ds}
    for mart in MART_NAMES:
        sql, params = f"SELECT COUNT(*) AS n FROM {mart} WHERE ds = @ds", day
        if mart == "mart_strategy_performance":
            sql, params = f"SELECT COUNT(*) AS n FROM {mart} WHERE strategy_id = @s", {"s": STRATEGY_ID}
        try:
            ctx.warehouse.query(sql, params)
        except GoldthreadError as exc:
            raise _Broken("mart_visibility", f"mart {mart} does not answer: {exc}"[:1000]) from exc
    shown = ctx.warehouse.query(f"SELECT COUNT(*) AS n FROM {CANARY_MART} WHERE ds = @ds AND position_id = @p",
                                {**day, "p": position_id})
    if not shown[0]["n"]:
        raise _Broken("mart_visibility", f"the canary row is not visible in {CANARY_MART}")
    for mart, where in (("mart_daily_pnl", "ds = @ds AND "), ("mart_strategy_performance", "")):
        leaked = ctx.warehouse.query(f"SELECT COUNT(*) AS n FROM {mart} WHERE {where}strategy_id = @s",
                                     {**(day if where else {}), "s": STRATEGY_ID})
        if leaked[0]["n"]:
            raise _Broken("mart_visibility", f"canary rows leaked into {mart}")
    counted = ctx.warehouse.query("SELECT SUM(trades) AS n FROM mart_fee_drift WHERE ds = @ds", day)[0]["n"] or 0
    real = ctx.warehouse.query("SELECT COUNT(DISTINCT row_id) AS n FROM fact_trades WHERE ds = @ds AND NOT is_canary",
                               day)[0]["n"]
    if int(counted) != int(real):
        raise _Broken("mart_visibility", f"mart_fee_drift counts {counted} trades, fact_trades holds {real} real ones")
    return f"in {CANARY_MART}; excluded from the {len(MART_NAMES) - 1} business marts"


def run_canary(
    ctx: Context,
    *,
    timeout: float = 30.0,
    budgets_ms: Mapping[str, float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryResult:
    """Send one canary record along the Golden Thread and report every hop (see the module docstring).

    ``clock`` (seconds, monotonic) times the hops; tests inject one to exercise the budgets. Raises
    ``ConcurrentRunError`` if another canary holds today's lease; a broken hop is *returned* (``ok`` False,
    ``broken_hop`` set), recorded in ``job_metadata`` and logged as an ERROR.
    """
    budgets = {**DEFAULT_BUDGETS_MS, **(budgets_ms or {})}
    now = ctx.now()
    try:
        run = runs.start_run(ctx, JOB, now.date(), {"stack": _stack(ctx)})
    except ConcurrentRunError:
        raise
    except GoldthreadError as exc:
        raise HopFailedError("signal_write", f"the hot store refused the canary's run record: {exc}") from exc
    result = CanaryResult(run.run_id, f"canary-pos-{run.run_id}", f"canary-sig-{run.run_id}")
    writer = HotWriter(ctx.hot)
    item = WorkItem(run_id=run.run_id, loop=Loop.TRADES, ds=now.date(), doc_id=result.position_id, published_at=now)
    position: LivePosition | None = None
    diagnosis: _Broken | None = None
    try:
        entry, exit_ = _prepare(ctx, writer, now)
        price = entry.filled_avg_price or Decimal(1)
        signal = LiveSignal(
            signal_id=result.signal_id, strategy_id=STRATEGY_ID, strategy_version=STRATEGY_VERSION, symbol=SYMBOL,
            asset_class=AssetClass.CRYPTO, side=Side.LONG, signal_price=price,
            take_profit=(price * Decimal("1.05")).quantize(Decimal("0.0001")),
            stop_loss=(price * Decimal("0.97")).quantize(Decimal("0.0001")),
            created_at=now, expires_at=now + dt.timedelta(hours=1), status=SignalStatus.ACTIVE, is_canary=True,
        )
        with _Timer(result, "signal_write", budgets.get("signal_write"), clock):
            writer.record_signal(signal)
        with _Timer(result, "position_write", budgets.get("position_write"), clock):
            writer.open_position(LivePosition(
                position_id=result.position_id, signal_id=signal.signal_id, strategy_id=STRATEGY_ID,
                strategy_version=STRATEGY_VERSION, symbol=SYMBOL, asset_class=AssetClass.CRYPTO, side=Side.LONG,
                qty=entry.filled_qty, entry_order_id=entry.order_id, entry_filled_avg_price=entry.filled_avg_price,
                opened_at=now, status=PositionStatus.OPEN, est_fee_usd=Decimal(0), is_canary=True,
            ))
            position = writer.close_position(result.position_id, exit_.order_id, exit_.filled_avg_price, now)
        delivered_before = _delivered_count(ctx)
        with _Timer(result, "dispatch", budgets.get("dispatch"), clock):
            data, attributes = item.to_message()
            ctx.bus.publish(ctx.settings.topic(Loop.TRADES), data, {**attributes, "is_canary": "true"})
            runs.finish_dispatch(ctx, run.run_id, 1)
        with _Timer(result, "delivery", None, clock) as hop:
            outcome = _wait_for_outcome(ctx, run.run_id, item.item_id, timeout, clock, sleep)
            if outcome is None:
                diagnosis = _diagnose_silence(ctx, run.run_id, item, delivered_before)
                if diagnosis.hop == "delivery":
                    raise diagnosis
                hop.detail = "delivered to the trades subscriber, which did not finish the item"
            else:
                hop.detail = f"outcome {outcome!r} recorded in run {run.run_id}"
        with _Timer(result, "validation", budgets.get("validation"), clock) as hop:
            if diagnosis is not None and diagnosis.hop == "validation":
                raise diagnosis
            hop.detail = (_check_outcome(ctx, run.run_id, result.position_id, outcome) if outcome
                          else "the record passes SchemaGuardian, broker and SCD checks (re-run in-process)")
        with _Timer(result, "warehouse_write", budgets.get("warehouse_write"), clock) as hop:
            if diagnosis is not None:
                raise diagnosis
            assert position is not None
            hop.detail = _check_row(ctx, run.run_id, position)
        with _Timer(result, "mart_visibility", budgets.get("mart_visibility"), clock) as hop:
            hop.detail = _check_marts(ctx, result.position_id, run.ds)
    except _Broken as broken:
        last = result.hops[-1] if result.hops else None
        if last is None or last.hop != broken.hop or last.ok is not False:
            result.hops.append(HopResult(broken.hop, ok=False, detail=broken.detail))
    done = {h.hop for h in result.hops}
    result.hops.extend(HopResult(h, detail="not attempted after an earlier failure") for h in HOPS if h not in done)
    result.hops.sort(key=lambda h: HOPS.index(h.hop))
    _record(ctx, result, position)
    return result


def _check_outcome(ctx: Context, run_id: str, position_id: str, outcome: str) -> str:
    if outcome == Outcome.LOADED:
        return "loaded: SchemaGuardian, the broker's fills and the strategy version all passed"
    if outcome == Outcome.DEAD_LETTERED:
        from goldthread.pipeline.dead_letters import list_dead_letters

        letters = [d for d in list_dead_letters(ctx, ids=[position_id], include_replayed=True) if d["run_id"] == run_id]
        why = f"{letters[0]['reason_code']}: {letters[0]['error_message']}" if letters else "no dead letter found"
        raise _Broken("validation", f"dead-lettered: {why}"[:1000])
    raise _Broken("validation", f"unexpected outcome {outcome!r}: a row with the canary's key already existed")


def _stack(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    return {"hot": s.hot, "bus": s.bus, "warehouse": s.warehouse, "broker": s.broker}


def _record(ctx: Context, result: CanaryResult, position: LivePosition | None) -> None:
    """Keep the result in job_metadata, fail the run on a broken hop, set a broken canary aside, sync job_runs."""
    from goldthread.bi.runs_sync import sync_job_runs

    run = runs.get_run(ctx, result.run_id)
    hop = result.broken_hop
    if hop is not None:
        result.error = str(HopFailedError(hop, result.hop(hop).detail))[:1000]
    details = {**(run.details if run else {}), **result.to_dict()}
    details.pop("ok", None)
    try:
        ctx.hot.update(runs.JOBS, result.run_id, {"details": details})
        if hop is not None:
            runs.fail_run(ctx, result.run_id, result.error or hop)
            if position is not None:  # never let a broken canary's position reach a real run
                marks.claim(ctx.hot, POSITIONS, [result.position_id], marks.Mark.DEAD_LETTERED, result.run_id)
    except GoldthreadError as exc:
        log.error("canary result could not be recorded in job_metadata: %s", exc, extra={"run_id": result.run_id})
    if hop is not None:
        log.error("golden thread broken at hop %s: %s", hop, result.error,
                  extra={"run_id": result.run_id, "hop": hop, "loop": JOB})
    else:
        log.info("golden thread whole: %s", result.to_dict()["hop_ms"], extra={"run_id": result.run_id, "loop": JOB})
    try:
        sync_job_runs(ctx, [result.run_id])
    except GoldthreadError as exc:
        log.warning("canary run not synced to job_runs yet (the next sync will): %s", exc,
                    extra={"run_id": result.run_id})
