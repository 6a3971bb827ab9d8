"""Guarantee 4, faults in the real parts: the broker answering 429, 500, 503, 403, timing out and sending
malformed JSON (the fake Alpaca server through the real alpaca-py clients), and the Firestore, BigQuery and
Pub/Sub emulators stopped in the middle of a run. Retryable work is retried; what cannot succeed is
dead-lettered with its reason or fails its run cleanly with a clear error; the next run (or a replay)
recovers, and in the end every record is in the warehouse exactly once.

Each emulator test starts an instance of its own (``tests/support/emulators.py``), so stopping it never
disturbs the shared ones: Firestore is frozen (SIGSTOP on its process group) mid-delivery and thawed
later, since a restarted Firestore emulator starts empty; bqemulator runs ``--persistent`` and is killed
and restarted on the same port; Pub/Sub is killed while the dispatcher publishes and restarted empty,
its topics re-created as Terraform would.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from goldthread.adapters.alpaca_broker import AlpacaBroker, AlpacaRetryPolicy, TokenBucket
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.errors import BrokerUnavailableError, GoldthreadError
from goldthread.ledger import runs
from goldthread.models import AssetClass, LivePosition, LiveSignal, Side, SignalStatus, Strategy
from goldthread.models.hot import PositionStatus, RunStatus
from goldthread.patches.fee_patch import patch_fees
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.pipeline.replay import replay
from goldthread.writer import HotWriter

from tests.conftest import DS, NIGHT_AFTER, SESSION, ledger_mark
from tests.fakes.alpaca_server import FakeAlpaca
from tests.reliability.harness import bump, run_problems
from tests.support import emulators

pytestmark = pytest.mark.slow
KEY, SECRET = "PKFAULTS0000000000", "faults-secret"
POLICY = AlpacaRetryPolicy(timeout=0.3, max_attempts=3, initial_backoff=0.001, max_backoff=0.01)


def write_trades(ctx: Context, names: list[str], orders: Any = None) -> dict[str, tuple[str, str]]:
    """Closed positions through the writer API; ``orders(name, opened)`` gives (entry, exit) order ids
    (default: ``{name}-entry`` / ``{name}-exit``). Returns name -> order ids."""
    writer = HotWriter(ctx.hot)
    writer.register_strategy(Strategy(strategy_id="momo", version="1.0", deployed_at=SESSION - dt.timedelta(days=3)))
    made = {}
    for n, name in enumerate(names):
        opened = SESSION + dt.timedelta(minutes=n)
        signal_ = LiveSignal(signal_id=f"sig-{name}", strategy_id="momo", strategy_version="1.0", symbol="AAPL",
                             asset_class=AssetClass.EQUITY, side=Side.LONG, signal_price=Decimal("100"),
                             take_profit=Decimal("105"), stop_loss=Decimal("97"), created_at=opened,
                             expires_at=opened + dt.timedelta(hours=4), status=SignalStatus.ACTIVE)
        writer.record_signal(signal_)
        entry, exit_ = orders(name, opened) if orders else (f"{name}-entry", f"{name}-exit")
        writer.open_position(LivePosition(
            position_id=name, signal_id=signal_.signal_id, strategy_id="momo", strategy_version="1.0",
            symbol="AAPL", asset_class=AssetClass.EQUITY, side=Side.LONG, qty=Decimal(3), entry_order_id=entry,
            entry_filled_avg_price=Decimal("100.10"), opened_at=opened, status=PositionStatus.OPEN,
            est_fee_usd=Decimal("0.5"),
        ))
        writer.close_position(name, exit_, Decimal("101.20"), opened + dt.timedelta(hours=1))
        made[name] = (entry, exit_)
    return made


def loaded_once(warehouse: Any, names: list[str]) -> bool:
    found = warehouse.query("SELECT position_id, COUNT(*) AS n FROM fact_trades GROUP BY position_id")
    return sorted(r["position_id"] for r in found) == sorted(names) and {r["n"] for r in found} == {1}


# -- the broker ---------------------------------------------------------------------------------------------


@pytest.fixture
def alpaca() -> Iterator[FakeAlpaca]:
    with FakeAlpaca(api_key=KEY, secret_key=SECRET) as server:
        yield server


def test_broker_faults_are_retried_dead_lettered_or_fail_the_run_and_the_next_run_recovers(
    tmp_path: Path, alpaca: FakeAlpaca
) -> None:
    broker = AlpacaBroker(KEY, SECRET, base_url=alpaca.url, data_url=alpaca.url, policy=POLICY, env={},
                          rate_limiter=TokenBucket(rate_per_minute=60_000, burst=1000))  # a fake needs no pacing
    ctx = Context(Settings(home=tmp_path, broker="alpaca"), clock=lambda: NIGHT_AFTER,
                  hot=SqliteHotStore(tmp_path / "hot.sqlite"), bus=LocalBus(project="faults"),
                  warehouse=DuckDbWarehouse(":memory:"), broker=broker, market_data=SyntheticMarketData())
    wire_local_bus(ctx, batch_size=1, min_backoff=0)

    def orders(name: str, opened: dt.datetime) -> tuple[str, str]:
        entry = alpaca.add_order(symbol="AAPL", side="buy", qty="3", filled_avg_price="100.10", filled_at=opened)
        exit_ = alpaca.add_order(symbol="AAPL", side="sell", qty="3", filled_avg_price="101.20",
                                 filled_at=opened + dt.timedelta(hours=1))
        return entry["id"], exit_["id"]

    names = ["pos-429", "pos-500", "pos-timeout", "pos-malformed", "pos-down", "pos-refused"]
    ids = write_trades(ctx, names, orders)
    faults = {
        "pos-429": lambda: alpaca.fail(f"/v2/orders/{ids['pos-429'][0]}", 429, times=1, retry_after=0),
        "pos-500": lambda: alpaca.fail(f"/v2/orders/{ids['pos-500'][0]}", 500, times=2),
        "pos-timeout": lambda: alpaca.delay(f"/v2/orders/{ids['pos-timeout'][0]}", 1.0, times=1),
        "pos-malformed": lambda: alpaca.malformed(f"/v2/orders/{ids['pos-malformed'][1]}", times=1),
        "pos-down": lambda: alpaca.fail(f"/v2/orders/{ids['pos-down'][1]}", 503, times=None),
        "pos-refused": lambda: alpaca.fail(f"/v2/orders/{ids['pos-refused'][0]}", 403, times=None),
        "account": lambda: alpaca.fail("/v2/account", 503, times=None),
        "fee activities": lambda: alpaca.malformed("/v2/account/activities*", times=None),
    }
    for script in faults.values():
        script()

    night = run_loop(ctx, "trades", DS)
    assert (night.status, night.loaded, night.dead_lettered) == (RunStatus.PARTIAL, 4, 2), night
    letters = {d["doc_id"]: d for d in ctx.warehouse.query("SELECT * FROM dead_letters")}
    assert letters["pos-down"]["reason_code"] == "MAX_ATTEMPTS"
    assert letters["pos-refused"]["reason_code"] == "BROKER_REJECTED"
    assert "HTTP 403" in letters["pos-refused"]["error_message"]
    failures = []
    for job in (lambda: run_loop(ctx, "accounts", DS), lambda: patch_fees(ctx, DS)):
        with pytest.raises(BrokerUnavailableError) as info:
            job()
        failures.append(str(info.value))
    assert "HTTP 503" in failures[0] and "malformed JSON" in failures[1]
    failed = [r for r in runs.list_runs(ctx) if r.status is RunStatus.FAILED]
    assert sorted(r.loop for r in failed) == ["accounts", "patch_fees"]
    assert all(r.error and "Alpaca" in r.error for r in failed), [r.error for r in failed]

    with alpaca._lock:  # the broker heals
        alpaca._faults.clear()
    report = replay(ctx)
    assert sorted(w["doc_id"] for w in report.would_pass) == ["pos-down", "pos-refused"]
    assert isinstance(ctx.bus, LocalBus)
    ctx.bus.run_until_idle()
    assert run_loop(ctx, "accounts", DS).status is RunStatus.SUCCEEDED
    assert patch_fees(ctx, DS).run is not None
    assert run_loop(ctx, "trades", DS).published == 0  # nothing left behind
    assert loaded_once(ctx.warehouse, names)
    assert run_problems(ctx) == []
    bump("real_faults", broker_faults_scripted=len(faults), broker_requests=alpaca.count(), rows_lost=0,
         rows_doubled=0)
    ctx.close()


# -- the emulators ------------------------------------------------------------------------------------------


def _need(kind: str) -> None:
    reason = emulators.missing_requirement(kind)
    if reason:
        pytest.skip(f"{kind} emulator unavailable: {reason}")


@contextmanager
def own_firestore() -> Iterator[emulators.ManagedProcess]:
    """A Firestore emulator of the test's own (a test may freeze it), with ``FIRESTORE_EMULATOR_HOST`` naming it
    for the block; it is thawed and stopped, and the variable restored, however the block ends."""
    server = emulators.start_firestore()
    saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = server.host_port
    try:
        yield server
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)
        server.stop()
        if saved is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved


def embedded(tmp_path: Path, **adapters: Any) -> Context:
    """The embedded stack with some adapters replaced; the sim broker knows every ``*-entry``/``*-exit``."""
    market = SyntheticMarketData()
    parts: dict[str, Any] = {
        "hot": SqliteHotStore(tmp_path / "hot.sqlite"), "bus": LocalBus(project="faults"),
        "warehouse": DuckDbWarehouse(":memory:"),
        "broker": SimulatedBroker(tmp_path / "broker.sqlite", clock=lambda: NIGHT_AFTER, market=market),
        "market_data": market, **adapters,
    }
    return Context(Settings(home=tmp_path, project="goldthread-test"), clock=lambda: NIGHT_AFTER, **parts)


def sim_orders(ctx: Context, names: list[str]) -> None:
    broker = ctx.broker
    assert isinstance(broker, SimulatedBroker)
    from goldthread.models.broker import OrderSide

    for n, name in enumerate(names):
        opened = SESSION + dt.timedelta(minutes=n)
        broker.submit_market_order(f"{name}-entry", "AAPL", OrderSide.BUY, Decimal(3), opened, "equity")
        broker.submit_market_order(f"{name}-exit", "AAPL", OrderSide.SELL, Decimal(3), opened + dt.timedelta(hours=1),
                                   "equity")


@pytest.mark.emulator
def test_firestore_frozen_mid_delivery_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    _need("firestore")
    from goldthread.adapters.firestore_hot_store import FirestoreHotStore

    with own_firestore() as server:
        hot = FirestoreHotStore("goldthread-faults", timeout=1.0, retry_deadline=2.0)
        ctx = embedded(tmp_path, hot=hot)
        bus = wire_local_bus(ctx, batch_size=2, min_backoff=0.5)
        names = [f"pos-{i}" for i in range(6)]
        sim_orders(ctx, names)
        write_trades(ctx, names)
        frozen: dict[str, float] = {}
        real_record = hot.record_outcomes

        def record_then_freeze(*args: Any, **kwargs: Any) -> Any:
            changed = real_record(*args, **kwargs)
            if "at" not in frozen:  # after the first batch is archived and counted, the store stops answering
                os.killpg(server.process.pid, signal.SIGSTOP)
                frozen["at"] = time.monotonic()
                threading.Timer(6.0, os.killpg, (server.process.pid, signal.SIGCONT)).start()
            return changed

        hot.record_outcomes = record_then_freeze  # type: ignore[method-assign]
        run = run_loop(ctx, "trades", DS)
        sub = bus.subscription(ctx.settings.subscription("trades"))
        assert sub.nacked > 0, "the frozen store made deliveries fail"
        done = runs.get_run(ctx, run.run_id)
        assert done is not None and done.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
        if done.dead_lettered:  # the outage outlasted the delivery attempts: the replay recovers
            replay(ctx)
            bus.run_until_idle()
        assert loaded_once(ctx.warehouse, names)
        assert all(ledger_mark(ctx, "live_positions", n)["archived_run_id"] for n in names)
        assert run_problems(ctx) == []
        bump("real_faults", emulator_outages=1, nacked_during_outage=sub.nacked)
        ctx.close()


def start_persistent_bigquery(data_dir: Path, port: int | None = None) -> emulators.ManagedProcess:
    """bqemulator as ``start_bqemulator`` starts it, but file-backed, so a restart keeps the tables."""
    return emulators._spawn(
        "bqemulator-persistent",
        lambda p: [sys.executable, str(emulators.SHIMS), "start", "--rest-host", "127.0.0.1", "--rest-port", str(p),
                   "--grpc-host", "127.0.0.1", "--grpc-port", "0", "--project", "goldthread-test", "--persistent",
                   "--data-dir", str(data_dir), "--log-level", "warning"],
        "/readyz", lambda status, body: status == 200, env={"BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"},
        port=port, timeout=60,
    )


@pytest.mark.emulator
def test_bigquery_killed_mid_delivery_and_restarted_loses_nothing(tmp_path: Path) -> None:
    _need("bigquery")
    from goldthread.adapters.bigquery_warehouse import BigQueryWarehouse

    data = tmp_path / "bq"
    data.mkdir()
    server = start_persistent_bigquery(data)
    restarted: list[emulators.ManagedProcess] = []
    try:
        warehouse = BigQueryWarehouse("goldthread-test", "faults", endpoint=server.url, timeout=2.0,
                                      retry_deadline=2.0, job_timeout=10.0)
        ctx = embedded(tmp_path, warehouse=warehouse)
        bus = wire_local_bus(ctx, batch_size=2, min_backoff=1.0)
        names = [f"pos-{i}" for i in range(6)]
        sim_orders(ctx, names)
        write_trades(ctx, names)
        real_insert = warehouse.insert_rows

        def insert_then_kill(model: Any, rows: Any, **how: Any) -> Any:
            result = real_insert(model, rows, **how)
            if not restarted and model.__table__ == "fact_trades":
                server.stop()  # the warehouse dies with the first batch written

                def restart() -> None:
                    restarted.append(start_persistent_bigquery(data, port=server.port))

                threading.Timer(2.0, restart).start()
                restarted.append(server)  # (a marker until the restart lands)
            return result

        warehouse.insert_rows = insert_then_kill  # type: ignore[method-assign]
        run = run_loop(ctx, "trades", DS)
        deadline = time.monotonic() + 60
        while len(restarted) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        done = runs.get_run(ctx, run.run_id)
        assert done is not None
        if done.dead_lettered or done.status is RunStatus.RUNNING:
            bus.run_until_idle(max_seconds=60)
            replay(ctx)
            bus.run_until_idle(max_seconds=60)
        assert bus.subscription(ctx.settings.subscription("trades")).nacked > 0
        assert loaded_once(warehouse, names)
        assert run_problems(ctx) == []
        bump("real_faults", emulator_outages=1)
        ctx.close()
    finally:
        for proc in [*restarted[1:], server]:
            proc.stop()


@pytest.mark.emulator
def test_pubsub_killed_while_dispatching_fails_the_run_cleanly_and_the_next_dispatch_recovers(
    tmp_path: Path
) -> None:
    _need("pubsub")
    from goldthread.adapters.pubsub_bus import PubSubBus, ensure_loop_topology
    from goldthread.pipeline import dispatcher
    from goldthread.pipeline.subscriber import process_messages

    server = emulators.start_pubsub()
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = server.host_port
    second: emulators.ManagedProcess | None = None
    try:
        settings = Settings(home=tmp_path, project="goldthread-test", topic_prefix="faults")
        ensure_loop_topology(settings, ["trades"])
        bus = PubSubBus("goldthread-test", timeout=3.0)
        ctx = embedded(tmp_path, bus=bus)
        ctx.settings = settings
        names = [f"pos-{i}" for i in range(9)]
        sim_orders(ctx, names)
        write_trades(ctx, names)
        real_publish = bus.publish_batch
        calls = {"n": 0}

        def publish_then_die(topic: str, messages: Any) -> list[str]:
            calls["n"] += 1
            if calls["n"] == 2:
                server.stop()  # Pub/Sub goes away between two batches of the dispatch
            return real_publish(topic, messages)

        bus.publish_batch = publish_then_die  # type: ignore[method-assign]
        saved_batch, dispatcher.PUBLISH_BATCH = dispatcher.PUBLISH_BATCH, 4
        try:
            with pytest.raises(GoldthreadError) as info:
                dispatcher.dispatch(ctx, "trades", DS)
        finally:
            dispatcher.PUBLISH_BATCH = saved_batch
        failed = runs.list_runs(ctx, "trades")[0]
        assert failed.status is RunStatus.FAILED and failed.published == 4 and "publish" in (failed.error or "")
        assert str(info.value)

        second = emulators.start_pubsub()  # back, empty: Terraform's topology again, a new client
        os.environ["PUBSUB_EMULATOR_HOST"] = second.host_port
        ensure_loop_topology(settings, ["trades"])
        ctx.bus.close()
        ctx._adapters["bus"] = PubSubBus("goldthread-test", timeout=10.0)  # type: ignore[attr-defined]
        run = dispatcher.dispatch(ctx, "trades", DS)
        assert run.published == len(names)  # nothing was archived: every record is published again
        pulled = 0
        deadline = time.monotonic() + 60
        while pulled < len(names) and time.monotonic() < deadline:
            got = ctx.bus.pull(settings.subscription("trades"), max_messages=10, timeout=2)  # type: ignore[attr-defined]
            outcomes = process_messages(ctx, [p.message for p in got])
            ctx.bus.ack(settings.subscription("trades"), [p.ack_id for p, o in zip(got, outcomes, strict=True)  # type: ignore[attr-defined]
                                                          if o is None])
            pulled += len(got)
        assert loaded_once(ctx.warehouse, names)
        final = runs.get_run(ctx, run.run_id)
        assert final is not None and final.status is RunStatus.SUCCEEDED and final.reconciled
        bump("real_faults", emulator_outages=1)
        ctx.close()
    finally:
        for proc in (server, second):
            if proc is not None:
                proc.stop()
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved


@pytest.mark.emulator
def test_on_firestore_a_days_run_finds_bare_documents_whatever_type_their_time_is(tmp_path: Path) -> None:
    """Issue 16 item 2 on the real store: documents without any goldthread field, their ``closed_at`` a Firestore
    timestamp or ISO text, are found by a day's range queries without a sweep; a record of another day is not."""
    _need("firestore")
    from goldthread.adapters.firestore_hot_store import FirestoreHotStore

    with own_firestore():
        hot = FirestoreHotStore("goldthread-bare")
        ctx = embedded(tmp_path, hot=hot)
        ctx.settings = ctx.settings.with_(sweep_every_days=7)  # Firestore's schedule: no sweep on most days
        wire_local_bus(ctx, batch_size=10, min_backoff=0.01)
        names = ["pos-ts", "pos-text", "pos-other-day"]
        sim_orders(ctx, names)
        write_trades(ctx, names)
        text = dict(hot.get("live_positions", "pos-text") or {})
        text["closed_at"] = text["closed_at"].astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
        hot.put("live_positions", "pos-text", text)  # the bot wrote its time as text, in New York's offset
        other = dict(hot.get("live_positions", "pos-other-day") or {})
        other["closed_at"] = other["closed_at"] + dt.timedelta(days=2)
        hot.put("live_positions", "pos-other-day", other)
        for name in names:
            assert not {"archived_run_id", "dead_lettered_run_id"} & set(hot.get("live_positions", name) or {})
        assert not ctx.settings.sweeps_on(DS)  # DS is no multiple of 7 days from day 1: not a sweep day

        run = run_loop(ctx, "trades", DS)

        assert (run.published, run.loaded, run.details.get("swept")) == (2, 2, False)
        assert loaded_once(ctx.warehouse, ["pos-ts", "pos-text"])
        assert ledger_mark(ctx, "live_positions", "pos-other-day")["archived_run_id"] is None
        ctx.close()


def test_on_firestore_a_first_delivery_is_counted_and_marked_by_one_blind_write(tmp_path: Path) -> None:
    """Issue 16 item 9 on the real store: a first delivery's outcome, its ledger mark and the run's counters are
    one batch that reads nothing (the counters come back from the write); a redelivery of a counted item is
    refused by that batch and recorded the careful way, adding nothing; the run finishes and reconciles."""
    _need("firestore")
    from goldthread.adapters.firestore_hot_store import FirestoreHotStore
    from goldthread.models import Loop, WorkItem

    with own_firestore():
        hot = FirestoreHotStore("goldthread-blind")
        ctx = embedded(tmp_path, hot=hot)
        bus = wire_local_bus(ctx, batch_size=2, min_backoff=0.01)
        names = [f"pos-{i}" for i in range(6)]
        sim_orders(ctx, names)
        write_trades(ctx, names)
        real_record, complete = hot.record_outcomes, []

        def spy(run_id: str, outcomes: Any, merges: Any = None, **how: Any) -> Any:
            got = real_record(run_id, outcomes, merges, **how)
            complete.append(got.complete)
            return got

        hot.record_outcomes = spy  # type: ignore[method-assign]
        run = run_loop(ctx, "trades", DS)
        assert (run.status, run.published, run.loaded) == (RunStatus.SUCCEEDED, 6, 6)
        assert complete == [False, False, False]  # three batches of two, each one blind write
        for name in names:
            mark = ledger_mark(ctx, "live_positions", name)
            assert mark["archived_run_id"] == run.run_id and mark["digest"] and not mark.get("due_again")
        assert hot.item_outcomes(run.run_id) == {f"trades:{n}": "loaded" for n in names}

        data, attributes = WorkItem(run_id=run.run_id, loop=Loop.TRADES, ds=DS, doc_id="pos-0",
                                    published_at=NIGHT_AFTER).to_message()
        ctx.bus.publish(ctx.settings.topic(Loop.TRADES), data, attributes)  # Pub/Sub delivers it again
        bus.run_until_idle()
        again = runs.get_run(ctx, run.run_id)
        assert complete[-1] is True  # refused blind, recorded carefully: nothing added
        assert again is not None and (again.status, again.published, again.loaded, again.duplicates) == (
            RunStatus.SUCCEEDED, 6, 6, 0)
        assert loaded_once(ctx.warehouse, names)
        assert run_loop(ctx, "trades", DS).published == 0
        ctx.close()
