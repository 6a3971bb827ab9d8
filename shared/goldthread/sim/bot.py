"""A simulated trading bot: what a small quant team's Alpaca bot writes to Firestore, day by day.

It registers strategy versions (one is upgraded mid-way, so the SCD history matters), emits signals
at random times, lets a risk filter reject some (with reasons), lets others expire, executes the rest
through the simulated broker and closes them hours later. Some equity orders are placed outside the
regular session, so the broker reports a zero fill price until the next open (the price patch's job).
A few documents are deliberately broken the ways real bots break them, to show that garbage never
reaches the warehouse and nothing is silently lost.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from goldthread.adapters.sim_broker import SimulatedBroker, in_regular_session
from goldthread.adapters.synthetic_market_data import CRYPTO_UNIVERSE, EQUITY_UNIVERSE, SyntheticMarketData
from goldthread.analytics.fees import FeeSchedule, Fill, total_estimated_fees
from goldthread.loops.base import parse_time
from goldthread.models import AssetClass, LivePosition, LiveSignal, Side, SignalStatus, Strategy
from goldthread.models.broker import OrderSide
from goldthread.models.hot import PositionStatus
from goldthread.ports.hot_store import HotStore
from goldthread.writer import POSITIONS, REJECTED, SIGNALS, HotWriter

REJECTION_REASONS = ("MAX_EXPOSURE", "DAILY_LOSS_LIMIT", "LOW_LIQUIDITY", "CORRELATION_LIMIT")


@dataclass(frozen=True)
class StrategyPlan:
    """A strategy, what it trades, and when each version was deployed (days after the start)."""

    strategy_id: str
    crypto: bool
    versions: tuple[tuple[str, int], ...]
    tp_pct: float
    sl_pct: float


PLANS = (
    StrategyPlan("momentum", False, (("1.0", 0), ("1.1", 10)), 0.012, 0.008),
    StrategyPlan("mean_reversion", False, (("2.0", 0),), 0.008, 0.006),
    StrategyPlan("crypto_breakout", True, (("1.0", 0), ("1.1", 7)), 0.03, 0.015),
)


@dataclass
class _Open:
    position: LivePosition
    close_at: dt.datetime


@dataclass
class SimBot:
    """Drives the writer API and the simulated broker with a seeded random generator."""

    hot: HotStore
    broker: SimulatedBroker
    market: SyntheticMarketData
    start: dt.date
    seed: int = 42
    signals_per_strategy_day: tuple[int, int] = (3, 7)
    schedule: FeeSchedule = field(default_factory=FeeSchedule)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.writer = HotWriter(self.hot)
        self.open: list[_Open] = []
        self.pending_expiry: list[tuple[dt.datetime, str]] = []
        self.counter = 0
        self.broken: list[str] = []

    def hold_options(self) -> None:
        """Open a small option book, so the account snapshot has portfolio Greeks to sum."""
        self.broker.set_option_position("SPY261218C00600000", Decimal(2), {
            "delta": Decimal("0.55"), "gamma": Decimal("0.021"), "theta": Decimal("-0.16"), "vega": Decimal("0.31")})
        self.broker.set_option_position("AAPL261218P00180000", Decimal(-3), {
            "delta": Decimal("-0.35"), "gamma": Decimal("0.018"), "theta": Decimal("-0.09"), "vega": Decimal("0.22")})

    def register_strategies(self) -> None:
        """Deploy every strategy version at its planned day."""
        for plan in PLANS:
            for version, day in plan.versions:
                deployed = dt.datetime.combine(self.start + dt.timedelta(days=day), dt.time(), dt.UTC)
                self.writer.register_strategy(Strategy(
                    strategy_id=plan.strategy_id, version=version, deployed_at=deployed,
                    params={"tp_pct": plan.tp_pct, "sl_pct": plan.sl_pct, "version_note": f"v{version}"},
                ))

    def version_at(self, plan: StrategyPlan, moment: dt.datetime) -> str:
        """The version the bot runs at ``moment``."""
        current = plan.versions[0][0]
        for version, day in plan.versions:
            if moment >= dt.datetime.combine(self.start + dt.timedelta(days=day), dt.time(), dt.UTC):
                current = version
        return current

    def _next_id(self, prefix: str, day: dt.date) -> str:
        self.counter += 1
        if prefix == "ord":  # broker order ids are UUIDs, as Alpaca's are (deterministic from the seed)
            return str(uuid.uuid5(uuid.NAMESPACE_OID, f"goldthread-sim-{self.seed}-{self.counter}"))
        return f"{prefix}-{day:%Y%m%d}-{self.counter:05d}"

    def trade_day(self, day: dt.date) -> None:
        """Everything the bot does on ``day``: signals, rejections, executions, closes, expiries."""
        events: list[tuple[dt.datetime, int, str, object]] = []
        for plan in PLANS:
            if not plan.crypto and day.weekday() >= 5:
                continue
            for _ in range(self.rng.randint(*self.signals_per_strategy_day)):
                if plan.crypto:
                    minute = self.rng.randrange(0, 1440)
                else:  # mostly in the session, sometimes just before the open (zero fill price)
                    minute = self.rng.randrange(14 * 60 + 30, 20 * 60) if self.rng.random() > 0.12 else 13 * 60
                moment = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(minutes=minute)
                events.append((moment, len(events), "signal", plan))
        for entry in list(self.open):
            if entry.close_at.date() == day:
                events.append((entry.close_at, len(events), "close", entry))
        for when, signal_id in list(self.pending_expiry):
            if when.date() == day:
                events.append((when, len(events), "expire", signal_id))
        for moment, _, kind, payload in sorted(events, key=lambda e: (e[0], e[1])):
            if kind == "signal":
                assert isinstance(payload, StrategyPlan)
                self._signal(payload, moment)
            elif kind == "close":
                assert isinstance(payload, _Open)
                self._close(payload)
            else:
                self.writer.expire_signal(str(payload))
                self.pending_expiry.remove((moment, str(payload)))

    def _signal(self, plan: StrategyPlan, moment: dt.datetime) -> None:
        symbol = self.rng.choice(CRYPTO_UNIVERSE if plan.crypto else EQUITY_UNIVERSE)
        price = Decimal(repr(round(self.market.price_at(symbol, moment), 2 if not plan.crypto else 4)))
        side = Side.LONG if self.rng.random() < 0.7 else Side.SHORT
        sign = 1 if side is Side.LONG else -1
        tp = (price * Decimal(repr(1 + sign * plan.tp_pct))).quantize(Decimal("0.0001"))
        sl = (price * Decimal(repr(1 - sign * plan.sl_pct))).quantize(Decimal("0.0001"))
        signal = LiveSignal(
            signal_id=self._next_id("sig", moment.date()), strategy_id=plan.strategy_id,
            strategy_version=self.version_at(plan, moment), symbol=symbol,
            asset_class=AssetClass.CRYPTO if plan.crypto else AssetClass.EQUITY, side=side,
            signal_price=price, take_profit=tp, stop_loss=sl, created_at=moment,
            expires_at=moment + dt.timedelta(hours=4), status=SignalStatus.ACTIVE,
        )
        self.writer.record_signal(signal)
        roll = self.rng.random()
        if roll < 0.25:
            self.writer.reject_signal(signal.signal_id, self.rng.choice(REJECTION_REASONS), moment)
        elif roll < 0.45:
            self.pending_expiry.append((signal.expires_at, signal.signal_id))
        else:
            self._execute(signal, moment + dt.timedelta(minutes=1))

    def _execute(self, signal: LiveSignal, moment: dt.datetime) -> None:
        crypto = signal.asset_class is AssetClass.CRYPTO
        budget = Decimal(self.rng.choice((2000, 5000, 10000)))
        qty = (budget / signal.signal_price).quantize(Decimal("0.0001") if crypto else Decimal(1))
        qty = max(qty, Decimal("0.0001") if crypto else Decimal(1))
        order_id = self._next_id("ord", moment.date())
        side = OrderSide.BUY if signal.side is Side.LONG else OrderSide.SELL
        price = self.broker.submit_market_order(order_id, signal.symbol, side, qty, moment, signal.asset_class.value)
        est = total_estimated_fees([
            Fill(key=order_id, symbol=signal.symbol, asset_class=signal.asset_class, side=side, qty=qty,
                 price=signal.signal_price, day=moment.date()),
            Fill(key=order_id + "x", symbol=signal.symbol, asset_class=signal.asset_class,
                 side=OrderSide.SELL if side is OrderSide.BUY else OrderSide.BUY, qty=qty,
                 price=signal.signal_price, day=moment.date()),
        ], self.schedule)
        position = LivePosition(
            position_id=self._next_id("pos", moment.date()), signal_id=signal.signal_id,
            strategy_id=signal.strategy_id, strategy_version=signal.strategy_version, symbol=signal.symbol,
            asset_class=signal.asset_class, side=signal.side, qty=qty, entry_order_id=order_id,
            entry_filled_avg_price=price, opened_at=moment, status=PositionStatus.OPEN,
            est_fee_usd=est.quantize(Decimal("0.000001")),
        )
        self.writer.open_position(position)
        hours = self.rng.choice((2, 3, 5, 20, 26)) if crypto else self.rng.choice((1, 2, 3, 22, 24))
        close_at = moment + dt.timedelta(hours=hours, minutes=self.rng.randrange(0, 50))
        if not crypto and not in_regular_session(close_at) and self.rng.random() < 0.6:
            close_at = close_at.replace(hour=19, minute=self.rng.randrange(0, 59))
        self.open.append(_Open(position, close_at))

    def _close(self, entry: _Open) -> None:
        p = entry.position
        order_id = self._next_id("ord", entry.close_at.date())
        side = OrderSide.SELL if p.side is Side.LONG else OrderSide.BUY
        price = self.broker.submit_market_order(order_id, p.symbol, side, p.qty, entry.close_at, p.asset_class.value)
        self.writer.close_position(p.position_id, order_id, price, entry.close_at)
        self.open.remove(entry)

    def _with_own_orders(self, doc: dict[str, Any], qty: Decimal | None = None) -> dict[str, Any]:
        """A copy of a CLOSED position's document with entry and exit orders of its own at the broker, placed
        at its times (``qty``, else the document's): a buggy record is still a trade of its own, never a
        second claim on another position's orders (which Loop A would refuse as ORDER_CLAIMED)."""
        out = dict(doc)
        qty = qty if qty is not None else Decimal(str(doc["qty"]))
        entry_side = OrderSide.BUY if doc.get("side") == Side.LONG.value else OrderSide.SELL
        exit_side = OrderSide.SELL if entry_side is OrderSide.BUY else OrderSide.BUY
        for leg, side, time_field in (("entry", entry_side, "opened_at"), ("exit", exit_side, "closed_at")):
            moment = parse_time(doc.get(time_field))
            if moment is None:
                continue
            order_id = self._next_id("ord", moment.date())
            price = self.broker.submit_market_order(order_id, str(doc["symbol"]), side, qty, moment,
                                                    str(doc["asset_class"]))
            out[f"{leg}_order_id"], out[f"{leg}_filled_avg_price"] = order_id, price
        return out

    def break_some_documents(self, day: dt.date) -> list[str]:
        """Write documents the way a buggy bot would (bypassing the writer API); returns their ids."""
        base = dt.datetime.combine(day, dt.time(16), dt.UTC)
        closed = [d for _, d in self.hot.query(POSITIONS) if d.get("status") == "CLOSED"][:3]
        broken = []
        if closed:
            bad = dict(self._with_own_orders(closed[0], Decimal(5)), position_id="pos-broken-qty", qty="-5")
            self.hot.put(POSITIONS, "pos-broken-qty", bad)
            broken.append("pos-broken-qty")
        if len(closed) > 1:
            bad = dict(self._with_own_orders(closed[1]), position_id="pos-broken-time",
                       closed_at=(base - dt.timedelta(days=30)).isoformat())
            self.hot.put(POSITIONS, "pos-broken-time", bad)
            broken.append("pos-broken-time")
        if len(closed) > 2:
            bad = dict(self._with_own_orders(closed[2]), position_id="pos-wrong-version", strategy_version="0.9")
            self.hot.put(POSITIONS, "pos-wrong-version", bad)
            broken.append("pos-wrong-version")
        if closed:  # its side contradicts its orders: the P&L sign would be inverted
            flipped = "short" if closed[0].get("side") == "long" else "long"
            bad = dict(self._with_own_orders(closed[0]), position_id="pos-wrong-side", side=flipped)
            self.hot.put(POSITIONS, "pos-wrong-side", bad)
            broken.append("pos-wrong-side")
        if len(closed) > 1:  # names the orders another position already stands on: a phantom trade
            bad = dict(closed[1], position_id="pos-double-claim")
            self.hot.put(POSITIONS, "pos-double-claim", bad)
            broken.append("pos-double-claim")
        rejected = [d for _, d in self.hot.query(REJECTED)][:1]
        if rejected:
            bad = dict(rejected[0], signal_id="sig-broken-barrier", take_profit=rejected[0]["stop_loss"])
            self.hot.put(REJECTED, "sig-broken-barrier", bad)
            broken.append("sig-broken-barrier")
        expired = [d for _, d in self.hot.query(SIGNALS) if d.get("status") == "EXPIRED"][:1]
        if expired:
            bad = dict(expired[0], signal_id="sig-naive-time", created_at="2024-01-01T10:00:00")
            self.hot.put(SIGNALS, "sig-naive-time", bad)
            broken.append("sig-naive-time")
        self.broken.extend(broken)
        return broken
