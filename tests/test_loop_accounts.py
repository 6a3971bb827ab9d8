"""Loop D end to end through the local bus: one ``snapshot_accounts`` row per account and day, as of a
moment of that day.

A run for today reads the live account: its balances must be exactly the simulator's account at the
snapshot time (and, for an untouched account, the hand-computed starting figures); daily P&L is equity
minus last equity; the portfolio Greeks are the sum over option positions of qty x multiplier x the
contract's Greek (zero with none). A run for a past day reads the portfolio history: the equity that day
closed with, recomputed here from the fills and the market's prices (never today's), with what the past
cannot give null. A future day is refused before any run starts; a past day without a history point
loads nothing and succeeds. A second run for the same day stores nothing new; an item naming another
account is dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal as D

import pytest
from goldthread.errors import FutureDayError, PermanentError
from goldthread.ledger.runs import list_runs
from goldthread.loops import get_loop
from goldthread.loops.accounts import history_of_day, portfolio_greeks
from goldthread.models.broker import EquityPoint, OptionPosition, OrderSide
from goldthread.models.hot import RunStatus
from goldthread.models.types import quantize9
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, SESSION, Clock, PinnedBroker, rows

GREEKS = ("delta", "gamma", "theta", "vega")
UNKNOWN_IN_THE_PAST = ("cash", "buying_power", "initial_margin", "maintenance_margin", "long_market_value",
                       "short_market_value", "option_positions", *GREEKS)
DS_CLOSE = dt.datetime(2024, 3, 5, 21, 30, tzinfo=dt.UTC)  # DS (a Tuesday) after the simulator's 21:00 close
MONDAY = DS - dt.timedelta(days=1)
LATER = dt.datetime(2024, 3, 12, 15, 0, tzinfo=dt.UTC)  # a week on: DS and its neighbours are past days


def broker(ctx: Context) -> PinnedBroker:
    b = ctx.broker
    assert isinstance(b, PinnedBroker)
    return b


def snapshot(ctx: Context) -> dict:
    (row,) = rows(ctx, "snapshot_accounts")
    return row


def fills(ctx: Context) -> None:
    """Long 10 AAPL at 100 and short 4 TSLA at 200 on DS, long 0.05 BTC at 60000 on Monday."""
    b = broker(ctx)
    b.pinned.update({"o-aapl": D("100.00"), "o-tsla": D("200.00"), "o-btc": D("60000.0000")})
    b.submit_market_order("o-aapl", "AAPL", OrderSide.BUY, D("10"), SESSION, "equity")
    b.submit_market_order("o-tsla", "TSLA", OrderSide.SELL, D("4"), SESSION, "equity")
    b.submit_market_order("o-btc", "BTC/USD", OrderSide.BUY, D("0.05"), SESSION - dt.timedelta(days=1), "crypto")


def price(ctx: Context, symbol: str, moment: dt.datetime) -> D:
    return D(repr(ctx.market_data.price_at(symbol, moment)))  # type: ignore[attr-defined]


def expected_equity(ctx: Context, moment: dt.datetime) -> D:
    """The account of ``fills`` worth at ``moment``, by hand: the starting cash, what the fills paid and
    received, the fees the broker had posted by then (a day's fees post at 02:00 UTC the next day), and
    the holdings at the market's price of that moment."""
    cash = D("100000")
    holdings: dict[str, D] = {}
    if moment >= SESSION - dt.timedelta(days=1):
        cash -= D("0.05") * D("60000")
        holdings["BTC/USD"] = D("0.05")
    if moment >= dt.datetime.combine(DS, dt.time(2), dt.UTC):  # Monday's fees are posted
        cash += sum((a.net_amount for a in broker(ctx).get_fee_activities(MONDAY)), D(0))
    if moment >= SESSION:
        cash += -10 * D("100") + 4 * D("200")
        holdings.update({"AAPL": D(10), "TSLA": D(-4)})
    if moment >= dt.datetime.combine(DS + dt.timedelta(days=1), dt.time(2), dt.UTC):
        cash += sum((a.net_amount for a in broker(ctx).get_fee_activities(DS)), D(0))
    return quantize9(cash + sum((q * price(ctx, s, moment) for s, q in holdings.items()), D(0)))


def close_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(21), dt.UTC)


# -- today: the live account --------------------------------------------------------------------------


def test_untouched_account_snapshot_is_the_starting_cash(ctx: Context, clock: Clock) -> None:
    clock.set(DS_CLOSE)
    run = run_loop(ctx, "accounts", DS)
    assert (run.status, run.published, run.loaded) == (RunStatus.SUCCEEDED, 1, 1)
    assert run.details["source"] == "live_account"
    row = snapshot(ctx)
    assert row["account_id"] == "SIM-ACCOUNT-1" and row["ds"] == DS and row["run_id"] == run.run_id
    assert row["source"] == "live_account"
    assert row["equity"] == row["last_equity"] == row["cash"] == D("100000")
    assert row["buying_power"] == D("200000")  # (equity - initial margin 0) x 2
    assert row["initial_margin"] == row["maintenance_margin"] == 0
    assert row["long_market_value"] == row["short_market_value"] == 0
    assert row["daily_pnl"] == 0 and row["daily_return_pct"] == 0
    assert row["option_positions"] == 0
    assert all(row[g] == 0 for g in GREEKS)
    assert row["snapshot_at"] == clock() and row["snapshot_at"].date() == row["ds"]


def test_snapshot_equals_the_simulators_account(ctx: Context, clock: Clock) -> None:
    fills(ctx)
    clock.set(DS_CLOSE)
    run = run_loop(ctx, "accounts", DS)
    assert run.status is RunStatus.SUCCEEDED
    account = broker(ctx).get_account()  # same clock: the same account the loop read
    row = snapshot(ctx)
    for field in ("equity", "last_equity", "cash", "buying_power", "initial_margin", "maintenance_margin",
                  "long_market_value", "short_market_value"):
        assert row[field] == getattr(account, field), field
    assert row["equity"] == expected_equity(ctx, DS_CLOSE)
    assert row["last_equity"] == expected_equity(ctx, close_of(MONDAY))  # the previous trading day's close
    # cash: 100000 - 10 x 100 + 4 x 200 - 0.05 x 60000 = 96800; Monday's crypto fee is charged in BTC (its
    # net amount is 0) and today's fees are posted tomorrow at 02:00, so none has touched the cash yet
    assert row["cash"] == D("96800")
    assert row["long_market_value"] > 0 and row["short_market_value"] < 0
    assert row["equity"] == row["cash"] + row["long_market_value"] + row["short_market_value"]
    assert row["equity"] != row["last_equity"]
    assert row["daily_pnl"] == row["equity"] - row["last_equity"]
    assert row["daily_return_pct"] == quantize9((row["equity"] - row["last_equity"]) / row["last_equity"] * 100)


def test_a_run_before_the_close_records_the_account_as_of_then(ctx: Context, clock: Clock) -> None:
    fills(ctx)
    midday = SESSION + dt.timedelta(hours=1, minutes=7)
    clock.set(midday)
    run_loop(ctx, "accounts", DS)
    row = snapshot(ctx)
    assert row["source"] == "live_account" and row["snapshot_at"] == midday
    assert row["equity"] == expected_equity(ctx, midday) != expected_equity(ctx, DS_CLOSE)


def test_portfolio_greeks_by_hand() -> None:
    call = OptionPosition(symbol="AAPL240119C00190000", qty=D(2), delta=D("0.55"), gamma=D("0.02"),
                          theta=D("-0.04"), vega=D("0.12"))
    put = OptionPosition(symbol="SPY240119P00500000", qty=D(-3), multiplier=D(100), delta=D("-0.30"),
                         gamma=D("0.01"), theta=D("-0.06"), vega=D("0.25"))
    mini = OptionPosition(symbol="XSP240119C00500000", qty=D(1), multiplier=D(10), delta=D("0.5"),
                          gamma=D("0"), theta=D("0"), vega=D("0"))
    # delta: 2 x 100 x 0.55 + (-3) x 100 x (-0.30) + 1 x 10 x 0.5 = 110 + 90 + 5 = 205
    # gamma: 2 x 100 x 0.02 + (-3) x 100 x 0.01 = 4 - 3 = 1
    # theta: 2 x 100 x (-0.04) + (-3) x 100 x (-0.06) = -8 + 18 = 10
    # vega:  2 x 100 x 0.12 + (-3) x 100 x 0.25 = 24 - 75 = -51
    assert portfolio_greeks([call, put, mini]) == {"delta": D(205), "gamma": D(1), "theta": D(10), "vega": D(-51)}
    assert portfolio_greeks([]) == dict.fromkeys(GREEKS, D(0))


def test_snapshot_greeks_are_the_sum_over_option_positions(ctx: Context, clock: Clock) -> None:
    clock.set(DS_CLOSE)
    b = broker(ctx)
    b.set_option_position("AAPL240119C00190000", D(2), {"delta": D("0.55"), "gamma": D("0.02"),
                                                        "theta": D("-0.04"), "vega": D("0.12")})
    b.set_option_position("SPY240119P00500000", D(-3), {"delta": D("-0.30"), "gamma": D("0.01"),
                                                       "theta": D("-0.06"), "vega": D("0.25")})
    b.set_option_position("MSFT240119C00400000", D(5), {"delta": D("0.4"), "gamma": D("0.03"),
                                                       "theta": D("-0.02"), "vega": D("0.09")})
    b.set_option_position("MSFT240119C00400000", D(0), {})  # closed again: no longer held
    run_loop(ctx, "accounts", DS)
    row = snapshot(ctx)
    assert row["option_positions"] == 2
    call, put = b.get_option_positions()  # the contract Greeks as the broker reports them today
    assert call.symbol == "AAPL240119C00190000" and put.symbol == "SPY240119P00500000"
    for g in GREEKS:
        expected = D(2) * D(100) * getattr(call, g) + D(-3) * D(100) * getattr(put, g)
        assert row[g] == expected, g
    # the simulator's Greeks drift by a factor in [0.8, 1.2] of the base, so the signs are kept
    assert row["delta"] > 0 and row["theta"] > 0 and row["vega"] < 0


def test_a_second_run_for_the_same_day_stores_nothing_new(ctx: Context, clock: Clock) -> None:
    clock.set(DS_CLOSE)
    first = run_loop(ctx, "accounts", DS)
    clock.advance(dt.timedelta(minutes=10))
    second = run_loop(ctx, "accounts", DS)
    assert (second.status, second.published, second.loaded, second.duplicates) == (RunStatus.SUCCEEDED, 1, 0, 1)
    assert snapshot(ctx)["run_id"] == first.run_id
    third = run_loop(ctx, "accounts", MONDAY)
    assert third.loaded == 1 and len(rows(ctx, "snapshot_accounts")) == 2


def test_an_item_for_another_account_is_dead_lettered(
    ctx: Context, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.set(DS_CLOSE)
    spec = get_loop("accounts")
    monkeypatch.setattr(spec, "find", lambda c, ds, sweep=None: ["SIM-ACCOUNT-1", "SOMEONE-ELSE"])
    run = run_loop(ctx, "accounts", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    (letter,) = rows(ctx, "dead_letters")
    assert letter["doc_id"] == "SOMEONE-ELSE" and letter["loop"] == "accounts"
    assert [e["loc"] for e in json.loads(letter["errors_json"])] == ["doc_id"]


# -- a future day: refused ----------------------------------------------------------------------------


def test_a_future_day_is_refused_and_starts_no_run(ctx: Context, clock: Clock) -> None:
    clock.set(DS_CLOSE)
    tomorrow = DS + dt.timedelta(days=1)
    with pytest.raises(FutureDayError, match=r"^accounts: ds 2024-03-06 is in the future \(today is 2024-03-05 UTC\)"):
        run_loop(ctx, "accounts", tomorrow)
    with pytest.raises(FutureDayError, match="2099-01-01"):
        run_loop(ctx, "accounts", dt.date(2099, 1, 1))
    assert list_runs(ctx) == [] and rows(ctx, "snapshot_accounts") == []
    assert broker(ctx).calls == {}  # not even the broker was asked
    clock.set(dt.datetime.combine(tomorrow, dt.time(0, 0, 1), dt.UTC))  # one second into the day: it has begun
    assert run_loop(ctx, "accounts", tomorrow).loaded == 1
    assert snapshot(ctx)["source"] == "live_account"


# -- a past day: the portfolio history ----------------------------------------------------------------


def test_a_past_day_stores_that_days_closing_equity_never_todays(ctx: Context, clock: Clock) -> None:
    fills(ctx)
    clock.set(LATER)
    run = run_loop(ctx, "accounts", DS)
    assert (run.status, run.published, run.loaded) == (RunStatus.SUCCEEDED, 1, 1)
    assert run.details["source"] == "portfolio_history"
    row = snapshot(ctx)
    assert row["source"] == "portfolio_history" and row["ds"] == DS
    assert row["equity"] == expected_equity(ctx, close_of(DS))
    assert row["equity"] != broker(ctx).get_account().equity == expected_equity(ctx, LATER)  # not today's
    assert row["last_equity"] == expected_equity(ctx, close_of(MONDAY))
    assert row["daily_pnl"] == row["equity"] - row["last_equity"] != 0
    assert row["daily_return_pct"] == quantize9(row["daily_pnl"] / row["last_equity"] * 100)
    assert all(row[f] is None for f in UNKNOWN_IN_THE_PAST)
    # midnight New York of DS (EST, UTC-5), Alpaca's label of a 1D point: on DS in UTC too
    assert row["snapshot_at"] == dt.datetime(2024, 3, 5, 5, 0, tzinfo=dt.UTC)
    assert row["snapshot_at"].date() == row["ds"]


def test_the_history_agrees_with_what_the_live_account_said(ctx: Context, clock: Clock) -> None:
    fills(ctx)
    clock.set(close_of(DS))
    at_the_close = broker(ctx).get_account()
    clock.set(close_of(DS + dt.timedelta(days=1)) - dt.timedelta(hours=3))
    next_day = broker(ctx).get_account()
    clock.set(LATER)
    run_loop(ctx, "accounts", DS)
    row = snapshot(ctx)
    assert row["equity"] == at_the_close.equity == next_day.last_equity
    assert row["last_equity"] == at_the_close.last_equity


def test_a_summer_day_is_labelled_at_midnight_new_york_daylight_time(ctx: Context, clock: Clock) -> None:
    clock.set(dt.datetime(2024, 7, 12, 12, tzinfo=dt.UTC))
    run_loop(ctx, "accounts", dt.date(2024, 7, 9))
    row = snapshot(ctx)
    assert row["snapshot_at"] == dt.datetime(2024, 7, 9, 4, 0, tzinfo=dt.UTC)  # EDT, UTC-4
    assert row["equity"] == row["last_equity"] == D("100000") and row["daily_pnl"] == 0


def test_a_backfill_stores_each_days_own_equity(ctx: Context, clock: Clock) -> None:
    fills(ctx)
    clock.set(LATER)
    week = [MONDAY + dt.timedelta(days=i) for i in range(5)]  # Monday 4 to Friday 8 March
    for day in week:
        assert run_loop(ctx, "accounts", day).loaded == 1
    stored = {r["ds"]: r for r in rows(ctx, "snapshot_accounts")}
    assert sorted(stored) == week
    for day in week:
        assert stored[day]["equity"] == expected_equity(ctx, close_of(day)), day
        assert stored[day]["snapshot_at"].date() == day
    for before, day in itertools.pairwise(week):
        assert stored[day]["last_equity"] == stored[before]["equity"], day
    assert len({r["equity"] for r in stored.values()}) == 5  # crypto and stocks move: five different closes
    today = broker(ctx).get_account().equity
    assert all(r["equity"] != today for r in stored.values())


@pytest.mark.parametrize(
    ("day", "setup", "why"),
    [
        (dt.date(2024, 3, 9), None, "no portfolio history point for 2024-03-09"),  # a Saturday
        (MONDAY, "opened", "no portfolio history point for 2024-03-04"),  # before the account was opened
        (DS, "unfunded", "is 0 and was never more: the account is not funded"),
    ],
    ids=["weekend", "before-opened", "unfunded"],
)
def test_a_past_day_without_a_point_loads_nothing_and_succeeds(
    ctx: Context, clock: Clock, day: dt.date, setup: str | None, why: str
) -> None:
    b = broker(ctx)
    if setup == "opened":
        b.opened_on = DS
    if setup == "unfunded":
        b.initial_cash = D(0)
    clock.set(LATER)
    run = run_loop(ctx, "accounts", day)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.SUCCEEDED, 0, 0, 0)
    assert why in run.details["no_snapshot"] and run.details["source"] == "portfolio_history"
    assert rows(ctx, "snapshot_accounts") == [] and rows(ctx, "dead_letters") == []


def test_the_first_day_of_an_account_has_no_previous_close(ctx: Context, clock: Clock) -> None:
    broker(ctx).opened_on = DS
    clock.set(LATER)
    run_loop(ctx, "accounts", DS)
    row = snapshot(ctx)
    assert row["equity"] == row["last_equity"] == D("100000") and row["daily_pnl"] == 0


# -- the history rule, point by point -----------------------------------------------------------------


def point(day: dt.date, equity: str, hour: int = 5, **extra: object) -> EquityPoint:
    return EquityPoint(timestamp=dt.datetime.combine(day, dt.time(hour), dt.UTC), equity=D(equity), **extra)


def test_history_of_day_rules() -> None:
    fri, mon, tue = dt.date(2024, 3, 1), dt.date(2024, 3, 4), dt.date(2024, 3, 5)
    history = [point(fri, "900"), point(mon, "1000"), point(tue, "1100")]
    assert history_of_day(history, tue)[:2] == (history[2], D("1000"))  # the previous point's equity
    assert history_of_day(history, mon)[:2] == (history[1], D("900"))  # across the weekend
    alone = point(tue, "1100", base_value=D("1050"), base_value_asof=mon)
    assert history_of_day([alone], tue)[:2] == (alone, D("1050"))  # else the base value
    # a label at 20:00 New York (observed with extended hours) is 01:00 UTC the next day: still Tuesday's
    late = EquityPoint(timestamp=dt.datetime(2024, 3, 6, 1, tzinfo=dt.UTC), equity=D("1200"))
    assert late.trading_day == tue and history_of_day([history[1], late], tue)[:2] == (late, D("1000"))
    # zero equity: unfunded unless something non-zero came before it
    assert history_of_day([point(mon, "0"), point(tue, "0")], tue)[0] is None
    assert history_of_day([point(mon, "5"), point(tue, "0")], tue)[:2] == (point(tue, "0"), D("5"))
    zero_after_base = point(tue, "0", base_value=D("7"), base_value_asof=mon)
    assert history_of_day([zero_after_base], tue)[:2] == (zero_after_base, D("7"))
    assert history_of_day(history, dt.date(2024, 3, 2))[0] is None


def test_a_history_point_gone_at_build_retries_then_dead_letters(ctx: Context, clock: Clock) -> None:
    """The point existed when the run was dispatched but not when the row is built (a live item delivered
    after midnight, before the broker posted the day): retried while the day is recent, then permanent."""
    from goldthread.models.work_items import Loop, WorkItem

    spec = get_loop("accounts")
    broker(ctx).opened_on = DS + dt.timedelta(days=1)  # no point for DS
    item = WorkItem(run_id="r1", loop=Loop.ACCOUNTS, ds=DS, doc_id="SIM-ACCOUNT-1", published_at=DS_CLOSE)
    clock.set(dt.datetime.combine(DS + dt.timedelta(days=1), dt.time(0, 5), dt.UTC))
    recent = spec.build(ctx, [item])[item.item_id]
    assert not isinstance(recent, PermanentError) and "no portfolio history point for 2024-03-05" in str(recent)
    clock.set(LATER)
    old = spec.build(ctx, [item])[item.item_id]
    assert isinstance(old, PermanentError) and old.errors[0]["loc"] == "ds"


def test_the_row_contract_keeps_a_snapshot_on_its_day_and_its_source_honest() -> None:
    """``SnapshotAccount`` refuses a moment off its day, a live row missing a figure, a history row
    claiming one the past cannot give, and a new row without a source."""
    from goldthread.models.warehouse import SnapshotAccount
    from pydantic import ValidationError

    live = dict(
        row_id="r", ds=DS, run_id="run", loaded_at=DS_CLOSE, account_id="A", source="live_account",
        snapshot_at=DS_CLOSE, equity=D(1), last_equity=D(1), daily_pnl=D(0), cash=D(1), buying_power=D(2),
        initial_margin=D(0), maintenance_margin=D(0), long_market_value=D(0), short_market_value=D(0),
        option_positions=0, delta=D(0), gamma=D(0), theta=D(0), vega=D(0),
    )
    past = {**live, "source": "portfolio_history", **dict.fromkeys(UNKNOWN_IN_THE_PAST)}
    assert SnapshotAccount(**live).source == "live_account"
    assert SnapshotAccount(**past).delta is None
    for bad, reason in (
        ({**live, "snapshot_at": DS_CLOSE + dt.timedelta(hours=3)}, "is not on ds 2024-03-05"),
        ({**live, "delta": None}, "a live_account snapshot needs delta"),
        ({**past, "cash": D(5)}, "a portfolio_history snapshot cannot know cash"),
        ({**live, "source": None}, "source is required"),
    ):
        with pytest.raises(ValidationError, match=reason):
            SnapshotAccount(**bad)
