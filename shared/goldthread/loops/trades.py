"""Loop A: archive CLOSED positions into ``fact_trades`` with the broker's fills and the strategy version.

For each position: validate it (SchemaGuardian), fetch its entry and exit orders from the broker and
record the broker's fill price and quantity beside the bot's (with the discrepancy in basis points),
resolve the strategy version in force when its signal was created (``dim_strategy``, SCD type 2), and
compute gross and net P&L, return and holding time. The actual fee is unknown until the broker posts
it (T+1); the row carries the estimate and ``fee_finalized = false`` until the fee patch runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import ValidationError

from goldthread.errors import BrokerRequestError, PermanentError, RecordValidationError, TransientError
from goldthread.loops.base import BuildResult, LoopSpec, check_record_id, day_bounds, unbuildable
from goldthread.loops.strategies import Version, resolve_version, sync_dim_strategy
from goldthread.models import LivePosition, LiveSignal, SchemaGuardian
from goldthread.models.broker import BrokerOrder
from goldthread.models.hot import PositionStatus, Side
from goldthread.models.types import quantize9
from goldthread.models.warehouse import FactTrade, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context

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


class TradesLoop(LoopSpec):
    """Loop A: ``live_positions`` (CLOSED) -> ``fact_trades``."""

    loop: ClassVar[Loop] = Loop.TRADES
    collection: ClassVar[str | None] = "live_positions"
    row_model = FactTrade
    time_field: ClassVar[str] = "closed_at"

    def find(self, ctx: Context, ds: dt.date) -> list[str]:
        """CLOSED positions not yet archived, closed on or before ``ds``; and unarchived positions whose
        status is neither OPEN nor CLOSED (``"closed"``, a number, missing), which no status filter would
        ever match: published, they are dead-lettered with the reason instead of left behind unseen.

        One pass over the unarchived positions, reading two fields of each (a single read per document
        on Firestore); a CLOSED one whose ``closed_at`` cannot be read is published too, to be
        dead-lettered with the reason.
        """
        assert self.collection is not None
        end = day_bounds(ds)[1]
        known = {s.value for s in PositionStatus}
        due = []
        for doc_id, data in ctx.hot.query(self.collection, self.due_filters(), fields=["status", self.time_field]):
            status = data.get("status")
            odd = not (isinstance(status, str) and status in known)
            if odd or (status == PositionStatus.CLOSED.value and self.is_due(data, end)):
                due.append(doc_id)
        return due

    def prepare(self, ctx: Context, ds: dt.date, doc_ids: Sequence[str]) -> dict[str, Any]:
        """Bring ``dim_strategy`` up to date before any item needs it."""
        return sync_dim_strategy(ctx)

    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Rows for a batch: hot documents, signals and orders are each fetched once for the batch."""
        docs, results = self.load_docs(ctx, items)
        positions: dict[str, tuple[WorkItem, LivePosition]] = {}
        for item in items:
            if item.item_id in results:
                continue
            try:
                position = SchemaGuardian.validate(LivePosition, docs[item.doc_id], item.doc_id)
                check_record_id("LivePosition", "position_id", position.position_id, item.doc_id)
                if position.status is not PositionStatus.CLOSED:
                    raise PermanentError(
                        f"position {item.doc_id} is {position.status.value}, not CLOSED",
                        [{"loc": "status", "msg": "position is not CLOSED", "type": "status"}],
                    )
                positions[item.item_id] = (item, position)
            except PermanentError as exc:
                results[item.item_id] = exc
        signals = ctx.hot.get_many_unparsed("live_signals", [p.signal_id for _, p in positions.values()])
        versions: dict[str, Version] = {}
        for item_id, (_, position) in positions.items():  # every check that needs no broker call comes first
            try:
                versions[item_id] = self._version(ctx, position, signals.get(position.signal_id))
            except PermanentError as exc:
                results[item_id] = exc
        order_ids = [oid for item_id in versions for oid in (positions[item_id][1].entry_order_id,
                                                              positions[item_id][1].exit_order_id) if oid]
        try:
            orders = ctx.broker.get_orders(order_ids) if order_ids else {}
        except TransientError as exc:  # retry these; the invalid ones above are dead-lettered with their reasons now
            results.update({item_id: exc for item_id in versions})
            return results
        now = ctx.now()
        for item_id, version in versions.items():
            item, position = positions[item_id]
            try:
                results[item_id] = self._row(item, position, version, orders, now)
            except PermanentError as exc:
                results[item_id] = exc
            except (ValidationError, ArithmeticError) as exc:
                results[item_id] = unbuildable("FactTrade", item.doc_id, exc)
        return results

    def _version(self, ctx: Context, p: LivePosition, signal_doc: Mapping[str, Any] | str | None) -> Version:
        """The strategy version in force when the position's (valid) signal was created."""
        if signal_doc is None:
            raise PermanentError(
                f"position {p.position_id}: its signal {p.signal_id} does not exist",
                [{"loc": "signal_id", "msg": f"live_signals/{p.signal_id} not found", "type": "not_found"}],
            )
        try:
            signal = SchemaGuardian.validate(LiveSignal, signal_doc, p.signal_id)
        except RecordValidationError as exc:
            errors = [{**e, "loc": f"signal.{e['loc']}" if e["loc"] else "signal"} for e in exc.errors]
            raise RecordValidationError("LivePosition", p.position_id, errors) from exc
        return resolve_version(ctx, p.strategy_id, p.strategy_version, signal.created_at)

    def _row(
        self, item: WorkItem, p: LivePosition, version: Version, orders: dict[str, BrokerOrder], now: dt.datetime
    ) -> FactTrade:
        assert p.exit_order_id is not None and p.closed_at is not None
        missing = [oid for oid in (p.entry_order_id, p.exit_order_id) if oid not in orders]
        if missing:
            raise BrokerRequestError(
                f"position {p.position_id}: the broker does not know order(s) {', '.join(missing)}",
                [{"loc": "entry_order_id" if m == p.entry_order_id else "exit_order_id",
                  "msg": f"order {m} unknown to the broker", "type": "broker_unknown_order"} for m in missing],
            )
        entry_order, exit_order = orders[p.entry_order_id], orders[p.exit_order_id]
        entry = effective_price(p.entry_filled_avg_price, entry_order)
        exit_ = effective_price(p.exit_filled_avg_price, exit_order)
        gross, net, ret = trade_pnl(p.side, p.qty, p.multiplier, entry, exit_, p.est_fee_usd)
        return FactTrade(  # constructing the model validates the row (SchemaGuardian on the way out)
            row_id=row_id_for("fact_trades", p.position_id),
            ds=p.closed_at.date(), run_id=item.run_id, loaded_at=now, is_canary=p.is_canary,
            position_id=p.position_id, signal_id=p.signal_id, strategy_id=p.strategy_id,
            strategy_version=p.strategy_version, strategy_sk=version.strategy_sk, symbol=p.symbol,
            asset_class=p.asset_class, side=p.side, qty=p.qty, multiplier=p.multiplier,
            entry_order_id=p.entry_order_id, exit_order_id=p.exit_order_id,
            entry_price=p.entry_filled_avg_price or None, exit_price=p.exit_filled_avg_price or None,
            broker_entry_price=entry_order.filled_avg_price if entry_order.is_filled else None,
            broker_exit_price=exit_order.filled_avg_price if exit_order.is_filled else None,
            broker_entry_qty=entry_order.filled_qty if entry_order.is_filled else None,
            broker_exit_qty=exit_order.filled_qty if exit_order.is_filled else None,
            entry_discrepancy_bps=discrepancy_bps(p.entry_filled_avg_price, entry_order.filled_avg_price),
            exit_discrepancy_bps=discrepancy_bps(p.exit_filled_avg_price, exit_order.filled_avg_price),
            opened_at=p.opened_at, closed_at=p.closed_at,
            holding_seconds=int((p.closed_at - p.opened_at).total_seconds()),
            gross_pnl_usd=gross, est_fee_usd=p.est_fee_usd, net_pnl_usd=net, return_pct=ret,
        )
