"""Loop D: the account as of a moment of the day into ``snapshot_accounts`` (the pulse check).

A row describes the moment ``snapshot_at`` and ``ds`` is that moment's day (UTC). Which moment depends on
the day asked for, compared with today (UTC, by the context's clock):

* **today**: the live account (equity, last equity, cash, buying power, margins, market values) and the
  portfolio Greeks at the moment the subscriber builds the row (``source`` live_account). A run before
  the close records the account as of then, not as of the close; a later run for the same day builds the
  same row (row id: account and day) with newer figures, which the subscriber keeps as the row's newer
  revision, so the day ends with the last run's figures (production runs at 17:00 New York).
* **a past day**: the broker's daily portfolio history (timeframe 1D): the equity the day closed with,
  last equity the previous trading day's point (else the history's base value), ``snapshot_at`` midnight
  New York of the day, which is how Alpaca labels a 1D point (``source`` portfolio_history). The past
  has no margins, market values, positions or Greeks: those are null. A day with no point (no trading
  that day, the account not opened yet, or not funded yet) publishes nothing: the run succeeds with no
  item and its details say why.
* **a future day** is refused before any run starts (``FutureDayError``): it has no moment to describe.

Portfolio Greeks: for each Greek, the sum over option positions of qty x multiplier x the contract's Greek
(zero with no option positions). Alpaca reports no account-level Greeks, so this is the only place they
exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from goldthread.errors import FutureDayError, PermanentError, TransientError
from goldthread.loops.base import BuildResult, LoopSpec
from goldthread.models.broker import BrokerAccount, EquityPoint, OptionPosition, new_york_midnight
from goldthread.models.types import quantize9
from goldthread.models.warehouse import SnapshotAccount, SnapshotSource, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context

GREEKS = ("delta", "gamma", "theta", "vega")
HISTORY_LOOKBACK = dt.timedelta(days=10)
"""How far before a past day its history is read, to reach the previous trading day past weekends and
holidays (the longest US market closure in a row is four days)."""


def portfolio_greeks(positions: Sequence[OptionPosition]) -> dict[str, Decimal]:
    """Sum of qty x multiplier x contract Greek, per Greek."""
    totals = dict.fromkeys(GREEKS, Decimal(0))
    for p in positions:
        for g in GREEKS:
            totals[g] += p.qty * p.multiplier * getattr(p, g)
    return {g: quantize9(v) for g, v in totals.items()}


def history_of_day(points: Sequence[EquityPoint], ds: dt.date) -> tuple[EquityPoint | None, Decimal | None, str]:
    """The history point of ``ds`` and the last equity before it, or None and why there is none.

    The point of ``ds`` is the one whose New York day is ``ds``. Last equity is the previous point's
    equity, else the history's ``base_value`` (the close before the period, or the first point's own
    value). A zero equity with nothing non-zero before it (no earlier non-zero point, no
    ``base_value_asof``) is an account not funded yet, which has no snapshot either.
    """
    on_day = [p for p in points if p.trading_day == ds]
    if not on_day:
        return None, None, (f"no portfolio history point for {ds}: the market was closed, or the account "
                            "was not open yet")
    point = on_day[-1]
    earlier = [p for p in points if p.trading_day < ds]
    if point.equity == 0 and point.base_value_asof is None and all(p.equity == 0 for p in earlier):
        return None, None, f"portfolio history equity for {ds} is 0 and was never more: the account is not funded"
    if earlier:
        return point, earlier[-1].equity, ""
    return point, point.base_value if point.base_value is not None else point.equity, ""


class AccountsLoop(LoopSpec):
    """Loop D: broker account -> ``snapshot_accounts``, as of a moment of ``ds``."""

    loop: ClassVar[Loop] = Loop.ACCOUNTS
    collection: ClassVar[str | None] = None
    row_model = SnapshotAccount

    def row_key(self, item: WorkItem) -> str:
        """A snapshot's key is its account and day."""
        return row_id_for("snapshot_accounts", item.doc_id, item.ds.isoformat())

    def check_ready(self, ctx: Context, ds: dt.date) -> None:
        """Refuse a day that has not begun (UTC): a snapshot records a moment that has happened."""
        today = ctx.now().date()
        if ds > today:
            raise FutureDayError(f"accounts: ds {ds} is in the future (today is {today} UTC); "
                                 "an account snapshot can only record a day that has begun")

    def find(self, ctx: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        """One item, the account the broker credentials belong to; none for a past day without history."""
        account_id = ctx.broker.get_account().account_id
        if ds >= ctx.now().date():
            return [account_id]
        point, _, why = history_of_day(self._history(ctx, ds), ds)
        if point is None:
            ctx.cache[self._skip_key(ds)] = why
            return []
        return [account_id]

    def prepare(self, ctx: Context, ds: dt.date, doc_ids: Sequence[str]) -> dict[str, Any]:
        """The run's details: where the figures come from and, when nothing is published, why."""
        past = ds < ctx.now().date()
        details: dict[str, Any] = {
            "source": (SnapshotSource.PORTFOLIO_HISTORY if past else SnapshotSource.LIVE_ACCOUNT).value
        }
        why = ctx.cache.pop(self._skip_key(ds), None)
        if why:
            details["no_snapshot"] = why
        return details

    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Snapshot each item's day as of its moment; an item for another account is a permanent error."""
        now = ctx.now()
        account = ctx.broker.get_account()
        live: dict[str, Any] = {}
        results: BuildResult = {}
        for item in items:
            if item.doc_id != account.account_id:
                results[item.item_id] = PermanentError(
                    f"account {item.doc_id} is not the broker's account {account.account_id}",
                    [{"loc": "doc_id", "msg": "unknown account", "type": "not_found"}],
                )
            elif item.ds == now.date():
                if not live:
                    positions = ctx.broker.get_option_positions()
                    live.update(option_positions=len(positions), **portfolio_greeks(positions))
                results[item.item_id] = self._live_row(item, account, live, now)
            elif item.ds < now.date():
                results[item.item_id] = self._history_row(ctx, item, account.account_id, now)
            else:  # the dispatcher's clock is ahead of this one: the day will have begun shortly
                results[item.item_id] = TransientError(f"accounts: ds {item.ds} has not begun here yet ({now})")
        return results

    @staticmethod
    def _live_row(item: WorkItem, account: BrokerAccount, live: dict[str, Any], now: dt.datetime) -> SnapshotAccount:
        daily = account.equity - account.last_equity
        return SnapshotAccount(
            row_id=row_id_for("snapshot_accounts", account.account_id, item.ds.isoformat()),
            ds=item.ds, run_id=item.run_id, loaded_at=now, account_id=account.account_id,
            source=SnapshotSource.LIVE_ACCOUNT, snapshot_at=now,
            equity=account.equity, last_equity=account.last_equity, cash=account.cash,
            buying_power=account.buying_power, initial_margin=account.initial_margin,
            maintenance_margin=account.maintenance_margin, long_market_value=account.long_market_value,
            short_market_value=account.short_market_value, daily_pnl=quantize9(daily),
            daily_return_pct=quantize9(daily / account.last_equity * 100) if account.last_equity > 0 else None,
            **live,
        )

    def _history_row(
        self, ctx: Context, item: WorkItem, account_id: str, now: dt.datetime
    ) -> SnapshotAccount | PermanentError | TransientError:
        point, last, why = history_of_day(self._history(ctx, item.ds), item.ds)
        if point is None or last is None:
            # published because the point existed, or as a live item delivered after midnight: the broker
            # may not have posted the day's point yet, so retry for a day, then dead-letter with the reason
            message = f"accounts {account_id} {item.ds}: {why}"
            if now < dt.datetime.combine(item.ds, dt.time(), dt.UTC) + dt.timedelta(days=2):
                return TransientError(message)
            return PermanentError(message, [{"loc": "ds", "msg": why, "type": "no_history"}])
        daily = point.equity - last
        return SnapshotAccount(
            row_id=row_id_for("snapshot_accounts", account_id, item.ds.isoformat()),
            ds=item.ds, run_id=item.run_id, loaded_at=now, account_id=account_id,
            source=SnapshotSource.PORTFOLIO_HISTORY, snapshot_at=new_york_midnight(item.ds),
            equity=point.equity, last_equity=last, cash=None, buying_power=None, initial_margin=None,
            maintenance_margin=None, long_market_value=None, short_market_value=None,
            daily_pnl=quantize9(daily), daily_return_pct=quantize9(daily / last * 100) if last > 0 else None,
            option_positions=None, delta=None, gamma=None, theta=None, vega=None,
        )

    @staticmethod
    def _history(ctx: Context, ds: dt.date) -> list[EquityPoint]:
        return ctx.broker.get_portfolio_history(ds - HISTORY_LOOKBACK, ds)

    @staticmethod
    def _skip_key(ds: dt.date) -> str:
        return f"accounts:no_snapshot:{ds.isoformat()}"
