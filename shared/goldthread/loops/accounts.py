"""Loop D: one end-of-day snapshot per account into ``snapshot_accounts`` (the pulse check).

Equity, last equity, cash, buying power, margins, market values, daily P&L and the portfolio Greeks:
for each Greek, the sum over option positions of qty x multiplier x the contract's Greek (zero with no
option positions). Alpaca reports no account-level Greeks, so this is the only place they exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

from goldthread.errors import PermanentError
from goldthread.loops.base import BuildResult, LoopSpec
from goldthread.models.broker import OptionPosition
from goldthread.models.types import quantize9
from goldthread.models.warehouse import SnapshotAccount, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context

GREEKS = ("delta", "gamma", "theta", "vega")


def portfolio_greeks(positions: Sequence[OptionPosition]) -> dict[str, Decimal]:
    """Sum of qty x multiplier x contract Greek, per Greek."""
    totals = dict.fromkeys(GREEKS, Decimal(0))
    for p in positions:
        for g in GREEKS:
            totals[g] += p.qty * p.multiplier * getattr(p, g)
    return {g: quantize9(v) for g, v in totals.items()}


class AccountsLoop(LoopSpec):
    """Loop D: broker account -> ``snapshot_accounts``."""

    loop: ClassVar[Loop] = Loop.ACCOUNTS
    collection: ClassVar[str | None] = None
    row_model = SnapshotAccount

    def find(self, ctx: Context, ds: dt.date) -> list[str]:
        """One item: the account the broker credentials belong to."""
        return [ctx.broker.get_account().account_id]

    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Snapshot the account now; an item for another account is a permanent error."""
        account = ctx.broker.get_account()
        option_positions = ctx.broker.get_option_positions()
        greeks = portfolio_greeks(option_positions)
        now = ctx.now()
        results: BuildResult = {}
        for item in items:
            if item.doc_id != account.account_id:
                results[item.item_id] = PermanentError(
                    f"account {item.doc_id} is not the broker's account {account.account_id}",
                    [{"loc": "doc_id", "msg": "unknown account", "type": "not_found"}],
                )
                continue
            daily = account.equity - account.last_equity
            results[item.item_id] = SnapshotAccount(
                row_id=row_id_for("snapshot_accounts", account.account_id, item.ds.isoformat()),
                ds=item.ds, run_id=item.run_id, loaded_at=now, account_id=account.account_id, snapshot_at=now,
                equity=account.equity, last_equity=account.last_equity, cash=account.cash,
                buying_power=account.buying_power, initial_margin=account.initial_margin,
                maintenance_margin=account.maintenance_margin, long_market_value=account.long_market_value,
                short_market_value=account.short_market_value, daily_pnl=quantize9(daily),
                daily_return_pct=quantize9(daily / account.last_equity * 100) if account.last_equity else None,
                option_positions=len(option_positions), **greeks,
            )
        return results
