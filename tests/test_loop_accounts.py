"""Loop D end to end through the local bus: one ``snapshot_accounts`` row per account and day.

The balances must be exactly the simulator's account at the snapshot time (and, for an untouched
account, the hand-computed starting figures); daily P&L is equity minus last equity; the portfolio
Greeks are the sum over option positions of qty x multiplier x the contract's Greek (zero with none).
A second run for the same day stores nothing new; an item naming another account is dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import pytest
from goldthread.loops import get_loop
from goldthread.loops.accounts import portfolio_greeks
from goldthread.models.broker import OptionPosition, OrderSide
from goldthread.models.hot import RunStatus
from goldthread.models.types import quantize9
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, SESSION, Clock, PinnedBroker, rows

GREEKS = ("delta", "gamma", "theta", "vega")


def broker(ctx: Context) -> PinnedBroker:
    b = ctx.broker
    assert isinstance(b, PinnedBroker)
    return b


def snapshot(ctx: Context) -> dict:
    (row,) = rows(ctx, "snapshot_accounts")
    return row


def test_untouched_account_snapshot_is_the_starting_cash(ctx: Context, clock: Clock) -> None:
    run = run_loop(ctx, "accounts", DS)
    assert (run.status, run.published, run.loaded) == (RunStatus.SUCCEEDED, 1, 1)
    row = snapshot(ctx)
    assert row["account_id"] == "SIM-ACCOUNT-1" and row["ds"] == DS and row["run_id"] == run.run_id
    assert row["equity"] == row["last_equity"] == row["cash"] == D("100000")
    assert row["buying_power"] == D("200000")  # (equity - initial margin 0) x 2
    assert row["initial_margin"] == row["maintenance_margin"] == 0
    assert row["long_market_value"] == row["short_market_value"] == 0
    assert row["daily_pnl"] == 0 and row["daily_return_pct"] == 0
    assert row["option_positions"] == 0
    assert all(row[g] == 0 for g in GREEKS)
    assert row["snapshot_at"] == clock()


def test_snapshot_equals_the_simulators_account(ctx: Context, clock: Clock) -> None:
    b = broker(ctx)
    b.pinned.update({"o-aapl": D("100.00"), "o-tsla": D("200.00"), "o-btc": D("60000.0000")})
    b.submit_market_order("o-aapl", "AAPL", OrderSide.BUY, D("10"), SESSION, "equity")
    b.submit_market_order("o-tsla", "TSLA", OrderSide.SELL, D("4"), SESSION, "equity")  # short
    b.submit_market_order("o-btc", "BTC/USD", OrderSide.BUY, D("0.05"), SESSION - dt.timedelta(days=1), "crypto")

    run = run_loop(ctx, "accounts", DS)
    assert run.status is RunStatus.SUCCEEDED
    account = b.get_account()  # same clock: the same account the loop read
    row = snapshot(ctx)
    for field in ("equity", "last_equity", "cash", "buying_power", "initial_margin", "maintenance_margin",
                  "long_market_value", "short_market_value"):
        assert row[field] == getattr(account, field), field
    # cash: 100000 - 10 x 100 + 4 x 200 - 0.05 x 60000 = 96800, less the fees posted so far (all negative)
    assert row["cash"] < D("96800") and row["cash"] > D("96790")
    assert row["long_market_value"] > 0 and row["short_market_value"] < 0
    assert row["equity"] == row["cash"] + row["long_market_value"] + row["short_market_value"]
    assert row["equity"] != row["last_equity"]
    assert row["daily_pnl"] == row["equity"] - row["last_equity"]
    assert row["daily_return_pct"] == quantize9((row["equity"] - row["last_equity"]) / row["last_equity"] * 100)


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


def test_snapshot_greeks_are_the_sum_over_option_positions(ctx: Context) -> None:
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
    first = run_loop(ctx, "accounts", DS)
    clock.advance(dt.timedelta(minutes=10))
    second = run_loop(ctx, "accounts", DS)
    assert (second.status, second.published, second.loaded, second.duplicates) == (RunStatus.SUCCEEDED, 1, 0, 1)
    assert snapshot(ctx)["run_id"] == first.run_id
    third = run_loop(ctx, "accounts", DS + dt.timedelta(days=1))
    assert third.loaded == 1 and len(rows(ctx, "snapshot_accounts")) == 2


def test_an_item_for_another_account_is_dead_lettered(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = get_loop("accounts")
    monkeypatch.setattr(spec, "find", lambda c, ds: ["SIM-ACCOUNT-1", "SOMEONE-ELSE"])
    run = run_loop(ctx, "accounts", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    (letter,) = rows(ctx, "dead_letters")
    assert letter["doc_id"] == "SOMEONE-ELSE" and letter["loop"] == "accounts"
    assert [e["loc"] for e in json.loads(letter["errors_json"])] == ["doc_id"]
