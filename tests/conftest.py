"""Shared fixtures: an embedded ``Context`` on a settable clock, and factories of valid hot records.

``ctx`` is what the local runner builds, but on ``tmp_path``: a SQLite hot store, the local bus wired
with ``min_backoff=0`` (so retries never sleep), an in-memory DuckDB warehouse, the simulated broker
and synthetic market data, all reading the same ``clock``. ``make`` writes valid signals, positions
and strategy versions through ``HotWriter`` and their orders through ``SimulatedBroker``, so a test
only spells out what it is about.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.adapters.local_bus import LocalBus
from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings
from goldthread.models import AssetClass, LivePosition, LiveSignal, Side, SignalStatus, Strategy
from goldthread.models.broker import BrokerOrder, OrderSide
from goldthread.models.hot import PositionStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import wire_local_bus
from goldthread.writer import POSITIONS, SIGNALS, HotWriter, document_of
from hypothesis import settings as hypothesis_settings

pytest_plugins = ["tests.support.recording"]  # the fake Alpaca server, and the real Alpaca adapter on it

# The suite (`make test`, CI) runs each property on a fixed, reproducible set of examples, so a red CI
# always names a case anyone can rerun; `make fuzz` explores fresh random examples and is how new cases
# are found (each one found is then pinned as an explicit test).
hypothesis_settings.register_profile("suite", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("GOLDTHREAD_HYPOTHESIS_PROFILE", "suite"))

UTC = dt.UTC
DS = dt.date(2024, 3, 5)  # a Tuesday
SESSION = dt.datetime(2024, 3, 5, 15, 0, tzinfo=UTC)  # inside the US regular session (14:30-21:00 UTC)
NIGHT_AFTER = dt.datetime(2024, 3, 6, 3, 0, tzinfo=UTC)  # when the scheduler runs the loops for DS
DEPLOYED = dt.datetime(2024, 3, 1, tzinfo=UTC)


class Clock:
    """A settable clock shared by the pipeline and the simulated broker."""

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> dt.datetime:
        return self.moment

    def set(self, moment: dt.datetime) -> None:
        """Jump to ``moment``."""
        self.moment = moment

    def advance(self, delta: dt.timedelta) -> None:
        """Move forward by ``delta``."""
        self.moment += delta


class PinnedBroker(SimulatedBroker):
    """The simulator, except that a test may pin the fill price of an order id (``pinned``), copy an order
    under another id (``copy_order``) and change what the broker reports of an order (``reported``: fields
    such as ``status``, ``filled_qty`` or ``filled_at``, validated as the broker's order)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned: dict[str, Decimal] = {}
        self.reported: dict[str, dict[str, Any]] = {}

    def _fill_price(self, order_id: str, symbol: str, side: OrderSide, at: dt.datetime) -> Decimal:
        if order_id in self.pinned:
            return self.pinned[order_id]
        return super()._fill_price(order_id, symbol, side, at)

    def copy_order(self, order_id: str, new_id: str) -> None:
        """Place an identical order (symbol, side, quantity, price, times) under ``new_id``."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO orders SELECT ?, symbol, asset_class, side, qty, price, submitted_at, "
                "reported_at FROM orders WHERE order_id = ?", (new_id, order_id),
            )

    def get_orders(self, order_ids: Sequence[str]) -> dict[str, BrokerOrder]:
        """The simulator's orders, with the fields of ``reported`` replacing what it would say."""
        out = super().get_orders(order_ids)
        for order_id, fields in self.reported.items():
            if order_id in out:
                out[order_id] = BrokerOrder.model_validate({**out[order_id].model_dump(), **fields})
        return out


@pytest.fixture
def clock() -> Clock:
    """The shared clock, starting the night after ``DS``."""
    return Clock(NIGHT_AFTER)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings (5 delivery attempts, 1 h run timeout) with the home in ``tmp_path``."""
    return Settings(home=tmp_path / "home")


def embedded_context(
    tmp_path: Path, clock: Clock, settings: Settings, market: Any = None, batch_size: int = 2000
) -> Context:
    """What the local runner builds, on ``tmp_path``: SQLite hot store, the local bus wired with no retry
    backoff, an in-memory DuckDB, the pinnable simulator; ``market`` replaces the synthetic bars."""
    synthetic = SyntheticMarketData()
    broker = PinnedBroker(tmp_path / "broker.sqlite", clock=clock, market=synthetic)
    context = Context(
        settings, clock=clock, hot=SqliteHotStore(tmp_path / "hot.sqlite"), bus=LocalBus(project="test"),
        warehouse=DuckDbWarehouse(":memory:"), broker=broker, market_data=market or synthetic,
    )
    wire_local_bus(context, batch_size=batch_size, min_backoff=0)
    return context


@pytest.fixture
def ctx(tmp_path: Path, clock: Clock, settings: Settings) -> Iterator[Context]:
    """An embedded context on ``tmp_path`` with the local bus wired as the local runner wires it."""
    context = embedded_context(tmp_path, clock, settings)
    yield context
    context.close()


def rows(ctx: Context, table: str, where: str = "TRUE", **params: Any) -> list[dict[str, Any]]:
    """Rows of a warehouse table (``table`` is a literal name chosen by the test)."""
    return ctx.warehouse.query(f"SELECT * FROM {table} WHERE {where} ORDER BY row_id", params)


def ledger_mark(ctx: Context, collection: str, doc_id: str) -> dict[str, Any]:
    """The ledger's marks of one record (``goldthread.ledger.marks``), every mark field present (None when
    unset): goldthread keeps them there, never on the bot's document."""
    from goldthread.ledger.marks import read_marks

    held = read_marks(ctx.hot, collection, [doc_id]).get(doc_id)
    fields = ("archived_run_id", "archived_at", "dead_lettered_run_id", "loading_run_id", "digest")
    return {f: getattr(held, f) if held else None for f in fields}


def deliver(ctx: Context) -> int:
    """Deliver everything pending on the local bus (retries included)."""
    bus = ctx.bus
    assert isinstance(bus, LocalBus)
    return bus.run_until_idle(max_seconds=10)


class Factory:
    """Writes valid records the way a bot does: through ``HotWriter`` and the simulated broker."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.writer = HotWriter(ctx.hot)
        broker = ctx.broker
        assert isinstance(broker, PinnedBroker)
        self.broker = broker

    def strategy(
        self, strategy_id: str = "momo", version: str = "1.0", deployed_at: dt.datetime = DEPLOYED, **params: Any
    ) -> Strategy:
        """Register one strategy version."""
        s = Strategy(strategy_id=strategy_id, version=version, deployed_at=deployed_at, params=params)
        self.writer.register_strategy(s)
        return s

    def signal(
        self,
        signal_id: str,
        *,
        strategy_id: str = "momo",
        version: str = "1.0",
        symbol: str = "AAPL",
        asset_class: AssetClass = AssetClass.EQUITY,
        side: Side = Side.LONG,
        price: Decimal = Decimal("100"),
        created_at: dt.datetime = SESSION,
        status: SignalStatus = SignalStatus.ACTIVE,
    ) -> LiveSignal:
        """Record a signal with its target 5% and stop 3% away on the correct sides."""
        sign = 1 if side is Side.LONG else -1
        s = LiveSignal(
            signal_id=signal_id, strategy_id=strategy_id, strategy_version=version, symbol=symbol,
            asset_class=asset_class, side=side, signal_price=price,
            take_profit=price * (1 + sign * Decimal("0.05")), stop_loss=price * (1 - sign * Decimal("0.03")),
            created_at=created_at, expires_at=created_at + dt.timedelta(hours=4), status=status,
        )
        self.writer.record_signal(s)
        return s

    def closed_trade(
        self,
        position_id: str,
        *,
        strategy_id: str = "momo",
        version: str = "1.0",
        symbol: str = "AAPL",
        asset_class: AssetClass = AssetClass.EQUITY,
        side: Side = Side.LONG,
        qty: Decimal = Decimal("3"),
        opened_at: dt.datetime = SESSION,
        closed_at: dt.datetime | None = None,
        broker_entry: Decimal | None = None,
        broker_exit: Decimal | None = None,
        bot_entry: Decimal | None = None,
        bot_exit: Decimal | None = None,
        fee: Decimal = Decimal("0.50"),
        multiplier: Decimal = Decimal(1),
        signal_created_at: dt.datetime | None = None,
    ) -> LivePosition:
        """A signal, its entry and exit orders at the broker, and the CLOSED position the bot wrote.

        ``broker_*`` pin the simulator's fill prices; ``bot_*`` override what the bot recorded (by
        default what the broker told it at submission: 0 for an equity order outside the session).
        """
        closed_at = closed_at or opened_at + dt.timedelta(hours=2)
        signal_id = f"sig-{position_id}"
        self.signal(
            signal_id, strategy_id=strategy_id, version=version, symbol=symbol, asset_class=asset_class,
            side=side, created_at=signal_created_at or opened_at - dt.timedelta(minutes=1),
        )
        entry_id, exit_id = f"{position_id}-entry", f"{position_id}-exit"
        buy, sell = (OrderSide.BUY, OrderSide.SELL) if side is Side.LONG else (OrderSide.SELL, OrderSide.BUY)
        for order_id, price in ((entry_id, broker_entry), (exit_id, broker_exit)):
            if price is not None:
                self.broker.pinned[order_id] = price
        told_entry = self.broker.submit_market_order(entry_id, symbol, buy, qty, opened_at, asset_class.value)
        self.writer.open_position(LivePosition(
            position_id=position_id, signal_id=signal_id, strategy_id=strategy_id, strategy_version=version,
            symbol=symbol, asset_class=asset_class, side=side, qty=qty, entry_order_id=entry_id,
            entry_filled_avg_price=told_entry if bot_entry is None else bot_entry, opened_at=opened_at,
            status=PositionStatus.OPEN, est_fee_usd=fee, multiplier=multiplier,
        ))
        told_exit = self.broker.submit_market_order(exit_id, symbol, sell, qty, closed_at, asset_class.value)
        return self.writer.close_position(position_id, exit_id, told_exit if bot_exit is None else bot_exit, closed_at)

    def raw_position(self, position_id: str, base: LivePosition, **overrides: Any) -> dict[str, Any]:
        """Write a position document directly (bypassing the writer), as a buggy bot would.

        The position gets orders of its own at the broker, copies of ``base``'s under
        ``{position_id}-entry``/``-exit`` (one order backs one position), unless ``overrides`` name the
        order ids (``entry_order_id=base.entry_order_id`` for two positions naming the same order).
        """
        orders = {}
        stem = re.sub(r"[^A-Za-z0-9_.:\-]", "_", position_id)[:100]  # a valid order id whatever the position id
        for leg in ("entry", "exit"):
            source = getattr(base, f"{leg}_order_id")
            if f"{leg}_order_id" not in overrides and source is not None:
                self.broker.copy_order(source, f"{stem}-{leg}")
                orders[f"{leg}_order_id"] = f"{stem}-{leg}"
        doc = {**document_of(base), "position_id": position_id, **orders, **overrides}
        self.ctx.hot.put(POSITIONS, position_id, doc)
        return doc

    def mark(self, doc_id: str, collection: str = POSITIONS) -> dict[str, Any]:
        """goldthread's ledger marks of a record (``ledger_mark``)."""
        return ledger_mark(self.ctx, collection, doc_id)

    def position_doc(self, position_id: str) -> dict[str, Any]:
        """The stored hot document of a position."""
        doc = self.ctx.hot.get(POSITIONS, position_id)
        assert doc is not None
        return doc

    def signal_doc(self, signal_id: str) -> dict[str, Any] | None:
        """The stored hot document of a signal."""
        return self.ctx.hot.get(SIGNALS, signal_id)


@pytest.fixture
def make(ctx: Context) -> Factory:
    """Factories of valid records in ``ctx`` (one strategy version ``momo`` 1.0 already deployed)."""
    factory = Factory(ctx)
    factory.strategy()
    return factory
