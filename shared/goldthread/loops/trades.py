"""Loop A: archive CLOSED positions into ``fact_trades`` with the broker's fills and the strategy version.

For each position: validate it (SchemaGuardian), resolve the strategy version in force when its signal
was created (``dim_strategy``, SCD type 2), fetch its entry and exit orders from the broker and check
the position against them (``broker_checks``: symbol, side, filled quantity, status, fill times; a
mismatch is dead-lettered as ``BROKER_MISMATCH``), build the row (``trade_rows.build_fact_trade``: the
broker's fill beside the bot's with the discrepancy in basis points, flagged beyond the tolerance; gross
and net P&L, return and holding time), and last claim its two orders (``order_claims``: an order
already backing another position dead-letters this one as ``ORDER_CLAIMED``). The actual fee is unknown
until the broker posts it (T+1); the row carries the estimate and ``fee_finalized = false`` until the
fee patch runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, ClassVar

from goldthread.errors import BrokerRequestError, PermanentError, RecordValidationError, TransientError
from goldthread.loops.base import BuildResult, LoopSpec, check_record_id, day_bounds
from goldthread.loops.broker_checks import FillRules, check_orders
from goldthread.loops.order_claims import Claimant, claim_orders
from goldthread.loops.strategies import Version, resolve_version, sync_dim_strategy
from goldthread.loops.trade_rows import LegFill, RowMeta, build_fact_trade, discrepancy_bps, effective_price, trade_pnl
from goldthread.models import LivePosition, LiveSignal, SchemaGuardian
from goldthread.models.broker import BrokerOrder
from goldthread.models.hot import PositionStatus
from goldthread.models.warehouse import FactTrade
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context

__all__ = ["TradesLoop", "discrepancy_bps", "effective_price", "trade_pnl"]  # the row helpers live in trade_rows


_KNOWN_STATUSES = frozenset(s.value for s in PositionStatus)


class TradesLoop(LoopSpec):
    """Loop A: ``live_positions`` (CLOSED) -> ``fact_trades``."""

    loop: ClassVar[Loop] = Loop.TRADES
    collection: ClassVar[str | None] = LivePosition.collection
    row_model = FactTrade
    time_field: ClassVar[str] = "closed_at"

    def find(self, ctx: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        """CLOSED positions closed on or before ``ds`` that the ledger has not settled; and positions whose
        status is neither OPEN nor CLOSED (``"closed"``, a number, missing), which no status filter would ever
        match: published, they are dead-lettered with the reason instead of left behind unseen. What goldthread
        0.2 wrote onto the documents, or a bot's copy of it, plays no part (``LoopSpec.find_due``)."""
        return self.find_due(ctx, ds, sweep)

    def wanted(self, ctx: Context, data: Mapping[str, Any], ds: dt.date) -> bool:
        """CLOSED and closed by the end of ``ds`` (or with an unreadable ``closed_at``), or of an unknown status."""
        status = data.get("status")
        if not (isinstance(status, str) and status in _KNOWN_STATUSES):
            return True
        return status == PositionStatus.CLOSED.value and self.is_due(data, day_bounds(ds)[1])

    def prepare(self, ctx: Context, ds: dt.date, doc_ids: Sequence[str]) -> dict[str, Any]:
        """Bring ``dim_strategy`` up to date before any item needs it."""
        return sync_dim_strategy(ctx)

    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Rows for a batch: hot documents, signals and orders are each fetched once for the batch."""
        return self._build(ctx, items, dry_run=False)

    def check(self, ctx: Context, item: WorkItem) -> PermanentError | None:
        """Would ``item`` pass now? Builds without writing anything: order claims are only read."""
        outcome = self._build(ctx, [item], dry_run=True).get(item.item_id)
        if isinstance(outcome, TransientError):
            raise outcome
        return outcome if isinstance(outcome, PermanentError) else None

    def _build(self, ctx: Context, items: Sequence[WorkItem], dry_run: bool) -> BuildResult:
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
        signals = ctx.hot.get_many_unparsed(LiveSignal.collection, [p.signal_id for _, p in positions.values()])
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
        rules = FillRules.of(ctx.settings)
        rows: dict[str, FactTrade] = {}
        for item_id, version in versions.items():
            item, position = positions[item_id]
            try:
                rows[item_id] = self._row(item, position, version, orders, now, rules, ctx.settings.price_tolerance_bps)
            except PermanentError as exc:
                results[item_id] = exc
        # Last, the orders: claimed only by positions that passed everything else (canaries never claim).
        claimants = {item_id: Claimant(positions[item_id][1], positions[item_id][0].run_id)
                     for item_id in rows if not positions[item_id][1].is_canary}
        refused = claim_orders(ctx, claimants, dry_run=dry_run)
        for item_id, row in rows.items():
            results[item_id] = refused.get(item_id, row)
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
        self, item: WorkItem, p: LivePosition, version: Version, orders: dict[str, BrokerOrder], now: dt.datetime,
        rules: FillRules, tolerance_bps: Decimal,
    ) -> FactTrade:
        """The position's row once its orders exist and agree with it (``BrokerMismatchError`` if not)."""
        assert p.exit_order_id is not None and p.closed_at is not None
        missing = [oid for oid in (p.entry_order_id, p.exit_order_id) if oid not in orders]
        if missing:
            raise BrokerRequestError(
                f"position {p.position_id}: the broker does not know order(s) {', '.join(missing)}",
                [{"loc": "entry_order_id" if m == p.entry_order_id else "exit_order_id",
                  "msg": f"order {m} unknown to the broker", "type": "broker_unknown_order"} for m in missing],
            )
        entry_order, exit_order = orders[p.entry_order_id], orders[p.exit_order_id]
        # the canary references two standing orders on every run: their fill times are checked by nothing
        check_orders(p, entry_order, exit_order, replace(rules, check_times=False) if p.is_canary else rules)
        return build_fact_trade(p, LegFill.of(entry_order), LegFill.of(exit_order),
                                RowMeta(item.run_id, now, version.strategy_sk), tolerance_bps)
