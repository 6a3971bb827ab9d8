"""Embedded broker: a deterministic simulator that behaves like Alpaca where it matters to the data.

* Market orders fill at the synthetic price with seeded slippage; an equity order placed outside the
  regular session reports ``filled_avg_price`` 0 until the next session opens (as Alpaca does).
* Fees are not on the order: regulatory FEE and crypto CFEE activities are posted after the day ends
  (usually T+1, sometimes T+2), computed by the same fee model goldthread uses for estimates.
* The account (equity, last equity, cash, margins) is derived from the ledger as of the clock; last equity
  is the equity at the close (21:00 UTC) of the last weekday before today, as Alpaca's is the previous
  trading day's.
* The portfolio history (timeframe 1D) is recomputed from the same ledger: one point per weekday (Alpaca's
  1D history holds only days the market was open) from ``opened_on``, worth the account's equity at that
  day's 21:00 UTC close (today's point: the equity now), labelled at midnight New York as Alpaca labels
  1D points. So a day's point is exactly what the live account said at that day's close, and the
  previous point is what it called ``last_equity``.
* Option positions carry Greeks that drift deterministically by day.

The ledger lives in its own SQLite file so a bot, the loops and the patches (in separate processes)
all see the same broker.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from goldthread.adapters.synthetic_market_data import SyntheticMarketData, is_crypto
from goldthread.models.broker import (
    BrokerAccount,
    BrokerOrder,
    EquityPoint,
    FeeActivity,
    OptionPosition,
    OrderSide,
    new_york_midnight,
)
from goldthread.models.types import quantize9
from goldthread.ports.broker import Broker

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, asset_class TEXT NOT NULL, side TEXT NOT NULL,
    qty TEXT NOT NULL, price TEXT NOT NULL, submitted_at TEXT NOT NULL, reported_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_time ON orders (reported_at);
CREATE TABLE IF NOT EXISTS options (
    symbol TEXT PRIMARY KEY, qty TEXT NOT NULL, multiplier TEXT NOT NULL,
    delta TEXT NOT NULL, gamma TEXT NOT NULL, theta TEXT NOT NULL, vega TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fee_days (day TEXT PRIMARY KEY, posted_at TEXT NOT NULL);
"""


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def in_regular_session(moment: dt.datetime) -> bool:
    """US equities' regular session, 14:30-21:00 UTC on weekdays (holidays ignored)."""
    minutes = moment.hour * 60 + moment.minute
    return moment.weekday() < 5 and 14 * 60 + 30 <= minutes < 21 * 60


def session_close(day: dt.date) -> dt.datetime:
    """The simulator's close of ``day``: 21:00 UTC."""
    return dt.datetime.combine(day, dt.time(21), dt.UTC)


def previous_weekday(day: dt.date) -> dt.date:
    """The last weekday strictly before ``day``."""
    day -= dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def next_session_open(moment: dt.datetime) -> dt.datetime:
    """The next 14:30 UTC weekday open after ``moment``."""
    day = moment.date()
    candidate = dt.datetime.combine(day, dt.time(14, 30), dt.UTC)
    while candidate <= moment or candidate.weekday() >= 5:
        day += dt.timedelta(days=1)
        candidate = dt.datetime.combine(day, dt.time(14, 30), dt.UTC)
    return candidate


class SimulatedBroker(Broker):
    """The embedded broker (default). ``clock`` is the simulator's "now"; ``opened_on`` the day the account
    was opened, before which it has no history (None: it always existed)."""

    name: ClassVar[str] = "sim"

    def __init__(
        self,
        path: Path | str,
        clock: Callable[[], dt.datetime] | None = None,
        market: SyntheticMarketData | None = None,
        account_id: str = "SIM-ACCOUNT-1",
        initial_cash: Decimal = Decimal("100000"),
        seed: int = 7,
        opened_on: dt.date | None = None,
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.market = market or SyntheticMarketData()
        self.account_id = account_id
        self.initial_cash = initial_cash
        self.seed = seed
        self.opened_on = opened_on
        self.calls: dict[str, int] = {}
        self.fail_next: list[Exception] = []  # fault injection for tests: raised by the next calls

    def _count(self, what: str) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- the bot's side: trading -----------------------------------------------------------------
    def submit_market_order(
        self, order_id: str, symbol: str, side: OrderSide, qty: Decimal, at: dt.datetime, asset_class: str
    ) -> Decimal:
        """Fill a market order placed at ``at``; returns the price the bot is told.

        An equity order placed outside the regular session fills at the next open, at that moment's
        price; until then the broker reports it unfilled, so the bot is told 0 (as with Alpaca).
        """
        reported = at
        if asset_class == "equity" and not in_regular_session(at):
            reported = next_session_open(at)
        price = self._fill_price(order_id, symbol, side, reported)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO orders VALUES (?,?,?,?,?,?,?,?)",
                (order_id, symbol, asset_class, side.value, str(qty), str(price), _iso(at), _iso(reported)),
            )
        return price if reported <= at else Decimal(0)

    def _fill_price(self, order_id: str, symbol: str, side: OrderSide, at: dt.datetime) -> Decimal:
        mid = Decimal(repr(self.market.price_at(symbol, at)))
        slip_bps = Decimal(zlib.crc32(f"{self.seed}|{order_id}".encode()) % 600) / Decimal(100)  # 0-6 bps
        sign = 1 if side is OrderSide.BUY else -1
        price = mid * (1 + sign * slip_bps / Decimal(10000))
        return price.quantize(Decimal("0.01") if not is_crypto(symbol) else Decimal("0.0001"))

    def set_option_position(self, symbol: str, qty: Decimal, greeks: dict[str, Decimal], multiplier: int = 100) -> None:
        """Hold (or with qty 0, drop) an option position whose base Greeks are ``greeks``."""
        with self._lock:
            if qty == 0:
                self._db.execute("DELETE FROM options WHERE symbol=?", (symbol,))
                return
            self._db.execute(
                "INSERT OR REPLACE INTO options VALUES (?,?,?,?,?,?,?)",
                (symbol, str(qty), str(multiplier), *(str(greeks[g]) for g in ("delta", "gamma", "theta", "vega"))),
            )

    def delay_fee_posting(self, day: dt.date, posted_at: dt.datetime) -> None:
        """Post the fees of ``day`` at ``posted_at`` instead of the usual next morning (a late day)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO fee_days VALUES (?,?)", (day.isoformat(), _iso(posted_at)))

    # -- the port ----------------------------------------------------------------------------------
    def get_orders(self, order_ids: Sequence[str]) -> dict[str, BrokerOrder]:
        """Orders as the broker reports them now; unreported fills show price 0 and status accepted."""
        self._count("get_orders")
        now = _iso(self.clock())
        out: dict[str, BrokerOrder] = {}
        ids = list(dict.fromkeys(order_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for oid, symbol, _ac, side, qty, price, _submitted, reported in self._rows(
                f"SELECT * FROM orders WHERE order_id IN ({marks})", chunk
            ):
                done = reported <= now
                out[oid] = BrokerOrder(  # the stored text as a vendor sends it: the model parses and checks it
                    order_id=oid, symbol=symbol, side=side,
                    status="filled" if done else "accepted",
                    filled_qty=qty if done else "0",
                    filled_avg_price=price if done else "0",
                    filled_at=reported if done else None,
                )
        return out

    def get_account(self) -> BrokerAccount:
        """Balances derived from the ledger as of the clock; last_equity at the close of the previous weekday."""
        self._count("get_account")
        now = self.clock()
        prev_close = session_close(previous_weekday(now.date()))
        cash, long_mv, short_mv = self._balances(now)
        equity = cash + long_mv + short_mv
        last_cash, last_long, last_short = self._balances(prev_close)
        gross = long_mv - short_mv
        initial_margin = quantize9(gross * Decimal("0.5"))
        return BrokerAccount(
            account_id=self.account_id,
            equity=quantize9(equity),
            last_equity=quantize9(last_cash + last_long + last_short),
            cash=quantize9(cash),
            buying_power=quantize9(max(Decimal(0), (equity - initial_margin) * 2)),
            initial_margin=initial_margin,
            maintenance_margin=quantize9(gross * Decimal("0.25")),
            long_market_value=quantize9(long_mv),
            short_market_value=quantize9(short_mv),
        )

    def _equity(self, moment: dt.datetime) -> Decimal:
        cash, long_mv, short_mv = self._balances(moment)
        return quantize9(cash + long_mv + short_mv)

    def _existed(self, day: dt.date) -> bool:
        return self.opened_on is None or day >= self.opened_on

    def get_portfolio_history(self, start: dt.date, end: dt.date) -> list[EquityPoint]:
        """Daily equity from the ledger: each weekday's equity at its 21:00 UTC close (today's: now), for the
        weekdays from ``start`` to ``end`` whose New York day has begun and on which the account existed.

        ``base_value`` is the close of the weekday before ``start`` when the account existed then
        (``base_value_asof``), else the first point's equity, as Alpaca does.
        """
        self._count("get_portfolio_history")
        now = self.clock()
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        days = [d for d in days if d.weekday() < 5 and self._existed(d) and new_york_midnight(d) <= now]
        equities = [(d, self._equity(min(session_close(d), now))) for d in days]
        before = previous_weekday(start)
        base_asof: dt.date | None = None
        base = equities[0][1] if equities else None
        if self._existed(before) and (prior := self._equity(session_close(before))) != 0:
            base, base_asof = prior, before
        return [
            EquityPoint(
                timestamp=new_york_midnight(d), equity=equity, base_value=base, base_value_asof=base_asof,
                profit_loss=quantize9(equity - base) if base is not None else None,
                profit_loss_pct=quantize9(equity / base - 1) if base else None,
            )
            for d, equity in equities
        ]

    def _balances(self, moment: dt.datetime) -> tuple[Decimal, Decimal, Decimal]:
        cash = self.initial_cash
        holdings: dict[str, Decimal] = {}
        for symbol, side, qty, price in self._rows(
            "SELECT symbol, side, qty, price FROM orders WHERE reported_at <= ?", (_iso(moment),)
        ):
            signed = Decimal(qty) if side == "buy" else -Decimal(qty)
            cash -= signed * Decimal(price)
            holdings[symbol] = holdings.get(symbol, Decimal(0)) + signed
        for activity in self._posted_fees_until(moment):
            cash += activity.net_amount
        long_mv = short_mv = Decimal(0)
        for symbol, qty in holdings.items():
            if qty == 0:
                continue
            value = qty * Decimal(repr(self.market.price_at(symbol, moment)))
            if qty > 0:
                long_mv += value
            else:
                short_mv += value
        return cash, long_mv, short_mv

    def get_option_positions(self) -> list[OptionPosition]:
        """Option positions; each Greek drifts by a deterministic daily factor in [0.8, 1.2]."""
        self._count("get_option_positions")
        day = self.clock().date().isoformat()
        out = []
        for symbol, qty, mult, *greeks in self._rows("SELECT * FROM options ORDER BY symbol"):
            factor = Decimal(80 + zlib.crc32(f"{symbol}|{day}".encode()) % 41) / Decimal(100)
            d, g, t, v = (quantize9(Decimal(x) * factor) for x in greeks)
            out.append(OptionPosition(symbol=symbol, qty=Decimal(qty), multiplier=Decimal(mult),
                                      delta=d, gamma=g, theta=t, vega=v))
        return out

    def fee_posting_time(self, day: dt.date) -> dt.datetime:
        """When the fees of ``day`` are posted: next day 02:00 UTC unless delayed."""
        row = self._rows("SELECT posted_at FROM fee_days WHERE day=?", (day.isoformat(),))
        if row:
            return dt.datetime.fromisoformat(row[0][0])
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2), dt.UTC)

    def get_fee_activities(self, day: dt.date) -> list[FeeActivity]:
        """FEE/CFEE activities of ``day`` if posted by now, else an empty list (not yet posted)."""
        self._count("get_fee_activities")
        if self.fee_posting_time(day) > self.clock():
            return []
        return self._fee_activities(day)

    def _posted_fees_until(self, moment: dt.datetime) -> list[FeeActivity]:
        first = self._rows("SELECT MIN(reported_at) FROM orders")[0][0]
        if first is None:
            return []
        out: list[FeeActivity] = []
        day = dt.datetime.fromisoformat(first).date()
        while day <= moment.date():
            if self.fee_posting_time(day) <= moment:
                out.extend(self._fee_activities(day))
            day += dt.timedelta(days=1)
        return out

    def fills_of_day(self, day: dt.date) -> list[dict[str, Any]]:
        """The fills executed on ``day`` (UTC, by fill time), for the fee model."""
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        rows = self._rows(
            "SELECT order_id, symbol, asset_class, side, qty, price FROM orders "
            "WHERE reported_at >= ? AND reported_at < ? ORDER BY order_id",
            (_iso(start), _iso(start + dt.timedelta(days=1))),
        )
        return [
            {"order_id": r[0], "symbol": r[1], "asset_class": r[2], "side": r[3], "qty": Decimal(r[4]),
             "price": Decimal(r[5])}
            for r in rows
        ]

    def _fee_activities(self, day: dt.date) -> list[FeeActivity]:
        from goldthread.analytics.fees import FeeSchedule, Fill, daily_fee_activities

        fills = [
            Fill(key=f["order_id"], symbol=f["symbol"], asset_class=f["asset_class"], side=f["side"],
                 qty=f["qty"], price=f["price"], day=day)
            for f in self.fills_of_day(day)
        ]
        return daily_fee_activities(fills, day, FeeSchedule()) if fills else []

    def close(self) -> None:
        """Close the ledger file."""
        with self._lock:
            self._db.close()


