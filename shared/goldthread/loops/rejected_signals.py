"""Loop B: rejected signals older than the validity window -> ``fact_rejected_signals`` with theoretical P&L.

"What did our risk filter cost us?" For each rejected signal, the trade it would have been is replayed
on the bars after it by the triple-barrier rule (``goldthread.analytics.barriers``: entry at the open of
the first bar opening after ``created_at``, first touch of take-profit or stop-loss, stop first when one
bar touches both, gaps fill at the open, else time-out at the close of the last bar closing inside the
window), with the bars' real length (``Bars.timeframe``, recorded on the row as ``bars_timeframe``).
Fees are estimated with the same fee model as real trades, per unit, round trip. Missing bars are not
dropped: the row says NO_DATA with the bar count.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from goldthread.analytics.barriers import EXIT_REASONS, triple_barrier_batch
from goldthread.analytics.fees import FeeSchedule, Fill, total_estimated_fees
from goldthread.loops.bars import load_bars
from goldthread.loops.base import BuildResult, unbuildable
from goldthread.loops.counterfactual import CounterfactualLoop, columns, dec, when
from goldthread.models.broker import OrderSide
from goldthread.models.hot import AssetClass, RejectedSignal, Side
from goldthread.models.types import quantize9
from goldthread.models.warehouse import FactRejectedSignal, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import to_ns

SCHEDULE = FeeSchedule()
_DECIMALS = ("entry_price", "exit_price", "pnl_per_unit", "pnl_pct", "r_multiple", "mfe_price", "mfe_pct", "mfe_r",
             "mae_price", "mae_pct", "mae_r")


_EXACT = decimal.Context(prec=200, rounding=ROUND_HALF_EVEN)  # the fee model's context: its sums and products are exact
_CHECKS = (  # price pairs (entry, exit) the fee line must reproduce exactly before it is trusted
    (Decimal("3.141592653"), Decimal("2718.281828459")),
    (Decimal("0.000000001"), Decimal("999999999999.999999999")),
    (Decimal("123456789012345678901234567.123456789"), Decimal("7")),
)


def _fills_total(
    symbol: str, asset_class: AssetClass, side: Side, day: dt.date, entry: Decimal, exit_: Decimal
) -> Decimal:
    """The fee model's round trip of one unit, unrounded, through validated fills (the reference)."""
    opening = OrderSide.BUY if side is Side.LONG else OrderSide.SELL
    closing = OrderSide.SELL if opening is OrderSide.BUY else OrderSide.BUY
    legs = [
        Fill(key="entry", symbol=symbol, asset_class=asset_class, side=opening, qty=Decimal(1), price=entry, day=day),
        Fill(key="exit", symbol=symbol, asset_class=asset_class, side=closing, qty=Decimal(1), price=exit_, day=day),
    ]
    return total_estimated_fees(legs, SCHEDULE)


@functools.lru_cache(maxsize=1024)
def _fee_line(
    symbol: str, asset_class: AssetClass, side: Side, day: dt.date
) -> tuple[Decimal, Decimal, Decimal] | None:
    """The round trip of one unit as ``a + b * entry + c * exit``, read off the fee model at three price pairs.

    The model is affine in the price for a fixed quantity (rates per share and per dollar of notional, caps
    per share), and the line is checked against the model at ``_CHECKS`` (tiny, large, 38-digit prices), so a
    change to the model that breaks this shows here. None when the model refuses fills of this kind (a crypto
    pair not quoted in USD) or the check fails: every fee of the kind then goes through the fills."""
    one, two = Decimal(1), Decimal(2)
    try:
        with localcontext(_EXACT):
            base = _fills_total(symbol, asset_class, side, day, one, one)
            b = _fills_total(symbol, asset_class, side, day, two, one) - base
            c = _fills_total(symbol, asset_class, side, day, one, two) - base
            a = base - b - c
            for entry, exit_ in _CHECKS:
                if a + b * entry + c * exit_ != _fills_total(symbol, asset_class, side, day, entry, exit_):
                    return None
    except (ValidationError, ArithmeticError):
        return None
    return a, b, c


def _fill_price(value: Decimal) -> bool:
    """Whether a fill takes ``value`` as its price as it is: positive, finite, 9 places and at most 38 digits."""
    if not (value.is_finite() and value > 0):
        return False
    _, digits, exponent = value.as_tuple()
    return exponent == -9 and len(digits) <= 38


def fee_per_unit(signal: RejectedSignal, entry: Decimal, exit_: Decimal) -> Decimal:
    """Round-trip fee of one unit at the theoretical fills, by the same model as real trades.

    Computed on the model's line for the signal's kind of fill (``_fee_line``, exact: the same value as the
    fills give), and through the fills themselves whenever a price or the kind is not one the line covers,
    so an invalid fill still raises the fill's own ``ValidationError``."""
    day = signal.created_at.date()
    line = _fee_line(signal.symbol, signal.asset_class, signal.side, day)
    if line is not None and _fill_price(entry) and _fill_price(exit_):
        a, b, c = line
        with localcontext(_EXACT):
            total = a + b * entry + c * exit_
        return quantize9(total)
    return quantize9(_fills_total(signal.symbol, signal.asset_class, signal.side, day, entry, exit_))


class RejectedSignalsLoop(CounterfactualLoop):
    """Loop B: ``rejected_signals`` -> ``fact_rejected_signals``."""

    loop: ClassVar[Loop] = Loop.REJECTED_SIGNALS
    collection: ClassVar[str | None] = RejectedSignal.collection
    row_model = FactRejectedSignal
    time_field: ClassVar[str] = "created_at"
    signal_model = RejectedSignal

    def ready_delay(self, ctx: Context) -> tuple[dt.timedelta, str]:
        """A day is complete once its validity window has passed: its future bars exist by then."""
        window = ctx.settings.validity_window
        return window, f"needs {window.days} days of bars after the signals"

    def window(self, ctx: Context, signal: Any) -> tuple[dt.datetime, dt.datetime]:
        """From creation to the end of the validity window."""
        return signal.created_at, signal.created_at + ctx.settings.validity_window

    def find(self, ctx: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        """Unarchived rejected signals created on or before ``ds``."""
        return self.find_and_remember(ctx, ds, self.find_due(ctx, ds, sweep))

    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Triple-barrier outcomes for the batch, one vectorised call per symbol."""
        good, results = self.validated(ctx, items)
        windows = [(s.symbol, *self.window(ctx, s)) for _, s in good.values()]
        bars = load_bars(ctx, windows)
        now = ctx.now()
        for symbol, group in self.by_symbol(good).items():
            signals = [s for _, _, s in group]
            batch = triple_barrier_batch(
                bars[symbol],
                np.array([1 if s.side is Side.LONG else -1 for s in signals], dtype=np.int8),
                np.array([to_ns(s.created_at) for s in signals], dtype=np.int64),
                np.array([float(s.take_profit) for s in signals]),
                np.array([float(s.stop_loss) for s in signals]),
                np.array([to_ns(self.window(ctx, s)[1]) for s in signals], dtype=np.int64),
                bars[symbol].length_ns,
            )
            c = columns(batch, _DECIMALS, ("entry_time", "exit_time"), ("exit_reason", "bars_observed"))
            c["bars_timeframe"] = [bars[symbol].timeframe if n else None for n in c["bars_observed"]]
            for i, (item_id, item, signal) in enumerate(group):
                try:
                    results[item_id] = self._row(ctx, item, signal, c, i, now)
                except (ValidationError, ArithmeticError) as exc:  # valid inputs, an impossible row
                    results[item_id] = unbuildable("FactRejectedSignal", item.doc_id, exc)
        return results

    def _row(
        self, ctx: Context, item: WorkItem, s: RejectedSignal, c: dict[str, list[Any]], i: int, now: dt.datetime
    ) -> FactRejectedSignal:
        entry, exit_ = dec(c["entry_price"][i]), dec(c["exit_price"][i])
        pnl = dec(c["pnl_per_unit"][i])
        fee = fee_per_unit(s, entry, exit_) if entry and exit_ else None
        return FactRejectedSignal(
            row_id=row_id_for("fact_rejected_signals", s.signal_id), ds=s.created_at.date(), run_id=item.run_id,
            loaded_at=now, is_canary=s.is_canary, signal_id=s.signal_id, strategy_id=s.strategy_id,
            strategy_version=s.strategy_version, symbol=s.symbol, asset_class=s.asset_class, side=s.side,
            signal_price=s.signal_price, take_profit=s.take_profit, stop_loss=s.stop_loss,
            created_at=s.created_at, expires_at=s.expires_at, rejection_reason=s.rejection_reason,
            rejected_at=s.rejected_at, window_end=self.window(ctx, s)[1],
            entry_price=entry, entry_time=when(c["entry_time"][i]), exit_price=exit_,
            exit_time=when(c["exit_time"][i]), exit_reason=EXIT_REASONS[c["exit_reason"][i]],
            theoretical_pnl_per_unit=pnl, theoretical_pnl_pct=dec(c["pnl_pct"][i]), est_fee_per_unit=fee,
            theoretical_net_pnl_per_unit=quantize9(pnl - fee) if pnl is not None and fee is not None else None,
            r_multiple=dec(c["r_multiple"][i]), mfe_price=dec(c["mfe_price"][i]),
            mfe_pct=dec(c["mfe_pct"][i]), mfe_r=dec(c["mfe_r"][i]), mae_price=dec(c["mae_price"][i]),
            mae_pct=dec(c["mae_pct"][i]), mae_r=dec(c["mae_r"][i]), bars_observed=c["bars_observed"][i],
            bars_timeframe=c["bars_timeframe"][i],
        )
