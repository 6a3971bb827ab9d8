"""The one ``fact_trades`` builder and the broker-check rules, on their own.

Proves: rebuilding a row Loop A wrote, with nothing changed, gives that very row (so a patch changes only
what it means to change); the flag's boundary ("beyond" the tolerance, either sign, null when no leg is
comparable); crypto spellings; which statuses with nothing filled are a mismatch and which only wait.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from goldthread.loops.broker_checks import FillRules, mismatches, same_symbol
from goldthread.loops.trade_rows import flagged, rebuild
from goldthread.models import FactTrade
from goldthread.models.broker import BrokerOrder
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop

from tests.conftest import DS, SESSION, Factory, rows


def test_rebuilding_an_unchanged_row_gives_the_same_row(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-a", qty=D(7), broker_entry=D("100"), broker_exit=D("103.5"), bot_entry=D("100.2"))
    make.closed_trade("pos-b", broker_entry=D("50"), broker_exit=D("49"), fee=D("0.3"))
    run_loop(ctx, "trades", DS)
    for stored in rows(ctx, "fact_trades"):
        row = FactTrade.model_validate(stored)
        assert rebuild(row, ctx.settings.price_tolerance_bps) == row


@pytest.mark.parametrize(("entry", "exit_", "expected"), [
    (D(50), None, False), (D("50.000000001"), None, True), (None, D(-51), True), (D(0), D(-50), False),
    (None, None, None),
])
def test_the_flag_is_beyond_the_tolerance_either_way(entry: D | None, exit_: D | None, expected: bool | None) -> None:
    assert flagged(entry, exit_, D(50)) is expected


def test_symbols_compare_without_the_crypto_slash() -> None:
    assert same_symbol("BTC/USD", "BTCUSD") and same_symbol("BTCUSD", "BTC/USD") and same_symbol("AAPL", "AAPL")
    assert not same_symbol("BTC/USD", "ETHUSD") and not same_symbol("AAPL", "MSFT")


@pytest.mark.parametrize(("status", "mismatch"), [
    ("new", False), ("accepted", False), ("pending_new", False), ("held", False), ("done_for_day", False),
    ("canceled", True), ("expired", True), ("rejected", True), ("replaced", True), ("filled", True),
])
def test_an_order_with_nothing_filled_waits_or_never_fills(make: Factory, status: str, mismatch: bool) -> None:
    position = make.closed_trade("pos-a")
    entry = BrokerOrder(order_id="pos-a-entry", symbol="AAPL", side="buy", status="filled", filled_qty=D(3),
                        filled_avg_price=D(100), filled_at=SESSION)
    exit_ = BrokerOrder(order_id="pos-a-exit", symbol="AAPL", side="sell", status=status, filled_qty=D(0))
    found = mismatches(position, entry, exit_, FillRules())
    assert [(e["loc"], e["broker"]) for e in found] == ([("exit_order_id", f"{status} with 0 filled")]
                                                        if mismatch else [])
