"""The whole Golden Thread on the real stack equals the embedded run on the same input.

A simulated bot trades for a week (signals, rejections, expiries, positions, broken documents) into a
SQLite hot store while the simulated broker records its orders, fees and option book. Then the same
input is archived twice, with the same schedule of jobs (Loops A to D, the price and fee patches, a fix
and a replay):

* embedded: SQLite hot store, local bus, DuckDB, the simulator, synthetic bars;
* real: the hot documents copied into the Firestore emulator; every function served by
  functions-framework and fed by Pub/Sub emulator push subscriptions; bqemulator as the warehouse; a
  local Alpaca server (driven through alpaca-py) answering what the simulator knows.

Every warehouse table must hold the same rows, apart from the columns that name a run or a moment of
loading (run ids, loaded_at, snapshot_at, updated_at) and the dead-letter keys derived from run ids.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.models import LivePosition, LiveSignal, RejectedSignal, Strategy
from goldthread.models.hot import HotDocument, RunStatus
from goldthread.models.warehouse import (
    DeadLetter,
    DimStrategy,
    FactRejectedSignal,
    FactSignalExpired,
    FactTrade,
    MarketBar,
    MarketBarsCoverage,
    PatchAudit,
    ReplayRecord,
    RowRevision,
    SnapshotAccount,
)
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.pipeline.replay import replay
from goldthread.sim.bot import SimBot
from goldthread.writer import POSITIONS, HotWriter, document_of

from tests.conftest import ledger_mark
from tests.fakes.alpaca_server import FakeAlpaca
from tests.support.emulators import ManagedProcess
from tests.support.real_stack import FAKE_ACCOUNT_ID, RealStack, normalise, seed_alpaca, start_real_stack

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

DAYS = 5
COLLECTIONS: dict[str, type[HotDocument]] = {
    "live_signals": LiveSignal, "rejected_signals": RejectedSignal, "live_positions": LivePosition,
    "strategies": Strategy,
}
VOLATILE = {"source",  # market_bars: which vendor served the bars (synthetic vs alpaca)
            "run_id", "loaded_at", "snapshot_at", "updated_at", "replay_run_id", "original_run_id",
            "replayed_at", "dead_lettered_at", "patch_run_id", "changed_at", "ds_of_run"}


def as_the_bot_wrote_it(model: type[HotDocument], doc: dict[str, Any]) -> dict[str, Any]:
    """A document in the types the writer API stores (timestamps, exact decimals); a broken one as is,
    the way a buggy bot would have written it."""
    try:
        return document_of(model.model_validate(doc))
    except ValueError:
        return doc


def scenario_days(now: dt.datetime) -> list[dt.date]:
    """A trading week that ended more than the validity window ago, so every loop is ready now."""
    start = now.date() - dt.timedelta(days=16)
    start -= dt.timedelta(days=start.weekday())  # a Monday: equities trade every scenario day, whatever today is
    return [start + dt.timedelta(days=i) for i in range(DAYS)]


def jobs(days: list[dt.date]) -> list[tuple[str, dt.date]]:
    """The schedule both stacks run, in order."""
    out: list[tuple[str, dt.date]] = []
    for day in days:
        out += [("patch_prices", day), ("trades", day), ("expired_signals", day), ("rejected_signals", day),
                ("patch_fees", day)]
    out.append(("accounts", days[-1]))
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bot's week, written once: a hot store file and the broker's ledger."""
    home = tmp_path_factory.mktemp("scenario")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    days = scenario_days(now)
    clock = {"t": dt.datetime.combine(days[0], dt.time(), dt.UTC)}
    market = SyntheticMarketData()
    broker = SimulatedBroker(home / "broker.sqlite", clock=lambda: clock["t"], market=market,
                             account_id=FAKE_ACCOUNT_ID)
    hot = SqliteHotStore(home / "hot.sqlite")
    bot = SimBot(hot, broker, market, days[0], seed=11, signals_per_strategy_day=(2, 4))
    bot.register_strategies()
    bot.hold_options()
    for i, day in enumerate(days):
        clock["t"] = dt.datetime.combine(day, dt.time(), dt.UTC)
        bot.trade_day(day)
        if i == DAYS // 2:
            clock["t"] = dt.datetime.combine(day, dt.time(23, 30), dt.UTC)
            broken = bot.break_some_documents(day)
            assert len(broken) == 7, f"the scenario must break all seven kinds of document, broke {broken}"
    clock["t"] = now
    hot.close()
    return {"home": home, "now": now, "days": days, "broker": broker, "market": market, "clock": clock}


def run_schedule_embedded(ctx: Context, days: list[dt.date]) -> None:
    """The schedule on the embedded stack, each job completed before the next."""
    from goldthread.patches.fee_patch import patch_fees
    from goldthread.patches.price_patch import patch_prices

    for job, ds in jobs(days):
        if job == "patch_prices":
            patch_prices(ctx)
        elif job == "patch_fees":
            patch_fees(ctx, ds)
        else:
            run_loop(ctx, job, ds)
    fix_broken_position(ctx)
    replay(ctx, ids=["pos-broken-qty"])
    ctx.bus.run_until_idle()  # type: ignore[attr-defined]
    correct_archived_position(ctx)
    run_loop(ctx, "trades", days[-1])


def fix_broken_position(ctx: Context) -> None:
    """What a person does after reading the dead letter: rewrite the record correctly."""
    broken = ctx.hot.get(POSITIONS, "pos-broken-qty")
    assert broken is not None, "the scenario must contain the broken position"
    HotWriter(ctx.hot).save_position(LivePosition.model_validate({**broken, "qty": abs(Decimal(str(broken["qty"])))}))


def correct_archived_position(ctx: Context) -> str:
    """The bot corrects an archived position (its fee estimate) through the writer API: the next Loop A run
    loads it as revision 2 of its row."""
    archived = sorted(doc_id for doc_id, _ in ctx.hot.query(POSITIONS)
                      if doc_id.startswith("pos-2") and ledger_mark(ctx, POSITIONS, doc_id)["archived_run_id"])
    assert archived, "the scenario must have archived positions"
    doc = ctx.hot.get(POSITIONS, archived[0])
    assert doc is not None
    fee = Decimal(str(doc["est_fee_usd"])) + Decimal("0.25")
    HotWriter(ctx.hot).save_position(LivePosition.model_validate({**doc, "est_fee_usd": fee}))
    return archived[0]


def run_schedule_real(stack: RealStack, ctx: Context, days: list[dt.date]) -> list[str]:
    """The schedule through the HTTP functions; loop runs are awaited until every item has an outcome."""
    statuses = []
    for job, ds in jobs(days):
        if job == "patch_prices":
            answer = stack.call("patch_prices", {})
        elif job == "patch_fees":
            answer = stack.call("patch_fees", {"ds": ds.isoformat()})
        else:
            answer = stack.call("dispatch", {"loop": job, "ds": ds.isoformat()})
        run = stack.wait_run(ctx, answer["run"]["run_id"] if "run" in answer else answer["run_id"])
        statuses.append(f"{job} {ds} {run.status.value}")
    fix_broken_position(ctx)
    answer = stack.call("replay", {"ids": ["pos-broken-qty"]})
    assert answer["run"] is not None, answer
    statuses.append(f"replay {stack.wait_run(ctx, answer['run']['run_id']).status.value}")
    correct_archived_position(ctx)
    answer = stack.call("dispatch", {"loop": "trades", "ds": days[-1].isoformat()})
    run_id = answer["run"]["run_id"] if "run" in answer else answer["run_id"]
    statuses.append(f"revision {stack.wait_run(ctx, run_id).status.value}")
    return statuses


def rows(ctx: Context, table: str, key: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """A table as comparable rows: volatile columns dropped, values normalised, sorted."""
    out = []
    for row in ctx.warehouse.query(f"SELECT * FROM {table}"):
        out.append({k: normalise(v) for k, v in row.items() if k not in VOLATILE})
    if key:
        out = [{k: r[k] for k in key} for r in out]
    return sorted(out, key=lambda r: [str(v) for v in r.values()])


@pytest.fixture(scope="module")
def both_stacks(
    scenario: dict[str, Any],
    firestore_emulator: ManagedProcess,
    pubsub_emulator: ManagedProcess,
    bigquery_emulator: ManagedProcess,
) -> Iterator[tuple[Context, Context, list[str]]]:
    """Run the schedule on both stacks from the same input."""
    home: Path = scenario["home"]
    now, days = scenario["now"], scenario["days"]
    embedded_home = home / "embedded"
    embedded_home.mkdir()
    shutil.copy(home / "hot.sqlite", embedded_home / "hot.sqlite")
    embedded = Context(
        Settings(home=embedded_home), clock=lambda: now, hot=SqliteHotStore(embedded_home / "hot.sqlite"),
        warehouse=DuckDbWarehouse(embedded_home / "warehouse.duckdb"), broker=scenario["broker"],
        market_data=scenario["market"],
    )
    wire_local_bus(embedded)
    run_schedule_embedded(embedded, days)

    source = SqliteHotStore(home / "hot.sqlite")
    order_ids = [
        oid for _, doc in source.query("live_positions")
        for oid in (doc.get("entry_order_id"), doc.get("exit_order_id")) if oid
    ]
    symbols = sorted({doc["symbol"] for c in ("live_signals", "live_positions") for _, doc in source.query(c)})
    with FakeAlpaca() as alpaca:
        seed_alpaca(
            alpaca, scenario["broker"], scenario["market"], order_ids,
            [days[0] - dt.timedelta(days=1), *days, *(days[-1] + dt.timedelta(days=i) for i in (1, 2, 3))],
            symbols, dt.datetime.combine(days[0], dt.time(), dt.UTC),
            dt.datetime.combine(days[-1] + dt.timedelta(days=9), dt.time(), dt.UTC),
        )
        emulator_env = {**firestore_emulator.env, **pubsub_emulator.env, **bigquery_emulator.env}
        # the same schedule as the embedded stack (a sweep on every run), so both find the same records; the
        # weekly default of Firestore is tested in tests/test_bot_documents.py
        stack = start_real_stack(alpaca, emulator_env, sweep_every_days=1)
        try:
            real = stack.context()
            for collection, model in COLLECTIONS.items():
                for doc_id, doc in source.query(collection):
                    real.hot.put(collection, doc_id, as_the_bot_wrote_it(model, doc))
            statuses = run_schedule_real(stack, real, days)
            yield embedded, real, statuses
        finally:
            stack.stop()


TABLES = [
    (FactTrade.__table__, None),
    (FactRejectedSignal.__table__, None),
    (FactSignalExpired.__table__, None),
    (SnapshotAccount.__table__, None),
    (DimStrategy.__table__, None),
    (MarketBar.__table__, None),
    (DeadLetter.__table__, ("loop", "doc_id", "reason_code", "error_message", "errors_json")),
    (ReplayRecord.__table__, ("loop", "doc_id")),
    (PatchAudit.__table__, ("patch", "table_name", "record_key", "column_name", "old_value", "new_value")),
    (MarketBarsCoverage.__table__, ("symbol", "ds", "timeframe", "bars_timeframe", "bar_count")),
    (RowRevision.__table__, ("table_name", "record_row_id", "revision", "superseded_by_revision",
                             "changed_columns")),
]


@pytest.mark.parametrize(("table", "key"), TABLES, ids=[t for t, _ in TABLES])
def test_the_real_stack_stores_what_the_embedded_stack_stores(
    both_stacks: tuple[Context, Context, list[str]], table: str, key: tuple[str, ...] | None
) -> None:
    """Same input, same schedule: the same rows in every table."""
    embedded, real, _ = both_stacks
    expected = rows(embedded, table, key)
    assert expected or table == ReplayRecord.__table__, f"the embedded run wrote nothing to {table}"
    actual = rows(real, table, key)
    assert actual == expected, describe_difference(expected, actual)


def describe_difference(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str:
    """Which rows and columns differ, readably."""
    lines = [f"{len(expected)} embedded rows, {len(actual)} real rows"]
    for want, got in zip(expected, actual, strict=False):
        diff = {k: (want.get(k), got.get(k)) for k in want.keys() | got.keys() if want.get(k) != got.get(k)}
        if diff:
            changes = ", ".join(f"{k}: {a!r} != {b!r}" for k, (a, b) in diff.items())
            lines.append(f"{want.get('row_id', '')}: {changes}")
        if len(lines) > 12:
            break
    return "\n".join(lines)


def test_every_run_on_the_real_stack_finished_and_reconciled(both_stacks: tuple[Context, Context, list[str]]) -> None:
    """Runs leave RUNNING, and published = loaded + duplicates + dead-lettered for each."""
    from goldthread.ledger.runs import list_runs

    _, real, statuses = both_stacks
    runs = list_runs(real)
    assert runs and all(r.status is not RunStatus.RUNNING for r in runs), statuses
    assert all(r.published == r.processed for r in runs if r.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL))
    assert {r.loop for r in runs} >= {loop.value for loop in Loop} | {"patch_fees", "patch_prices", "replay"}


def test_the_broken_documents_were_dead_lettered_and_the_fixed_one_loaded(
    both_stacks: tuple[Context, Context, list[str]],
) -> None:
    """Garbage never reached the facts; the replayed fix did."""
    _, real, _ = both_stacks
    query = "SELECT doc_id, reason_code FROM dead_letters"
    letters = {(r["doc_id"], r["reason_code"]) for r in real.warehouse.query(query)}
    assert ("pos-broken-qty", "VALIDATION") in letters
    assert ("pos-wrong-version", "SCD_CONFLICT") in letters
    assert ("pos-wrong-side", "BROKER_MISMATCH") in letters
    assert ("pos-double-claim", "ORDER_CLAIMED") in letters
    revised = real.warehouse.query("SELECT revision FROM fact_trades WHERE revision > 1")
    assert [r["revision"] for r in revised] == [2]
    loaded = real.warehouse.query("SELECT qty FROM fact_trades WHERE position_id = @p", {"p": "pos-broken-qty"})
    assert [normalise(r["qty"]) for r in loaded] == ["5"]
