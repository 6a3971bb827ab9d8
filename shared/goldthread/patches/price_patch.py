"""Price patch (ad hoc): fill in missing or zero fill prices from the broker's orders, with an audit trail.

Alpaca reports ``filled_avg_price`` 0 (or null) until an order placed outside market hours is
processed, so a bot may record a position without its real price. The patch finds positions whose entry
(or, once closed, exit) price is missing or zero, asks the broker for the order, and writes the broker's
``filled_avg_price`` (and ``filled_qty`` as the position's quantity, if it differs) back to the hot
document. Orders the broker still reports unfilled are left alone and counted. A position its orders
contradict (``broker_checks``: another symbol's order, the wrong side, another filled quantity ...) is not
repaired from them: it is reported in ``mismatched`` and left to Loop A's dead letter. A position already
archived also gets its ``fact_trades`` row rebuilt in the same run by Loop A's own builder
(``trade_rows.build_fact_trade``: prices, the broker's fills, quantity, discrepancies, their flag and P&L,
validated), before its hot document, so a run that fails half-way is completed by the next. A rebuilt
row that is invalid fails the run with the record named; nothing is written. Every changed value gets a
``patch_audit`` row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from goldthread.errors import RecordValidationError
from goldthread.ledger import marks, runs
from goldthread.logs import get_logger
from goldthread.loops.broker_checks import FillRules, mismatches
from goldthread.loops.trade_rows import LegFill, rebuild
from goldthread.models import LivePosition, SchemaGuardian
from goldthread.models.broker import BrokerOrder
from goldthread.models.hot import JobMetadata
from goldthread.models.warehouse import FactTrade, PatchAudit, row_id_for
from goldthread.patches.audit import audit_rows, changed_values
from goldthread.pipeline.context import Context
from goldthread.ports.hot_store import Outcome, Where

log = get_logger("price_patch")
PATCH = "patch_prices"
POSITIONS = LivePosition.collection
_ZEROES = ["0", "0.0", "0.00", "0E-9", "0.000000000"]
TRADE_COLUMNS = ("qty", "entry_price", "exit_price", "broker_entry_price", "broker_exit_price", "broker_entry_qty",
                 "broker_exit_qty", "entry_discrepancy_bps", "exit_discrepancy_bps", "gross_pnl_usd", "net_pnl_usd",
                 "return_pct", "price_discrepancy_flagged")


@dataclass
class PricePatchReport:
    """What the price patch found and did (or would do)."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    unfilled: list[str] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    warehouse_rows: int = 0
    run: JobMetadata | None = None


def candidates(ctx: Context) -> dict[str, dict[str, Any]]:
    """Positions with a missing or zero entry price, or CLOSED ones with a missing or zero exit price."""
    found: dict[str, dict[str, Any]] = {}
    for field_name, extra in (("entry_filled_avg_price", []), ("exit_filled_avg_price",
                                                                [Where("status", "==", "CLOSED")])):
        for where in (Where(field_name, "==", None), Where(field_name, "in", _ZEROES)):
            for doc_id, data in ctx.hot.query(POSITIONS, [*extra, where]):
                found[doc_id] = data
    return found


def patch_prices(ctx: Context, dry_run: bool = False) -> PricePatchReport:
    """Repair missing fill prices from the broker; correct archived trades in the same run."""
    report = PricePatchReport()
    now = ctx.now()
    with runs.running(ctx, PATCH, now.date(), record=not dry_run) as scope:
        run = scope.run
        positions = {}
        for doc_id, data in candidates(ctx).items():
            try:
                positions[doc_id] = SchemaGuardian.validate(LivePosition, data, doc_id)
            except RecordValidationError as exc:
                log.warning("price patch skips invalid position: %s", exc)
        orders = ctx.broker.get_orders([o for p in positions.values() for o in (p.entry_order_id, p.exit_order_id)
                                        if o])
        audits: list[PatchAudit] = []
        trades: list[FactTrade] = []
        fixes: list[tuple[str, dict[str, Any]]] = []
        run_id = run.run_id if run else "dry-run"
        rules = FillRules.of(ctx.settings)
        archived = {d for d, m in marks.read_marks(ctx.hot, POSITIONS, list(positions)).items() if m.archived_run_id}
        for doc_id, p in sorted(positions.items()):
            fix: dict[str, Any] = {}
            for leg, order_id, price in (("entry", p.entry_order_id, p.entry_filled_avg_price),
                                         ("exit", p.exit_order_id, p.exit_filled_avg_price)):
                if not order_id or price:
                    continue
                order = orders.get(order_id)
                if order is None or not order.is_filled:
                    report.unfilled.append(f"{doc_id} {leg} order {order_id}")
                    continue
                fix[f"{leg}_filled_avg_price"] = order.filled_avg_price
                if leg == "entry" and order.filled_qty != p.qty:
                    fix["qty"] = order.filled_qty
            changes = changed_values(p.model_dump(), fix)
            if not changes:
                continue
            fixed = SchemaGuardian.validate(LivePosition, {**p.model_dump(), **fix}, doc_id)
            contradicted = _contradictions(fixed, orders, rules)
            if contradicted:  # never "repair" a position from orders that are not its own: Loop A dead-letters it
                report.mismatched.append({"position_id": doc_id, "errors": contradicted})
                log.warning("price patch skips position %s: its broker orders contradict it (%s)", doc_id,
                            "; ".join(e["msg"] for e in contradicted)[:500])
                continue
            report.changes.append({"position_id": doc_id, **{k: str(v[1]) for k, v in changes.items()}})
            audits.extend(audit_rows(PATCH, run_id, POSITIONS, doc_id, changes, now))
            if doc_id in archived:
                trade = _corrected_trade(ctx, fixed, orders, ctx.settings.price_tolerance_bps)
                if trade is not None:
                    old, new = trade
                    trade_changes = changed_values(old.model_dump(), {c: getattr(new, c) for c in TRADE_COLUMNS})
                    if trade_changes:
                        trades.append(new)
                        audits.extend(audit_rows(PATCH, run_id, "fact_trades", doc_id, trade_changes, now))
            fixes.append((doc_id, fix))
        report.warehouse_rows = len(trades)
        if run is None:
            return report
        # The warehouse before the hot store: a position stays a candidate until its document is fixed, so a
        # run that fails in between is completed by the next one instead of leaving fact_trades stale.
        ctx.warehouse.insert_rows(PatchAudit, audits)
        ctx.warehouse.upsert_rows(FactTrade, trades, TRADE_COLUMNS)
        for doc_id, fix in fixes:
            ctx.hot.update(POSITIONS, doc_id, fix)
        marks.refresh_digests(ctx.hot, POSITIONS, [doc_id for doc_id, _ in fixes if doc_id in archived])
        runs.record_outcomes(ctx, run.run_id, {c["position_id"]: Outcome.LOADED for c in report.changes})
        scope.published = len(report.changes)
        scope.details = {"unfilled": len(report.unfilled), "fact_trades_corrected": len(trades),
                         "mismatched": len(report.mismatched)}
    report.run = scope.run
    return report


def _contradictions(p: LivePosition, orders: dict[str, BrokerOrder], rules: FillRules) -> list[dict[str, Any]]:
    """Loop A's broker checks on the position as it stands (the entry leg alone while OPEN)."""
    entry = orders.get(p.entry_order_id)
    if entry is None:
        return []
    exit_ = orders.get(p.exit_order_id) if p.exit_order_id else None
    if p.exit_order_id and exit_ is None:
        return []  # the broker does not know it: Loop A dead-letters the position with that reason
    return mismatches(p, entry, exit_, rules)


def _corrected_trade(
    ctx: Context, p: LivePosition, orders: dict[str, BrokerOrder], tolerance_bps: Decimal
) -> tuple[FactTrade, FactTrade] | None:
    """The archived row of ``p`` and the row Loop A's builder makes from the corrected position: the broker's
    legs as it reports them now (the row's own where an order is still unfilled), the row's run, version
    and fee state kept. Raises ``RecordValidationError`` naming the position if that row is invalid."""
    rows = ctx.warehouse.get_rows(FactTrade, [row_id_for("fact_trades", p.position_id)])
    if not rows:
        return None
    old = FactTrade.model_validate(rows[0])
    legs: dict[str, LegFill] = {}
    for leg, order_id in (("entry", p.entry_order_id), ("exit", p.exit_order_id or "")):
        order = orders.get(order_id)
        legs[leg] = (LegFill.of(order) if order is not None and order.is_filled
                     else LegFill(getattr(old, f"broker_{leg}_price"), getattr(old, f"broker_{leg}_qty")))
    return old, rebuild(old, tolerance_bps, p=p, entry=legs["entry"], exit_=legs["exit"])
