"""AlpacaBroker and AlpacaMarketData against a local fake Alpaca, through the real alpaca-py clients."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest
from goldthread.adapters.alpaca_broker import (
    AlpacaBroker,
    AlpacaNotFoundError,
    AlpacaRetryPolicy,
    TokenBucket,
    resolve_url,
)
from goldthread.adapters.alpaca_market_data import AlpacaMarketData
from goldthread.errors import BrokerRequestError, BrokerUnavailableError, ConfigError, PermanentError, TransientError
from goldthread.ports.market_data import to_ns

from tests.fakes.alpaca_server import FakeAlpaca
from tests.support.recording import FAST, KEY, SECRET

T0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)
DAY = dt.date(2024, 1, 2)
CALL = "AAPL240119C00190000"
PUT = "AAPL240119P00180000"



@pytest.fixture
def market(fake: FakeAlpaca) -> Iterator[AlpacaMarketData]:
    adapter = AlpacaMarketData(KEY, SECRET, data_url=fake.url, policy=FAST, env={})
    yield adapter
    adapter.close()


def minutes(symbol_close: float, n: int, start: dt.datetime = T0, step: dt.timedelta = dt.timedelta(minutes=1)) -> list:
    return [FakeAlpaca.bar(start + i * step, symbol_close + i) for i in range(n)]


def chain_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# -- the fake itself -------------------------------------------------------------------------------------


def test_fake_answers_shapes_alpaca_py_models_parse(fake: FakeAlpaca) -> None:
    """The fake's JSON parses into alpaca-py's own models, so the adapters meet Alpaca's real shapes."""
    from alpaca.data.historical.option import OptionHistoricalDataClient
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.data.requests import OptionSnapshotRequest, StockBarsRequest
    from alpaca.data.timeframe import TimeFrame
    from alpaca.trading.client import TradingClient

    fake.bars_page_size = 2
    order = fake.add_order(filled_avg_price="0", status="accepted")
    fake.add_position(CALL, "2")
    fake.add_position("AAPL", "5", asset_class="us_equity")
    fake.set_snapshot(CALL, delta=0.5, gamma=0.02, theta=-0.05, vega=0.1)
    fake.add_bars("AAPL", minutes(100, 5))

    trading = TradingClient(KEY, SECRET, url_override=fake.url)
    assert str(trading.get_order_by_id(order["id"]).id) == order["id"]  # type: ignore[union-attr]
    assert trading.get_account().account_number == "PA3ABCDEFGH"  # type: ignore[union-attr]
    assert [p.symbol for p in trading.get_all_positions()] == [CALL, "AAPL"]  # type: ignore[union-attr]
    options = OptionHistoricalDataClient(KEY, SECRET, url_override=fake.url)
    snap = options.get_option_snapshot(OptionSnapshotRequest(symbol_or_symbols=[CALL]))[CALL]  # type: ignore[index]
    assert snap.greeks is not None and snap.greeks.delta == 0.5
    stocks = StockHistoricalDataClient(KEY, SECRET, url_override=fake.url)
    bars = stocks.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=T0))
    assert len(bars.data["AAPL"]) == 5  # type: ignore[union-attr]
    assert fake.count("/v2/stocks/bars") == 3  # pages of 2, 2 and 1


def test_import_does_not_load_vendor_sdks() -> None:
    code = (
        "import sys, goldthread.adapters.alpaca_broker, goldthread.adapters.alpaca_market_data;"
        "print(sorted(m for m in ('alpaca', 'requests', 'tenacity') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- orders ------------------------------------------------------------------------------------------


def test_filled_order_maps_to_broker_order(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    buy = fake.add_order(symbol="AAPL", side="buy", qty="10", filled_avg_price="185.12")
    sell = fake.add_order(symbol="BTC/USD", side="sell", qty="0.5", filled_avg_price="42000.5", asset_class="crypto")

    orders = broker.get_orders([buy["id"], sell["id"]])

    assert set(orders) == {buy["id"], sell["id"]}
    o = orders[buy["id"]]
    assert (o.order_id, o.symbol, o.side, o.status) == (buy["id"], "AAPL", "buy", "filled")
    assert o.filled_qty == Decimal("10") and o.filled_avg_price == Decimal("185.12")
    assert o.filled_at == dt.datetime(2024, 1, 2, 15, 30, tzinfo=dt.UTC) and o.is_filled
    s = orders[sell["id"]]
    assert (s.symbol, s.side, s.filled_qty) == ("BTC/USD", "sell", Decimal("0.5"))
    assert s.filled_avg_price == Decimal("42000.5")


def test_unprocessed_order_keeps_zero_or_null_price(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    zero = fake.add_order(status="accepted", filled_qty="0", filled_avg_price="0", filled_at=None)
    null = fake.add_order(status="new", filled_qty=None, filled_avg_price=None, filled_at=None)

    orders = broker.get_orders([zero["id"], null["id"]])

    assert orders[zero["id"]].filled_avg_price == Decimal("0") and not orders[zero["id"]].is_filled
    assert orders[null["id"]].filled_avg_price is None and orders[null["id"]].filled_qty == 0
    assert orders[zero["id"]].filled_at is None and orders[zero["id"]].status == "accepted"


def test_unknown_order_is_absent(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    known = fake.add_order()
    unknown = "00000000-0000-4000-8000-000000000000"

    orders = broker.get_orders([known["id"], unknown, "not-a-uuid", known["id"]])

    assert list(orders) == [known["id"]]
    assert fake.count(f"/v2/orders/{unknown}") == 1
    assert fake.count(f"/v2/orders/{known['id']}") == 1  # asked twice, fetched once
    assert fake.count("/v2/orders/*") == 2  # no request for an id that is not a UUID


def test_wrong_base_url_is_not_mistaken_for_unknown_orders(fake: FakeAlpaca) -> None:
    """A 404 from a path that does not exist is a permanent error, not 'every order is unknown'."""
    broker = AlpacaBroker(KEY, SECRET, base_url=fake.url + "/nothing-here", data_url=fake.url, policy=FAST, env={})
    order = fake.add_order()
    with pytest.raises(BrokerRequestError, match="check the base URL") as info:
        broker.get_orders([order["id"]])
    assert not isinstance(info.value, AlpacaNotFoundError) and order["id"] in str(info.value)


def test_order_alpaca_refuses_is_permanent_and_named(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    order = fake.add_order()
    fake.fail(f"/v2/orders/{order['id']}", 422, body='{"code": 42210000, "message": "invalid order id"}')

    with pytest.raises(BrokerRequestError, match=order["id"]) as info:
        broker.get_orders([order["id"]])

    assert not isinstance(info.value, AlpacaNotFoundError) and "422" in str(info.value)
    assert fake.count(f"/v2/orders/{order['id']}") == 1  # permanent: not retried


def test_order_that_does_not_fit_the_model_is_permanent(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    order = fake.add_order(filled_qty="-3")

    with pytest.raises(BrokerRequestError, match=rf"order {order['id']}.*filled_qty") as info:
        broker.get_orders([order["id"]])

    assert info.value.errors[0]["loc"] == "filled_qty"


# -- account -----------------------------------------------------------------------------------------


def test_account_maps_balances(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.set_account(equity="101234.56", last_equity="100000.01", long_market_value="1234.55")

    account = broker.get_account()

    assert account.account_id == fake.account["id"]
    assert (account.equity, account.last_equity) == (Decimal("101234.56"), Decimal("100000.01"))
    assert (account.cash, account.buying_power) == (Decimal("100000"), Decimal("200000"))
    assert account.long_market_value == Decimal("1234.55") and account.short_market_value == 0


def test_account_without_id_uses_number_and_zero_margins(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.set_account(id=None, initial_margin=None, maintenance_margin=None, short_market_value=None)

    account = broker.get_account()

    assert account.account_id == "PA3ABCDEFGH"
    assert account.initial_margin == account.maintenance_margin == account.short_market_value == 0


def test_account_missing_equity_is_permanent(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.set_account(equity=None)
    with pytest.raises(BrokerRequestError, match=r"account.*equity"):
        broker.get_account()


# -- option positions ----------------------------------------------------------------------------------


def test_option_positions_carry_snapshot_greeks(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.add_position(CALL, "2")
    fake.add_position(PUT, "-3")
    fake.add_position("AAPL", "100", asset_class="us_equity")
    fake.add_position("BTC/USD", "0.1", asset_class="crypto")
    fake.set_snapshot(CALL, delta=0.55, gamma=0.021, theta=-0.05, vega=0.12)
    fake.set_snapshot(PUT, delta=-0.31, gamma=0.015, theta=-0.04, vega=0.09)

    positions = {p.symbol: p for p in broker.get_option_positions()}

    assert set(positions) == {CALL, PUT}
    call, put = positions[CALL], positions[PUT]
    assert (call.qty, call.multiplier, call.delta, call.gamma) == (2, 100, Decimal("0.55"), Decimal("0.021"))
    assert (call.theta, call.vega) == (Decimal("-0.05"), Decimal("0.12"))
    assert (put.qty, put.delta) == (Decimal("-3"), Decimal("-0.31"))
    snapshot_requests = fake.requests_to("/v1beta1/options/snapshots")
    assert len(snapshot_requests) == 1
    assert set(snapshot_requests[0].query["symbols"].split(",")) == {CALL, PUT}


def test_option_snapshots_are_batched_by_100(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    symbols = [f"AAPL240119C{strike:05d}000" for strike in range(100, 250)]
    for symbol in symbols:
        fake.add_position(symbol, "1", multiplier="10")
        fake.set_snapshot(symbol, delta=0.5)

    positions = broker.get_option_positions()

    assert len(positions) == 150 and {p.multiplier for p in positions} == {10}
    batches = [r.query["symbols"].split(",") for r in fake.requests_to("/v1beta1/options/snapshots")]
    assert [len(b) for b in batches] == [100, 50]


def test_option_without_greeks_is_transient_and_named(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.add_position(CALL, "1")
    fake.set_snapshot(CALL, delta=None)
    with pytest.raises(BrokerUnavailableError, match=CALL):
        broker.get_option_positions()


def test_no_option_positions_sends_no_snapshot_request(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.add_position("AAPL", "100", asset_class="us_equity")
    assert broker.get_option_positions() == []
    assert fake.count("/v1beta1/options/snapshots") == 0


# -- fee activities ----------------------------------------------------------------------------------


def test_fee_activities_follow_page_token(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    for _ in range(150):
        fake.add_activity("FEE", DAY, "-0.01", description="REG/TAF fee")
    fake.add_activity("CFEE", DAY, "0", symbol="ETH/USD", qty="-0.000195", price="1884.5",
                      description="Coin Pair Transaction Fee (Non USD)")
    fake.add_activity("FEE", DAY + dt.timedelta(days=1), "-0.02")
    fake.add_activity("DIV", DAY, "12.50", symbol="AAPL")

    fees = broker.get_fee_activities(DAY)

    assert len(fees) == 151 and len({f.activity_id for f in fees}) == 151
    assert sum(f.net_amount for f in fees) == Decimal("-1.50")
    cfee = next(f for f in fees if f.activity_type == "CFEE")
    assert (cfee.symbol, cfee.qty, cfee.price) == ("ETH/USD", Decimal("-0.000195"), Decimal("1884.5"))
    assert cfee.net_amount == 0 and cfee.description == "Coin Pair Transaction Fee (Non USD)"
    pages = fake.requests_to("/v2/account/activities")
    assert len(pages) == 2
    assert pages[0].query["activity_types"] == "FEE,CFEE" and pages[0].query["date"] == "2024-01-02"
    assert "page_token" not in pages[0].query and pages[1].query["page_token"] == fees[99].activity_id


def test_fee_activities_ignore_other_types(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    """Even when the server ignores the activity_types filter, only FEE and CFEE come back."""
    body = [
        {"id": "20240102160000000::a", "activity_type": "FEE", "date": "2024-01-02", "net_amount": "-0.03"},
        {"id": "20240102160000001::b", "activity_type": "FILL", "transaction_time": "2024-01-02T15:30:00Z",
         "type": "fill", "price": "185.12", "qty": "10", "side": "buy", "symbol": "AAPL"},
        {"id": "20240102160000002::c", "activity_type": "DIV", "date": "2024-01-02", "net_amount": "5"},
    ]
    fake.fail("/v2/account/activities", 200, body=json.dumps(body))

    fees = broker.get_fee_activities(DAY)

    assert [(f.activity_id, f.activity_type, f.net_amount) for f in fees] == [
        ("20240102160000000::a", "FEE", Decimal("-0.03"))
    ]


def test_no_fees_posted_is_empty(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    assert broker.get_fee_activities(DAY) == []


# -- bars ----------------------------------------------------------------------------------------------


def test_stock_bars_follow_pages_once_each(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    fake.bars_page_size = 2
    fake.add_bars("AAPL", minutes(100, 4))
    fake.add_bars("MSFT", minutes(300, 3))

    bars = market.get_bars(["MSFT", "AAPL"], "1Min", T0, T0 + dt.timedelta(minutes=3))

    aapl, msft = bars["AAPL"], bars["MSFT"]
    assert aapl.ts.dtype == np.int64 and aapl.close.dtype == np.float64
    assert aapl.ts.tolist() == [to_ns(T0 + dt.timedelta(minutes=i)) for i in range(3)]  # end is exclusive
    assert aapl.close.tolist() == [100.0, 101.0, 102.0] and aapl.volume.tolist() == [1000.0] * 3
    assert (aapl.open[0], aapl.high[0], aapl.low[0]) == (99.5, 101.0, 99.0)
    assert msft.close.tolist() == [300.0, 301.0, 302.0]
    pages = fake.requests_to("/v2/stocks/bars")
    tokens = [r.query.get("page_token") for r in pages]
    assert len(pages) == 4 and len(set(tokens)) == 4  # 7 bars (end inclusive at Alpaca) in pages of 2
    assert {(r.query["feed"], r.query["adjustment"], r.query["timeframe"]) for r in pages} == {("iex", "raw", "1Min")}
    assert set(pages[0].query["symbols"].split(",")) == {"AAPL", "MSFT"}


def test_crypto_bars_use_the_crypto_endpoint(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    fake.bars_page_size = 2
    hour = dt.timedelta(hours=1)
    fake.add_bars("BTC/USD", minutes(42000, 5, step=hour), timeframe="1Hour")
    fake.add_bars("BTC/USD", minutes(1, 5, step=hour), timeframe="1Day")

    bars = market.get_bars(["BTC/USD"], "1Hour", T0, T0 + 10 * hour)

    assert bars["BTC/USD"].close.tolist() == [42000.0, 42001.0, 42002.0, 42003.0, 42004.0]
    assert fake.count("/v1beta3/crypto/us/bars") == 3 and fake.count("/v2/stocks/bars") == 0
    assert fake.requests_to("/v1beta3/crypto/us/bars")[0].query["symbols"] == "BTC/USD"
    assert market.source_of("BTC/USD") == "alpaca-crypto-us" and market.source_of("AAPL") == "alpaca-iex"


def test_mixed_symbols_and_missing_data(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    fake.add_bars("AAPL", minutes(100, 2))
    fake.add_bars("ETH/USD", minutes(2300, 2))

    bars = market.get_bars(["AAPL", "ETH/USD", "NODATA", "SOL/USD"], "1Min", T0, T0 + dt.timedelta(hours=1))

    assert list(bars) == ["AAPL", "ETH/USD", "NODATA", "SOL/USD"]
    assert len(bars["AAPL"]) == 2 and len(bars["ETH/USD"]) == 2
    assert len(bars["NODATA"]) == 0 and bars["NODATA"].ts.dtype == np.int64 and len(bars["SOL/USD"]) == 0
    assert fake.count("/v2/stocks/bars") == 1 and fake.count("/v1beta3/crypto/us/bars") == 1


def test_bars_are_sorted_and_deduplicated(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    rows = minutes(100, 3)
    body = {"bars": {"AAPL": [rows[2], rows[0], rows[1], rows[0]]}, "next_page_token": None}
    fake.fail("/v2/stocks/bars", 200, body=json.dumps(body))

    bars = market.get_bars(["AAPL"], "1Min", T0, T0 + dt.timedelta(minutes=5))["AAPL"]

    assert bars.close.tolist() == [100.0, 101.0, 102.0] and bool(np.all(np.diff(bars.ts) > 0))


def test_feed_and_adjustment_are_sent_and_recorded(fake: FakeAlpaca) -> None:
    fake.add_bars("AAPL", minutes(100, 1), timeframe="1Day")
    market = AlpacaMarketData(KEY, SECRET, feed="sip", adjustment="all", data_url=fake.url, policy=FAST, env={})

    bars = market.get_bars(["AAPL"], "1Day", T0, T0 + dt.timedelta(days=1))

    assert len(bars["AAPL"]) == 1
    query = fake.requests_to("/v2/stocks/bars")[0].query
    assert (query["feed"], query["adjustment"], query["timeframe"]) == ("sip", "all", "1Day")
    assert (market.feed, market.adjustment, market.source_of("AAPL")) == ("sip", "all", "alpaca-sip-all")


def test_bad_bar_arguments(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    with pytest.raises(ValueError, match="timeframe"):
        market.get_bars(["AAPL"], "5Min", T0, T0 + dt.timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone"):
        market.get_bars(["AAPL"], "1Min", T0.replace(tzinfo=None), T0 + dt.timedelta(hours=1))
    with pytest.raises(ConfigError):
        AlpacaMarketData(KEY, SECRET, feed="nasdaq", data_url=fake.url, env={})
    assert fake.count() == 0


def test_bars_response_of_wrong_shape_is_permanent(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    fake.fail("/v2/stocks/bars", 200, body='{"trades": {}}')
    with pytest.raises(BrokerRequestError, match="AAPL"):
        market.get_bars(["AAPL"], "1Min", T0, T0 + dt.timedelta(hours=1))
    assert fake.count("/v2/stocks/bars") == 1


# -- reliability ---------------------------------------------------------------------------------------


def test_429_then_success(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    order = fake.add_order()
    fake.fail("/v2/orders/*", 429, retry_after=0)

    orders = broker.get_orders([order["id"]])

    assert orders[order["id"]].is_filled
    assert fake.count(f"/v2/orders/{order['id']}") == 2


def test_retry_after_is_capped_by_max_backoff(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.fail("/v2/account", 429, retry_after=3600)
    assert broker.get_account().equity == Decimal("100000")
    assert fake.count("/v2/account") == 2


def test_alpaca_py_own_retry_is_off(fake: FakeAlpaca) -> None:
    """A 504 with one attempt allowed is one request: alpaca-py's built-in 3 s retry loop is disabled."""
    once = AlpacaRetryPolicy(timeout=0.25, max_attempts=1, initial_backoff=0.001, max_backoff=0.01)
    broker = AlpacaBroker(KEY, SECRET, base_url=fake.url, data_url=fake.url, policy=once, env={})
    fake.fail("/v2/account", 504, times=None)
    with pytest.raises(BrokerUnavailableError, match="504"):
        broker.get_account()
    assert fake.count("/v2/account") == 1


def test_500s_exhausted_raise_unavailable_naming_the_order(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    from alpaca.common.exceptions import APIError

    order = fake.add_order()
    fake.fail("/v2/orders/*", 500, times=None)

    with pytest.raises(BrokerUnavailableError, match=order["id"]) as info:
        broker.get_orders([order["id"]])

    assert isinstance(info.value, TransientError) and "500" in str(info.value) and "3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, APIError)
    assert fake.count(f"/v2/orders/{order['id']}") == FAST.max_attempts


def test_503_on_a_later_page_refetches_only_that_page(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    fake.bars_page_size = 2
    fake.add_bars("AAPL", minutes(100, 6))
    fake.add_bars("BTC/USD", minutes(40000, 3))

    original = market.get_bars(["AAPL"], "1Min", T0, T0 + dt.timedelta(hours=1))["AAPL"]
    first_pass = [r.query.get("page_token") for r in fake.requests_to("/v2/stocks/bars")]
    fake.requests.clear()
    fake.fail("/v2/stocks/bars", 503)  # the first page answers 503 once
    fake.fail("/v1beta3/crypto/us/bars", 503, times=2)

    again = market.get_bars(["AAPL", "BTC/USD"], "1Min", T0, T0 + dt.timedelta(hours=1))

    assert again["AAPL"].close.tolist() == original.close.tolist() == [100.0 + i for i in range(6)]
    assert len(again["BTC/USD"]) == 3
    tokens = [r.query.get("page_token") for r in fake.requests_to("/v2/stocks/bars")]
    assert tokens == [first_pass[0], *first_pass]  # 3 pages, only the failed one fetched twice
    assert len(fake.requests_to("/v1beta3/crypto/us/bars")) == 2 + 2  # two 503s, then two pages


def test_permanent_4xx_is_not_retried(fake: FakeAlpaca) -> None:
    broker = AlpacaBroker(KEY, "wrong-secret-abc123", base_url=fake.url, data_url=fake.url, policy=FAST, env={})
    with pytest.raises(BrokerRequestError, match="401") as info:
        broker.get_account()
    assert isinstance(info.value, PermanentError) and fake.count("/v2/account") == 1
    assert "wrong-secret-abc123" not in chain_text(info.value)


def test_timeout_then_success(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.delay("/v2/account", 1.0)
    assert broker.get_account().cash == Decimal("100000")
    assert fake.count("/v2/account") == 2


def test_timeouts_exhausted_are_transient(market: AlpacaMarketData, fake: FakeAlpaca) -> None:
    fake.delay("/v2/stocks/bars", 1.0, times=None)
    with pytest.raises(BrokerUnavailableError, match=r"AAPL.*timed out"):
        market.get_bars(["AAPL"], "1Min", T0, T0 + dt.timedelta(hours=1))
    assert fake.count("/v2/stocks/bars") == FAST.max_attempts


def test_malformed_json_is_retried_as_transient(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    order = fake.add_order()
    fake.malformed("/v2/orders/*")
    assert order["id"] in broker.get_orders([order["id"]])

    fake.malformed("/v2/orders/*", times=None)
    with pytest.raises(BrokerUnavailableError, match=rf"{order['id']}.*malformed JSON"):
        broker.get_orders([order["id"]])


def test_connection_refused_is_transient(fake: FakeAlpaca) -> None:
    url = fake.url
    fake.stop()
    broker = AlpacaBroker(KEY, SECRET, base_url=url, data_url=url, policy=FAST, env={})
    with pytest.raises(BrokerUnavailableError, match="cannot connect"):
        broker.get_account()


def test_no_secret_in_any_error_or_log(fake: FakeAlpaca, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = AlpacaBroker(KEY, SECRET, base_url=fake.url, data_url=fake.url, policy=FAST, env={})
    market = AlpacaMarketData(KEY, SECRET, data_url=fake.url, policy=FAST, env={})
    order = fake.add_order()
    fake.add_position(CALL, "1")
    fake.set_snapshot(CALL, delta=None)
    fake.set_account(equity=None)
    fake.fail("/v2/orders/*", 500, times=None)
    fake.delay("/v2/positions", 1.0, times=1)
    fake.malformed("/v2/stocks/bars", times=None)
    fake.fail("/v1beta3/crypto/us/bars", 400, body=json.dumps({"message": f"bad key {KEY} / {SECRET}"}))

    failures: list[BaseException] = []
    for call in (
        lambda: broker.get_orders([order["id"]]),
        broker.get_option_positions,
        broker.get_account,
        lambda: market.get_bars(["AAPL"], "1Min", T0, T0 + dt.timedelta(hours=1)),
        lambda: market.get_bars(["BTC/USD"], "1Min", T0, T0 + dt.timedelta(hours=1)),
    ):
        with pytest.raises((BrokerUnavailableError, BrokerRequestError)) as info:
            call()
        failures.append(info.value)

    echoed = failures.pop()  # the server echoed the credentials in its error body
    assert "***" in str(echoed) and KEY not in str(echoed) and SECRET not in str(echoed)
    for exc in failures:
        assert KEY not in chain_text(exc) and SECRET not in chain_text(exc)
    assert KEY not in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(broker) and SECRET not in repr(market)


# -- configuration ---------------------------------------------------------------------------------------


def test_credentials_and_urls_from_environment(fake: FakeAlpaca) -> None:
    env = {
        "APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET,
        "GOLDTHREAD_ALPACA_URL": fake.url, "GOLDTHREAD_ALPACA_DATA_URL": fake.url + "/",
        "GOLDTHREAD_ALPACA_PAPER": "false",
    }
    broker = AlpacaBroker(env=env, policy=FAST)
    market = AlpacaMarketData(env=env, policy=FAST)
    fake.add_bars("AAPL", minutes(100, 1))

    assert broker.get_account().account_id and len(market.get_bars(["AAPL"], "1Min", T0, T0 + dt.timedelta(1))["AAPL"])
    assert broker.paper is False and broker.base_url == fake.url and market.data_url == fake.url
    sent = fake.requests_to("/v2/account")[0].headers
    assert (sent["APCA-API-KEY-ID"], sent["APCA-API-SECRET-KEY"]) == (KEY, SECRET)


def test_missing_credentials_name_the_variables() -> None:
    with pytest.raises(ConfigError, match="APCA_API_KEY_ID") as info:
        AlpacaBroker(env={"APCA_API_SECRET_KEY": SECRET})
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigError, match="APCA_API_SECRET_KEY"):
        AlpacaMarketData(api_key=KEY, env={})


def test_base_url_with_version_is_refused() -> None:
    with pytest.raises(ConfigError, match="version"):
        resolve_url("https://paper-api.alpaca.markets/v2", {}, "GOLDTHREAD_ALPACA_URL")
    assert resolve_url(None, {}, "GOLDTHREAD_ALPACA_URL") is None


def test_token_bucket_spaces_requests_beyond_the_burst() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate_per_minute=120, burst=3, clock=lambda: now[0], sleep=sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)  # 120 a minute: one token every 0.5 s
    now[0] += 10.0  # idle: refills to the burst, no more
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5) and len(waits) == 2


def test_every_request_takes_a_token_from_a_shared_bucket(fake: FakeAlpaca) -> None:
    class CountingBucket(TokenBucket):
        taken = 0

        def acquire(self) -> float:
            CountingBucket.taken += 1
            return super().acquire()

    bucket = CountingBucket(rate_per_minute=100_000, burst=100)
    broker = AlpacaBroker(KEY, SECRET, base_url=fake.url, data_url=fake.url, policy=FAST, rate_limiter=bucket, env={})
    market = AlpacaMarketData(KEY, SECRET, data_url=fake.url, policy=FAST, rate_limiter=bucket, env={})
    orders = [fake.add_order()["id"] for _ in range(3)]
    fake.fail("/v2/account", 503)

    broker.get_orders(orders)
    broker.get_account()
    market.get_bars(["AAPL", "BTC/USD"], "1Min", T0, T0 + dt.timedelta(hours=1))

    assert CountingBucket.taken == fake.count() == 3 + 2 + 2
