"""Fee patch (T+1): replace estimated fees in ``fact_trades`` with the fees the broker actually posted.

Alpaca posts regulatory fees as end-of-day FEE activities not tied to an order, and crypto fees as
CFEE activities in the asset received. For each trading day the patch needs, it reads the day's
activities, rebuilds the day's fills from the positions opened or closed that day (prices and
quantities from the broker's orders), and allocates every posted cent to the fills by the rule that
generated it (``goldthread.analytics.fees.allocate_fees``: largest remainder, so the parts add up to the
posted total exactly). Allocations are per broker order, and each order's allocation goes to exactly one
trade (``order_owners``): the position holding the order's claim (``order_claims``, taken by Loop A), or,
in a warehouse loaded before claims existed where two trades name the same order, the first by
``position_id``; any other trade naming that order is left unfinalised with the reason. So the fees of
a day's trades never add up to more than the day's postings. A trade's actual fee is its entry leg's
share plus its exit leg's share. Finalised rows are rebuilt by Loop A's own builder
(``trade_rows.build_fact_trade``), validated; an invalid one fails the run with the record named.

A trade is finalised only when both of its days are posted and fully allocated; otherwise it is left
unfinalised and reported, never guessed, and the next run picks it up (a fee posted late, at T+2, is
found by the run of T+1 or later). All updates of a run are one upsert statement; every changed value
gets a ``patch_audit`` row, written first, so a crash in between repeats cleanly. A second run changes
nothing and writes no audit rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from goldthread.analytics.fees import FeeSchedule, Fill, allocate_fees
from goldthread.ledger import runs
from goldthread.logs import get_logger
from goldthread.loops.base import day_bounds, time_ranges
from goldthread.loops.broker_checks import MAX_FILL_DELAY
from goldthread.loops.order_claims import claim_holders
from goldthread.loops.trade_rows import FeeState, rebuild
from goldthread.models.hot import AssetClass, JobMetadata, LivePosition
from goldthread.models.warehouse import FactTrade, PatchAudit
from goldthread.patches.audit import audit_rows, changed_values, flatten
from goldthread.pipeline.context import Context
from goldthread.ports.hot_store import Outcome, Where

log = get_logger("fee_patch")
PATCH = "patch_fees"
UPDATED_COLUMNS = ("actual_fee_usd", "fee_finalized", "net_pnl_usd", "return_pct")


@dataclass
class DayFees:
    """One trading day's posted fees allocated to its fill legs."""

    day: dt.date
    posted: bool
    allocations: dict[str, Decimal] = field(default_factory=dict)
    unallocated: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Posted and every activity allocated."""
        return self.posted and not self.unallocated


@dataclass
class FeePatchReport:
    """What a fee patch found and did (or would do, on a dry run)."""

    ds: dt.date
    changes: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    unfinalised: list[dict[str, str]] = field(default_factory=list)
    days: dict[str, str] = field(default_factory=dict)
    run: JobMetadata | None = None


FILL_LOOKBACK = MAX_FILL_DELAY
"""How far before a day to look for positions whose order filled that day (weekend and holiday orders
fill at the next open, days after the bot recorded them); Loop A refuses a fill later than that."""


def _asset_class(raw: object, symbol: str) -> AssetClass:
    try:
        return AssetClass(str(raw))
    except ValueError:
        return AssetClass.CRYPTO if "/" in symbol else AssetClass.EQUITY


def day_fees(ctx: Context, day: dt.date, schedule: FeeSchedule) -> DayFees:
    """Allocate ``day``'s posted activities to the orders the broker filled that day.

    The day's fills are the entry and exit orders named by positions the bot recorded around that day
    (even positions that failed validation: their orders still paid fees) whose broker fill time falls
    on the day; prices, quantities and sides are the broker's. Allocations are keyed by order id.
    """
    activities = ctx.broker.get_fee_activities(day)
    if not activities:
        return DayFees(day, posted=False)
    start, end = day_bounds(day)
    legs: dict[str, tuple[object, object]] = {}
    for leg, time_field in (("entry", "opened_at"), ("exit", "closed_at")):
        for low, high in time_ranges(start - FILL_LOOKBACK, end):
            for _doc_id, data in ctx.hot.query(LivePosition.collection, [Where(time_field, ">=", low),
                                                                  Where(time_field, "<", high)]):
                order_id = data.get(f"{leg}_order_id")
                if isinstance(order_id, str) and order_id:
                    legs[order_id] = (data.get("asset_class"), data.get("multiplier") or 1)
    orders = ctx.broker.get_orders(list(legs))
    fills = []
    for order_id, (asset_class, multiplier) in legs.items():
        order = orders.get(order_id)
        if order is None or not order.is_filled or order.filled_at is None or order.filled_at.date() != day:
            continue
        kind = _asset_class(asset_class, order.symbol)
        try:
            fills.append(Fill(
                key=order_id, symbol=order.symbol, asset_class=kind, side=order.side, qty=order.filled_qty,
                price=order.filled_avg_price, day=day, multiplier=multiplier if kind is AssetClass.OPTION else 1,
            ))
        except ValidationError as exc:
            log.warning("order %s left out of the fee allocation: %s", order_id, exc)
    allocation = allocate_fees(activities, fills, schedule)
    return DayFees(
        day, posted=True, allocations=dict(allocation.allocations),
        unallocated=[f"{u.activity.activity_id}: {u.reason}" for u in allocation.unallocated],
    )


def order_owners(naming: Iterable[tuple[str, str, str]], claims: Mapping[str, str]) -> dict[str, str]:
    """Each order id -> the one position whose trade gets the order's fees.

    ``naming`` holds ``(position_id, entry_order_id, exit_order_id)`` of every trade naming the orders (any
    fee state); ``claims`` the position holding each order's claim. The claim holder owns the order when it
    has a trade among ``naming``; otherwise (orders loaded before claims existed) the first trade by
    ``position_id`` does.
    """
    positions: dict[str, set[str]] = {}
    for position_id, *order_ids in naming:
        for order_id in order_ids:
            positions.setdefault(order_id, set()).add(position_id)
    return {oid: claims[oid] if claims.get(oid) in named else min(named) for oid, named in positions.items()}


def owned_legs(position_id: str, entry_order_id: str, exit_order_id: str, owners: Mapping[str, str]
               ) -> tuple[list[tuple[str, str]], list[str]]:
    """The legs (leg, order id) whose fees a trade gets, and why it gets no fee from the others: an order
    owned by another position (``order_owners``), or named twice by the trade (counted once)."""
    legs: list[tuple[str, str]] = []
    refused: list[str] = []
    for leg, order_id in (("entry", entry_order_id), ("exit", exit_order_id)):
        owner = owners.get(order_id, position_id)
        if owner != position_id:
            refused.append(f"{leg} order {order_id} backs position {owner}, which gets its fee")
        elif all(order_id != seen for _, seen in legs):
            legs.append((leg, order_id))
    return legs, refused


def _naming(ctx: Context, order_ids: list[str]) -> list[tuple[str, str, str]]:
    """(position, entry order, exit order) of every real trade naming one of ``order_ids``, finalised or not."""
    if not order_ids:
        return []
    found = ctx.warehouse.query(
        "SELECT DISTINCT position_id, entry_order_id, exit_order_id FROM fact_trades WHERE is_canary = FALSE "
        "AND (entry_order_id IN UNNEST(@ids) OR exit_order_id IN UNNEST(@ids))",
        {"ids": order_ids},
    )
    return [(r["position_id"], r["entry_order_id"], r["exit_order_id"]) for r in found]


def _finalised(trade: FactTrade, fee: Decimal, tolerance_bps: Decimal) -> FactTrade:
    """The trade rebuilt with its actual fee: net P&L and return follow (Loop A's builder, validated)."""
    return rebuild(trade, tolerance_bps, fee=FeeState(actual_fee_usd=fee, fee_finalized=True))


def patch_fees(ctx: Context, ds: dt.date, dry_run: bool = False, schedule: FeeSchedule | None = None) -> FeePatchReport:
    """Finalise the fees of every unfinalised trade closed on or before ``ds`` whose days are posted."""
    schedule = schedule or FeeSchedule()
    report = FeePatchReport(ds)
    with runs.running(ctx, PATCH, ds, record=not dry_run) as scope:
        run = scope.run
        trades = [
            FactTrade.model_validate(r)
            for r in ctx.warehouse.query(
                "SELECT * FROM fact_trades WHERE ds <= @ds AND fee_finalized = FALSE AND is_canary = FALSE "
                "QUALIFY ROW_NUMBER() OVER (PARTITION BY row_id ORDER BY revision DESC, loaded_at DESC) = 1 "
                "ORDER BY position_id",
                {"ds": ds},
            )
        ]
        days: dict[dt.date, DayFees] = {}
        updated: list[FactTrade] = []
        audits = []
        now = ctx.now()
        order_ids = list(dict.fromkeys(o for t in trades for o in (t.entry_order_id, t.exit_order_id)))
        orders = ctx.broker.get_orders(order_ids)
        owners = order_owners(_naming(ctx, order_ids), claim_holders(ctx, order_ids))
        for trade in trades:
            fee = Decimal(0)
            legs, missing = owned_legs(trade.position_id, trade.entry_order_id, trade.exit_order_id, owners)
            for leg, order_id in legs:
                order = orders.get(order_id)
                if order is None or order.filled_at is None:
                    missing.append(f"{leg} order {order_id} not filled at the broker yet")
                    continue
                day = order.filled_at.date()
                if day not in days:
                    days[day] = day_fees(ctx, day, schedule)
                info = days[day]
                if not info.usable:
                    missing.append(f"{leg} day {day} " + ("not posted" if not info.posted else "unallocated fees"))
                    continue
                fee += info.allocations.get(order_id, Decimal(0))
            if missing:
                report.unfinalised.append({"position_id": trade.position_id, "why": "; ".join(missing)})
                continue
            new = _finalised(trade, fee, ctx.settings.price_tolerance_bps)
            changes = changed_values(trade.model_dump(), {c: getattr(new, c) for c in UPDATED_COLUMNS})
            if not changes:
                report.unchanged += 1
                continue
            updated.append(new)
            report.changes.append({"position_id": trade.position_id, **{c: str(v[1]) for c, v in changes.items()},
                                   "estimated_fee_usd": str(trade.est_fee_usd)})
            audits.append(audit_rows(PATCH, run.run_id if run else "dry-run", "fact_trades", trade.position_id,
                                     changes, now))
        report.days = {
            d.isoformat(): "posted" if f.usable else ("not posted" if not f.posted else "unallocated: " +
                                                       "; ".join(f.unallocated)[:300])
            for d, f in sorted(days.items())
        }
        if run is None:
            return report
        if audits:
            ctx.warehouse.insert_rows(PatchAudit, flatten(audits))
        ctx.warehouse.upsert_rows(FactTrade, updated, UPDATED_COLUMNS)
        outcomes = {t.position_id: Outcome.LOADED for t in updated}
        runs.record_outcomes(ctx, run.run_id, outcomes)
        scope.published = len(updated)
        scope.details = {
            "unfinalised": len(report.unfinalised), "days": report.days,
            "fees_usd": str(sum((t.actual_fee_usd or Decimal(0) for t in updated), Decimal(0))),
        }
    report.run = scope.run
    log.info("fee patch: %d trades finalised, %d left unfinalised", len(updated), len(report.unfinalised),
             extra={"run_id": report.run.run_id if report.run else None, "ds": ds, "patch": PATCH})
    return report
