"""The one builder of ``fact_trades`` rows, used by Loop A, the price patch and the fee patch alike.

Every row is constructed through the ``FactTrade`` model (SchemaGuardian on the way out), never copied
with ``model_copy(update=...)``, which would skip validation: a patch that would produce an invalid row
fails with the record named instead of writing it. Every derived column (the broker's fills, the
discrepancies and their flag, P&L, return, holding time, partition day, key) is computed here from the
same inputs, so a patched row is exactly the row Loop A would build from the corrected facts.

The price discrepancy rule: ``(bot - broker) / broker`` in basis points per leg, and
``price_discrepancy_flagged`` is true when either leg is beyond the tolerance
(``GOLDTHREAD_PRICE_TOLERANCE_BPS``, default 50), false when the known legs are within it, null when no
leg can be compared (a price unknown). It is a flag, not a dead letter: P&L already uses the broker's
fill, so the row is right; the flag tells someone to look at the bot's price feed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from pydantic import ValidationError

from goldthread.loops.base import unbuildable
from goldthread.models.broker import BrokerOrder
from goldthread.models.hot import LivePosition, PositionStatus, Side
from goldthread.models.types import quantize9
from goldthread.models.warehouse import FactTrade, row_id_for

_BPS = Decimal(10000)


def discrepancy_bps(bot: Decimal | None, broker: Decimal | None) -> Decimal | None:
    """(bot - broker) / broker in basis points, when both prices are known and positive."""
    if not bot or not broker:
        return None
    return quantize9((bot - broker) / broker * _BPS)


def effective_price(bot: Decimal | None, order: BrokerOrder | None) -> Decimal | None:
    """The real fill: the broker's when it reports one, else the bot's if positive, else unknown."""
    if order is not None and order.is_filled:
        return order.filled_avg_price
    return bot if bot else None


def trade_pnl(
    side: Side, qty: Decimal, multiplier: Decimal, entry: Decimal | None, exit_: Decimal | None, fee: Decimal
) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """Gross P&L, net P&L (gross - fee) and return in percent of entry notional; None if a price is unknown."""
    if entry is None or exit_ is None:
        return None, None, None
    direction = 1 if side is Side.LONG else -1
    gross = quantize9((exit_ - entry) * qty * multiplier * direction)
    net = quantize9(gross - fee)
    notional = entry * qty * multiplier
    return gross, net, quantize9(net / notional * 100) if notional else None


@dataclass(frozen=True)
class LegFill:
    """What the broker reported for one leg: its fill price and quantity, None while unfilled."""

    price: Decimal | None = None
    qty: Decimal | None = None

    @classmethod
    def of(cls, order: BrokerOrder | None) -> LegFill:
        """The leg as ``order`` reports it now (nothing when the order has no usable fill)."""
        if order is None or not order.is_filled:
            return cls()
        return cls(order.filled_avg_price, order.filled_qty)


@dataclass(frozen=True)
class FeeState:
    """The fee columns of a row: the broker's actual fee once the fee patch finalised it."""

    actual_fee_usd: Decimal | None = None
    fee_finalized: bool = False


@dataclass(frozen=True)
class RowMeta:
    """Who loaded the row and with which strategy version: kept unchanged by the patches."""

    run_id: str
    loaded_at: dt.datetime
    strategy_sk: str | None


def flagged(entry_bps: Decimal | None, exit_bps: Decimal | None, tolerance_bps: Decimal) -> bool | None:
    """True when a leg's discrepancy is beyond the tolerance, False when the known legs are within, else None."""
    known = [abs(b) for b in (entry_bps, exit_bps) if b is not None]
    if not known:
        return None
    return any(b > tolerance_bps for b in known)


def build_fact_trade(
    p: LivePosition, entry: LegFill, exit_: LegFill, meta: RowMeta, tolerance_bps: Decimal,
    fee: FeeState = FeeState(),
) -> FactTrade:
    """The ``fact_trades`` row of CLOSED position ``p`` with the broker's legs, validated by the model.

    The real fills are the broker's when it reports them, else the bot's (if positive); net P&L subtracts
    the actual fee once finalised, else the bot's estimate. Raises ``RecordValidationError`` naming the
    position when the values cannot make a valid row (a P&L beyond 38 digits, inconsistent fee state).
    """
    try:
        assert p.exit_order_id is not None and p.closed_at is not None, "a CLOSED position has both"
        entry_price = entry.price if entry.price else (p.entry_filled_avg_price or None)
        exit_price = exit_.price if exit_.price else (p.exit_filled_avg_price or None)
        actual = quantize9(fee.actual_fee_usd) if fee.actual_fee_usd is not None else None
        charged = actual if fee.fee_finalized and actual is not None else p.est_fee_usd
        gross, net, ret = trade_pnl(p.side, p.qty, p.multiplier, entry_price, exit_price, charged)
        entry_bps = discrepancy_bps(p.entry_filled_avg_price, entry.price)
        exit_bps = discrepancy_bps(p.exit_filled_avg_price, exit_.price)
        return FactTrade(
            row_id=row_id_for("fact_trades", p.position_id),
            ds=p.closed_at.date(), run_id=meta.run_id, loaded_at=meta.loaded_at, is_canary=p.is_canary,
            position_id=p.position_id, signal_id=p.signal_id, strategy_id=p.strategy_id,
            strategy_version=p.strategy_version, strategy_sk=meta.strategy_sk, symbol=p.symbol,
            asset_class=p.asset_class, side=p.side, qty=p.qty, multiplier=p.multiplier,
            entry_order_id=p.entry_order_id, exit_order_id=p.exit_order_id,
            entry_price=p.entry_filled_avg_price or None, exit_price=p.exit_filled_avg_price or None,
            broker_entry_price=entry.price, broker_exit_price=exit_.price,
            broker_entry_qty=entry.qty, broker_exit_qty=exit_.qty,
            entry_discrepancy_bps=entry_bps, exit_discrepancy_bps=exit_bps,
            price_discrepancy_flagged=flagged(entry_bps, exit_bps, tolerance_bps),
            opened_at=p.opened_at, closed_at=p.closed_at,
            holding_seconds=int((p.closed_at - p.opened_at).total_seconds()),
            gross_pnl_usd=gross, est_fee_usd=p.est_fee_usd, actual_fee_usd=actual,
            fee_finalized=fee.fee_finalized, net_pnl_usd=net, return_pct=ret,
        )
    except (ValidationError, ArithmeticError) as exc:
        raise unbuildable("FactTrade", p.position_id, exc) from exc


def position_of(row: FactTrade) -> LivePosition:
    """The CLOSED position a row was built from, as the bot recorded it (for a patch rebuilding the row).

    Raises ``RecordValidationError`` naming the row's position if its values no longer make a position.
    """
    try:
        return LivePosition(
            position_id=row.position_id, signal_id=row.signal_id, strategy_id=row.strategy_id,
            strategy_version=row.strategy_version, symbol=row.symbol, asset_class=row.asset_class, side=row.side,
            qty=row.qty, multiplier=row.multiplier, entry_order_id=row.entry_order_id,
            exit_order_id=row.exit_order_id, entry_filled_avg_price=row.entry_price,
            exit_filled_avg_price=row.exit_price, opened_at=row.opened_at, closed_at=row.closed_at,
            status=PositionStatus.CLOSED, est_fee_usd=row.est_fee_usd, is_canary=row.is_canary,
        )
    except ValidationError as exc:
        raise unbuildable("FactTrade", row.position_id, exc) from exc


def rebuild(row: FactTrade, tolerance_bps: Decimal, *, p: LivePosition | None = None, entry: LegFill | None = None,
            exit_: LegFill | None = None, fee: FeeState | None = None) -> FactTrade:
    """``row`` rebuilt through :func:`build_fact_trade` with some of its inputs replaced (a patch's change);
    what is not replaced is taken from the row itself, and the row's run, load time and version are kept."""
    return build_fact_trade(
        p or position_of(row),
        entry or LegFill(row.broker_entry_price, row.broker_entry_qty),
        exit_ or LegFill(row.broker_exit_price, row.broker_exit_qty),
        RowMeta(row.run_id, row.loaded_at, row.strategy_sk), tolerance_bps,
        fee or FeeState(row.actual_fee_usd, row.fee_finalized),
    )

