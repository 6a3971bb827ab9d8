"""The ``Warehouse`` contract, written once and run against every warehouse (DuckDB and BigQuery)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from goldthread.models.warehouse import ALL_TABLES, FactTrade, MarketBar
from goldthread.ports.warehouse import Warehouse

T0 = dt.datetime(2024, 3, 1, 14, 30, 15, 123456, tzinfo=dt.UTC)
DAY = dt.date(2024, 3, 1)


def trade(key: str, **changes: Any) -> FactTrade:
    """A valid closed trade; ``changes`` override fields."""
    fields: dict[str, Any] = {
        "row_id": key,
        "ds": DAY,
        "run_id": "run-1",
        "loaded_at": T0,
        "position_id": f"p-{key}",
        "signal_id": f"s-{key}",
        "strategy_id": "mean_rev",
        "strategy_version": "1.2.0",
        "symbol": "AAPL",
        "asset_class": "equity",
        "side": "long",
        "qty": Decimal("10"),
        "entry_order_id": f"o1-{key}",
        "exit_order_id": f"o2-{key}",
        "entry_price": Decimal("185.120000001"),
        "exit_price": Decimal("190.5"),
        "opened_at": T0 - dt.timedelta(hours=2),
        "closed_at": T0,
        "holding_seconds": 7200,
        "gross_pnl_usd": Decimal("53.79999999"),
        "est_fee_usd": Decimal("0.35"),
        "net_pnl_usd": Decimal("53.44999999"),
    }
    fields.update(changes)
    return FactTrade(**fields)


def bar(key: str, minute: int, close: str = "185.123456789") -> MarketBar:
    """A one-minute AAPL bar at ``T0 + minute``."""
    return MarketBar(
        row_id=key, ds=DAY, symbol="AAPL", timeframe="1Min", ts=T0 + dt.timedelta(minutes=minute),
        open=Decimal("185"), high=Decimal("186"), low=Decimal("184"), close=Decimal(close),
        volume=Decimal("1200.5"), source="sim",
    )


def count(warehouse: Warehouse, table: str) -> int:
    """Rows physically stored in ``table``."""
    return int(warehouse.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


def test_ensure_tables_is_idempotent_and_creates_every_table(warehouse: Warehouse) -> None:
    warehouse.ensure_tables()
    for model in ALL_TABLES:
        assert count(warehouse, model.__table__) == 0


def test_same_row_twice_is_stored_once_also_within_one_batch(warehouse: Warehouse) -> None:
    first = warehouse.insert_rows(FactTrade, [trade("k1"), trade("k2"), trade("k1")])
    assert (first.inserted, first.duplicates) == (["k1", "k2"], ["k1"])
    second = warehouse.insert_rows(FactTrade, [trade("k2"), trade("k3")])
    assert (second.inserted, second.duplicates) == (["k3"], ["k2"])
    assert count(warehouse, "fact_trades") == 3
    empty = warehouse.insert_rows(FactTrade, [])
    assert (empty.inserted, empty.duplicates) == ([], [])


def test_get_rows_returns_each_key_once(warehouse: Warehouse) -> None:
    warehouse.insert_rows(MarketBar, [bar("b1", 0), bar("b2", 1), bar("b3", 2)])
    rows = warehouse.get_rows(MarketBar, ["b3", "b1", "missing", "b1"])
    assert sorted(r["row_id"] for r in rows) == ["b1", "b3"]
    assert warehouse.get_rows(MarketBar, []) == []


def test_decimal_and_timestamp_round_trip_exactly(warehouse: Warehouse) -> None:
    big = Decimal("12345678901234567890.123456789")
    row = trade("k1", gross_pnl_usd=big, est_fee_usd=Decimal("0.000000001"), net_pnl_usd=Decimal("-0.5"))
    warehouse.insert_rows(FactTrade, [row])
    got = warehouse.get_rows(FactTrade, ["k1"])[0]
    assert got["gross_pnl_usd"] == big
    assert got["est_fee_usd"] == Decimal("0.000000001")
    assert got["net_pnl_usd"] == Decimal("-0.5")
    assert got["entry_price"] == Decimal("185.120000001")
    assert got["actual_fee_usd"] is None
    assert got["closed_at"] == T0 and got["closed_at"].utcoffset() == dt.timedelta(0)
    assert got["opened_at"] == T0 - dt.timedelta(hours=2)
    assert got["ds"] == DAY
    assert (got["fee_finalized"], got["is_canary"], got["holding_seconds"]) == (False, False, 7200)
    assert (got["side"], got["asset_class"]) == ("long", "equity")


def test_upsert_updates_only_selected_columns_and_inserts_missing_rows(warehouse: Warehouse) -> None:
    warehouse.insert_rows(FactTrade, [trade("k1"), trade("k2")])
    patched = trade(
        "k1", actual_fee_usd=Decimal("0.41"), fee_finalized=True, net_pnl_usd=Decimal("53.38999999"),
        symbol="MSFT",  # not among the columns: must not change
    )
    changed = warehouse.upsert_rows(
        FactTrade, [patched, trade("k9", actual_fee_usd=Decimal("1"), fee_finalized=True)],
        ["actual_fee_usd", "fee_finalized", "net_pnl_usd"],
    )
    assert changed == 2
    rows = {r["row_id"]: r for r in warehouse.get_rows(FactTrade, ["k1", "k2", "k9"])}
    assert rows["k1"]["actual_fee_usd"] == Decimal("0.41")
    assert rows["k1"]["fee_finalized"] is True
    assert rows["k1"]["net_pnl_usd"] == Decimal("53.38999999")
    assert rows["k1"]["symbol"] == "AAPL"
    assert rows["k2"]["actual_fee_usd"] is None and rows["k2"]["fee_finalized"] is False
    assert rows["k9"]["actual_fee_usd"] == Decimal("1") and rows["k9"]["symbol"] == "AAPL"
    assert count(warehouse, "fact_trades") == 3
    assert warehouse.upsert_rows(FactTrade, [], ["actual_fee_usd"]) == 0


def test_query_with_scalar_parameters(warehouse: Warehouse) -> None:
    warehouse.insert_rows(FactTrade, [trade("k1"), trade("k2", symbol="MSFT", is_canary=True), trade("k3")])
    rows = warehouse.query(
        "SELECT row_id FROM fact_trades WHERE symbol = @symbol AND holding_seconds >= @secs "
        "AND is_canary = @canary AND entry_price = @price AND closed_at <= @until AND ds = @day "
        "ORDER BY row_id",
        {
            "symbol": "AAPL", "secs": 7200, "canary": False, "price": Decimal("185.120000001"),
            "until": T0, "day": DAY,
        },
    )
    assert [r["row_id"] for r in rows] == ["k1", "k3"]


def test_query_with_array_parameters_via_unnest(warehouse: Warehouse) -> None:
    warehouse.insert_rows(MarketBar, [bar(f"b{i}", i) for i in range(5)])
    rows = warehouse.query(
        "SELECT row_id, ts, close FROM market_bars WHERE row_id IN UNNEST(@keys) AND ts < @before ORDER BY ts",
        {"keys": ["b0", "b2", "b4", "zz"], "before": T0 + dt.timedelta(minutes=4)},
    )
    assert [r["row_id"] for r in rows] == ["b0", "b2"]
    assert rows[1]["ts"] == T0 + dt.timedelta(minutes=2)
    assert rows[1]["close"] == Decimal("185.123456789")
    numbers = warehouse.query(
        "SELECT COUNT(*) AS n FROM market_bars WHERE EXTRACT(MINUTE FROM ts) IN UNNEST(@minutes)", {"minutes": [30, 31]}
    )
    assert numbers[0]["n"] == 2
