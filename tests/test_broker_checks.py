"""Loop A checks every position against its broker orders: each contradiction is one dead letter.

Each buggy position is written straight into the hot store (``ctx.hot.put`` through ``make.raw_position``,
as a buggy bot writing Firestore would), with orders of its own at the simulated broker (copies of a valid
trade's orders, or the broker's report changed through ``PinnedBroker.reported``). Each must end as ONE
dead letter with reason ``BROKER_MISMATCH`` and a field-level error naming the field, the bot's value and
the broker's, while a valid position of the same day loads. Also: crypto spellings, partial fills,
orders not filled yet, the price-discrepancy flag and its tolerance setting, and the settings' parsing.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D
from typing import Any

import pytest
from goldthread.config import load_settings
from goldthread.errors import ConfigError
from goldthread.models import AssetClass, LivePosition, Side
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, SESSION, UTC, Clock, Factory, rows

CLOSE = SESSION + dt.timedelta(hours=2)  # closed_trade's default close


def letters(ctx: Context) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in rows(ctx, "dead_letters")}


def errors(letter: dict[str, Any]) -> list[dict[str, str]]:
    return json.loads(letter["errors_json"])


def field_errors(letter: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, bot value, broker value) of each error of a dead letter."""
    return [(e["loc"], e["bot"], e["broker"]) for e in errors(letter)]


def run_with_one_bad(ctx: Context, make: Factory, bad_id: str) -> dict[str, Any]:
    """Run Loop A for DS; the valid ``pos-good`` loads and ``bad_id`` is the one dead letter, returned."""
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-good"]
    found = letters(ctx)
    assert list(found) == [bad_id]
    letter = found[bad_id]
    assert letter["reason_code"] == "BROKER_MISMATCH"
    assert all(e["type"] == "broker_mismatch" for e in errors(letter))
    mark = make.mark(bad_id)
    assert mark["dead_lettered_run_id"] == run.run_id and mark["archived_run_id"] is None
    return letter


def good(make: Factory, **kwargs: Any) -> LivePosition:
    return make.closed_trade("pos-good", broker_entry=D("100"), broker_exit=D("101"), **kwargs)


def test_a_symbol_the_orders_do_not_trade(ctx: Context, make: Factory) -> None:
    make.raw_position("pos-msft", good(make), symbol="MSFT")  # its orders (copies of pos-good's) trade AAPL
    letter = run_with_one_bad(ctx, make, "pos-msft")
    assert field_errors(letter) == [("symbol", "MSFT", "AAPL"), ("symbol", "MSFT", "AAPL")]
    assert "MSFT vs broker AAPL (entry order pos-msft-entry)" in errors(letter)[0]["msg"]
    assert "(exit order pos-msft-exit)" in errors(letter)[1]["msg"]


def test_a_long_whose_orders_sell_then_buy(ctx: Context, make: Factory) -> None:
    short = make.closed_trade("pos-short-base", side=Side.SHORT, broker_entry=D("50"), broker_exit=D("49"))
    make.raw_position("pos-flipped", short, side="long")  # entry order is a sell, exit a buy
    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (1, 1)
    (letter,) = letters(ctx).values()
    assert (letter["doc_id"], letter["reason_code"]) == ("pos-flipped", "BROKER_MISMATCH")
    assert field_errors(letter) == [("side", "long", "sell"), ("side", "long", "buy")]
    assert "a long's entry is a buy" in errors(letter)[0]["msg"]
    # the short itself loads with its P&L the right way round: sold 50, bought back 49, 3 shares = +3
    (row,) = rows(ctx, "fact_trades")
    assert (row["position_id"], row["side"], row["gross_pnl_usd"]) == ("pos-short-base", "short", D(3))


def test_a_short_whose_orders_buy_then_sell(ctx: Context, make: Factory) -> None:
    make.raw_position("pos-short", good(make), side="short")
    letter = run_with_one_bad(ctx, make, "pos-short")
    assert field_errors(letter) == [("side", "short", "buy"), ("side", "short", "sell")]


def test_a_quantity_the_broker_did_not_fill(ctx: Context, make: Factory) -> None:
    make.raw_position("pos-qty", good(make), qty="2")  # the broker filled 3 on each leg
    letter = run_with_one_bad(ctx, make, "pos-qty")
    assert field_errors(letter) == [("qty", "2", "3"), ("qty", "2", "3")]


def test_every_mismatching_field_is_listed(ctx: Context, make: Factory) -> None:
    make.raw_position("pos-many", good(make), symbol="MSFT", qty="7")
    letter = run_with_one_bad(ctx, make, "pos-many")
    assert field_errors(letter) == [("symbol", "MSFT", "AAPL"), ("qty", "7", "3"),
                                    ("symbol", "MSFT", "AAPL"), ("qty", "7", "3")]
    assert "symbol: bot MSFT, broker AAPL" in letter["error_message"]
    assert "qty: bot 7, broker 3" in letter["error_message"]


@pytest.mark.parametrize("status", ["canceled", "expired", "rejected"])
def test_an_order_that_never_filled(ctx: Context, make: Factory, status: str) -> None:
    make.raw_position("pos-gone", good(make))
    make.broker.reported["pos-gone-exit"] = {"status": status, "filled_qty": "0", "filled_avg_price": None,
                                             "filled_at": None}
    letter = run_with_one_bad(ctx, make, "pos-gone")
    assert field_errors(letter) == [("exit_order_id", "filled", f"{status} with 0 filled")]
    assert "the fill never happened" in errors(letter)[0]["msg"]


def test_a_partial_fill_must_be_the_recorded_quantity(ctx: Context, make: Factory) -> None:
    base = good(make)
    make.raw_position("pos-partial-wrong", base)  # records 3, the entry filled 2 and was canceled
    make.broker.reported["pos-partial-wrong-entry"] = {"status": "canceled", "filled_qty": "2"}
    make.raw_position("pos-partial-right", base, qty="2")  # records the 2 that filled on both legs
    for leg in ("entry", "exit"):
        make.broker.reported[f"pos-partial-right-{leg}"] = {"status": "partially_filled", "filled_qty": "2"}
    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (2, 1)
    assert field_errors(letters(ctx)["pos-partial-wrong"]) == [("qty", "3", "2")]
    (row,) = rows(ctx, "fact_trades", "position_id = @p", p="pos-partial-right")
    assert (row["qty"], row["broker_entry_qty"], row["gross_pnl_usd"]) == (D(2), D(2), D(2))  # (101 - 100) x 2


def test_an_order_not_filled_yet_is_no_mismatch(ctx: Context, make: Factory) -> None:
    base = good(make)
    make.raw_position("pos-pending", base)
    make.broker.reported["pos-pending-exit"] = {"status": "pending_new", "filled_qty": "0", "filled_avg_price": None,
                                                "filled_at": None}
    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (2, 0)
    (row,) = rows(ctx, "fact_trades", "position_id = @p", p="pos-pending")
    assert row["broker_exit_price"] is None and row["broker_exit_qty"] is None  # the price patch fills it later
    assert row["gross_pnl_usd"] == D(3)  # at the bot's exit price, the fill it was told: (101 - 100) x 3


def test_an_entry_filled_long_before_the_position_opened(ctx: Context, make: Factory) -> None:
    opened = SESSION + dt.timedelta(hours=1)  # the orders filled at 15:00 and 17:00; the bot says 16:00
    make.raw_position("pos-early", good(make), opened_at=opened.isoformat())
    letter = run_with_one_bad(ctx, make, "pos-early")
    assert field_errors(letter) == [("opened_at", opened.isoformat(), SESSION.isoformat())]
    assert "filled more than 0:05:00 before the bot's time" in errors(letter)[0]["msg"]


def test_fill_time_tolerance_is_a_setting(ctx: Context, make: Factory) -> None:
    opened = SESSION + dt.timedelta(minutes=10)  # entry filled 10 minutes before the bot's time
    make.raw_position("pos-clock", good(make), opened_at=opened.isoformat())
    ctx.settings = ctx.settings.with_(fill_time_tolerance=dt.timedelta(minutes=15))
    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (2, 0)


def test_a_fill_more_than_four_days_after_the_bot_time(ctx: Context, make: Factory) -> None:
    make.raw_position("pos-late", good(make))
    late = CLOSE + dt.timedelta(days=4, minutes=1)
    make.broker.reported["pos-late-exit"] = {"filled_at": late}
    letter = run_with_one_bad(ctx, make, "pos-late")
    assert field_errors(letter) == [("closed_at", CLOSE.isoformat(), late.isoformat())]
    assert "after the bot's time" in errors(letter)[0]["msg"]


def test_an_exit_filled_before_the_entry(ctx: Context, make: Factory) -> None:
    opened, closed = SESSION, SESSION + dt.timedelta(minutes=2)
    base = good(make)
    make.raw_position("pos-reversed", base, closed_at=closed.isoformat())
    # both fills within the tolerance of the bot's times, but in the wrong order
    entry_fill, exit_fill = opened + dt.timedelta(minutes=3), closed - dt.timedelta(minutes=1)
    make.broker.reported["pos-reversed-entry"] = {"filled_at": entry_fill}
    make.broker.reported["pos-reversed-exit"] = {"filled_at": exit_fill}
    letter = run_with_one_bad(ctx, make, "pos-reversed")
    (error,) = errors(letter)
    assert error["loc"] == "closed_at"
    assert error["broker"] == f"exit filled {exit_fill.isoformat()} before entry filled {entry_fill.isoformat()}"
    assert error["bot"] == f"exit after entry ({opened.isoformat()} -> {closed.isoformat()})"


def test_a_weekend_equity_fill_at_the_next_open_is_fine(ctx: Context, make: Factory, clock: Clock) -> None:
    friday_night = dt.datetime(2024, 3, 8, 22, 0, tzinfo=UTC)  # fills at Monday's open, 2.7 days later
    make.closed_trade("pos-weekend", opened_at=SESSION, closed_at=friday_night, broker_entry=D(100),
                      broker_exit=D(102))
    make.ctx.hot.update("live_positions", "pos-weekend", {"exit_filled_avg_price": "101.9"})
    clock.set(dt.datetime(2024, 3, 11, 16, 0, tzinfo=UTC))
    run = run_loop(ctx, "trades", friday_night.date())
    assert (run.loaded, run.dead_lettered) == (1, 0)


def test_crypto_pairs_match_whatever_the_spelling(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-good", symbol="BTC/USD", asset_class=AssetClass.CRYPTO, qty=D("0.5"))
    make.broker.reported["pos-good-entry"] = {"symbol": "BTCUSD"}  # Alpaca may report either spelling
    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (1, 0)
    assert rows(ctx, "fact_trades")[0]["symbol"] == "BTC/USD"


def test_a_price_discrepancy_beyond_the_tolerance_is_flagged(ctx: Context, make: Factory, clock: Clock) -> None:
    # 10 bps: within the default 50; 100 bps: beyond it
    make.closed_trade("pos-near", broker_entry=D("100"), broker_exit=D("110"), bot_entry=D("100.10"))
    make.closed_trade("pos-far", broker_entry=D("100"), broker_exit=D("110"), bot_entry=D("101"))
    make.closed_trade("pos-unknown", opened_at=dt.datetime(2024, 3, 5, 13, 0, tzinfo=UTC),
                      closed_at=dt.datetime(2024, 3, 5, 22, 0, tzinfo=UTC))  # neither bot price known (both 0)
    clock.set(dt.datetime(2024, 3, 5, 23, 0, tzinfo=UTC))  # exit reported at the next open only
    run = run_loop(ctx, "trades", DS)
    assert (run.loaded, run.dead_lettered) == (3, 0)  # flagged, not dead-lettered: P&L uses the broker's fill
    by_id = {r["position_id"]: r for r in rows(ctx, "fact_trades")}
    assert (by_id["pos-near"]["entry_discrepancy_bps"], by_id["pos-near"]["price_discrepancy_flagged"]) == (
        D(10), False)
    assert (by_id["pos-far"]["entry_discrepancy_bps"], by_id["pos-far"]["price_discrepancy_flagged"]) == (
        D(100), True)
    assert by_id["pos-far"]["gross_pnl_usd"] == D(30)  # (110 - 100) x 3 at the broker's fills
    assert by_id["pos-unknown"]["price_discrepancy_flagged"] is None


def test_the_price_tolerance_is_a_setting(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-near", broker_entry=D("100"), broker_exit=D("110"), bot_entry=D("100.10"))
    ctx.settings = ctx.settings.with_(price_tolerance_bps=D(5))
    run_loop(ctx, "trades", DS)
    assert rows(ctx, "fact_trades")[0]["price_discrepancy_flagged"] is True  # 10 bps > 5


def test_the_settings_are_read_from_the_environment() -> None:
    default = load_settings({})
    assert (default.fill_time_tolerance, default.price_tolerance_bps) == (dt.timedelta(seconds=300), D(50))
    custom = load_settings({"GOLDTHREAD_FILL_TIME_TOLERANCE_SECONDS": "60", "GOLDTHREAD_PRICE_TOLERANCE_BPS": "12.5"})
    assert (custom.fill_time_tolerance, custom.price_tolerance_bps) == (dt.timedelta(seconds=60), D("12.5"))
    for bad in ({"GOLDTHREAD_FILL_TIME_TOLERANCE_SECONDS": "-1"}, {"GOLDTHREAD_FILL_TIME_TOLERANCE_SECONDS": "x"},
                {"GOLDTHREAD_PRICE_TOLERANCE_BPS": "-3"}, {"GOLDTHREAD_PRICE_TOLERANCE_BPS": "NaN"},
                {"GOLDTHREAD_PRICE_TOLERANCE_BPS": "lots"}):
        with pytest.raises(ConfigError):
            load_settings(bad)
