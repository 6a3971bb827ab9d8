"""Tests of the fee model: estimates, the broker's daily postings and exact allocation back to fills.

Expected values are computed by hand in the comments, with the default FeeSchedule:
SEC 0.0000278 / $, TAF 0.000166 / share capped at 8.30, CAT 0.000035 / share, crypto 25 bps.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from fractions import Fraction

import pytest
from goldthread.analytics.fees import (
    FeeSchedule,
    FeeType,
    Fill,
    allocate_fees,
    daily_fee_activities,
    estimate_fees,
    fee_type_of,
    largest_remainder,
    leg_key,
    total_estimated_fees,
)
from goldthread.models.broker import FeeActivity
from goldthread.models.hot import AssetClass
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

DAY = dt.date(2024, 6, 3)
SCHEDULE = FeeSchedule()


def fill(
    key: str,
    side: str,
    qty: str,
    price: str,
    symbol: str = "AAPL",
    asset_class: str = "equity",
    day: dt.date = DAY,
) -> Fill:
    return Fill(key=key, symbol=symbol, asset_class=asset_class, side=side, qty=D(qty), price=D(price), day=day)


def fee(
    description: str, net: str, day: dt.date = DAY, status: str = "executed", aid: str | None = None
) -> FeeActivity:
    return FeeActivity(
        activity_id=aid or f"{description.replace(' ', '_')}-{status}-{net}",
        activity_type="FEE",
        date=day,
        net_amount=D(net),
        description=description,
        status=status,
    )


def cfee(symbol: str, qty: str, price: str, net: str = "0", aid: str = "cf1", day: dt.date = DAY) -> FeeActivity:
    return FeeActivity(
        activity_id=aid, activity_type="CFEE", date=day, net_amount=D(net), symbol=symbol, qty=D(qty), price=D(price)
    )


# --- estimates -------------------------------------------------------------------------------------


def test_equity_buy_pays_only_cat() -> None:
    b = estimate_fees(fill("p1:entry", "buy", "100", "185.12"), SCHEDULE)
    assert (b.reg, b.taf, b.orf, b.cfee) == (0, 0, 0, 0)
    assert b.cat == D("0.0035")  # 100 x 0.000035
    assert b.total == D("0.0035")


def test_equity_sell_pays_reg_taf_and_cat_unrounded() -> None:
    b = estimate_fees(fill("p1:exit", "sell", "100", "185.12"), SCHEDULE)
    assert b.reg == D("0.5146336")  # 18512 x 0.0000278
    assert b.taf == D("0.0166")  # 100 x 0.000166
    assert b.cat == D("0.0035")
    assert b.total == D("0.5347336")


def test_taf_is_capped_per_trade() -> None:
    assert estimate_fees(fill("a", "sell", "60000", "10"), SCHEDULE).taf == D("8.30")  # 9.96 capped
    assert estimate_fees(fill("b", "sell", "49999", "10"), SCHEDULE).taf == D("8.299834")
    assert estimate_fees(fill("c", "sell", "60000", "10"), FeeSchedule(taf_max_per_trade=None)).taf == D("9.96")


def test_crypto_buy_pays_in_the_asset_received() -> None:
    b = estimate_fees(fill("c1:entry", "buy", "0.5", "60000", "BTC/USD", "crypto"), SCHEDULE)
    assert b.cfee_asset == "BTC"
    assert b.cfee_qty == D("0.00125")  # 0.5 BTC x 0.0025
    assert b.cfee == D("75")  # 0.00125 BTC at 60000
    assert (b.reg, b.taf, b.cat) == (0, 0, 0)


def test_crypto_sell_pays_in_usd() -> None:
    b = estimate_fees(fill("c1:exit", "sell", "0.5", "60000", "BTC/USD", "crypto"), SCHEDULE)
    assert b.cfee_asset == "USD"
    assert b.cfee_qty == b.cfee == D("75")  # 30000 USD x 0.0025


def test_option_sell_uses_the_multiplier_and_contract_fees() -> None:
    f = fill("o1:exit", "sell", "2", "1.50", "AAPL240119C00190000", "option")
    assert f.multiplier == 100
    b = estimate_fees(f, SCHEDULE)
    assert b.reg == D("0.00834")  # 2 x 1.50 x 100 = 300 x 0.0000278
    assert b.taf == D("0.00558")  # 2 x 0.00279
    assert b.cat == D("0.007")  # 200 equivalent shares x 0.000035
    assert b.orf == D("0.0537")  # 2 x 0.02685
    buy = estimate_fees(fill("o1:entry", "buy", "2", "1.50", "AAPL240119C00190000", "option"), SCHEDULE)
    assert (buy.reg, buy.taf, buy.cat, buy.orf) == (0, 0, D("0.007"), D("0.0537"))


def test_round_trip_total_and_leg_key() -> None:
    entry = fill(leg_key("p1", "entry"), "buy", "100", "185.12")
    exit_ = fill(leg_key("p1", "exit"), "sell", "100", "185.12")
    assert entry.key == "p1:entry"
    assert total_estimated_fees([entry, exit_], SCHEDULE) == D("0.5382336")


def test_fill_validation() -> None:
    with pytest.raises(ValidationError, match="not quoted in USD"):
        fill("k", "buy", "1", "1", "ETH/BTC", "crypto")
    with pytest.raises(ValidationError, match="options only"):
        Fill(
            key="k",
            symbol="AAPL",
            asset_class=AssetClass.EQUITY,
            side="buy",
            qty=D(1),
            price=D(1),
            day=DAY,
            multiplier=D(100),
        )
    with pytest.raises(ValidationError):
        fill("k", "buy", "0", "1")
    assert fill("k", "buy", "1", "1", "BTCUSD", "crypto").received_asset == "BTC"


def test_zero_schedule_costs_nothing() -> None:
    zero = FeeSchedule(sec_fee_rate=D(0), taf_per_share=D(0), cat_per_share=D(0), crypto_fee_bps=D(0))
    assert estimate_fees(fill("a", "sell", "100", "10"), zero).total == 0
    assert daily_fee_activities([fill("a", "sell", "100", "10")], DAY, zero) == []


# --- daily postings --------------------------------------------------------------------------------

EQUITY_DAY = [
    fill("p1:exit", "sell", "100", "185.12"),  # REG 0.5146336, TAF 0.0166, CAT 0.0035
    fill("p2:entry", "buy", "10", "400", "MSFT"),  # CAT 0.00035
    fill("p3:exit", "sell", "7", "185"),  # REG 0.036001, TAF 0.001162, CAT 0.000245
]


def test_daily_activities_round_each_type_up_to_the_cent() -> None:
    acts = daily_fee_activities(EQUITY_DAY, DAY, SCHEDULE)
    assert [(a.activity_type, a.description, a.net_amount) for a in acts] == [
        ("FEE", "REG fee", D("-0.56")),  # 0.5506346 -> 0.56
        ("FEE", "TAF fee", D("-0.02")),  # 0.017762 -> 0.02
        ("FEE", "CAT fee", D("-0.01")),  # 0.004095 -> 0.01
    ]
    assert all(a.date == DAY and a.status == "executed" and a.symbol is None for a in acts)
    assert [fee_type_of(a) for a in acts] == [FeeType.REG, FeeType.TAF, FeeType.CAT]


def test_daily_activity_ids_are_deterministic_and_unique() -> None:
    first = daily_fee_activities(EQUITY_DAY, DAY, SCHEDULE)
    again = daily_fee_activities(list(EQUITY_DAY), DAY, SCHEDULE)
    assert [a.activity_id for a in first] == [a.activity_id for a in again]
    assert len({a.activity_id for a in first}) == 3
    other_day = [f.model_copy(update={"day": DAY + dt.timedelta(days=1)}) for f in EQUITY_DAY]
    shifted = daily_fee_activities(other_day, DAY + dt.timedelta(days=1), SCHEDULE)
    assert not {a.activity_id for a in first} & {a.activity_id for a in shifted}


def test_daily_crypto_fees_one_cfee_per_fill() -> None:
    fills = [
        fill("c1:entry", "buy", "0.1", "61000.5", "BTC/USD", "crypto"),  # 0.00025 BTC
        fill("c2:entry", "buy", "0.000000333", "60000", "BTC/USD", "crypto"),  # 8.325e-10 BTC -> 1e-9 up
        fill("c3:exit", "sell", "0.2", "60500.01", "BTC/USD", "crypto"),  # 12100.002 x 0.0025 = 30.250005 -> 30.26
        fill("c4:exit", "sell", "0.2", "60500.01", "BTC/USD", "crypto"),  # same content, other fill
    ]
    acts = daily_fee_activities(fills, DAY, SCHEDULE)
    assert [(a.activity_type, a.symbol, a.qty, a.price, a.net_amount) for a in acts] == [
        ("CFEE", "BTC/USD", D("-0.00025"), D("61000.5"), D(0)),
        ("CFEE", "BTC/USD", D("-0.000000001"), D("60000"), D(0)),
        ("CFEE", "BTC/USD", D("-30.26"), D("60500.01"), D("-30.26")),
        ("CFEE", "BTC/USD", D("-30.26"), D("60500.01"), D("-30.26")),
    ]
    assert acts[0].description == "Coin Pair Transaction Fee (Non USD)"
    assert len({a.activity_id for a in acts}) == 4


def test_daily_activities_refuse_fills_of_another_day() -> None:
    with pytest.raises(ValueError, match="another day"):
        daily_fee_activities([fill("a", "buy", "1", "1", day=DAY - dt.timedelta(days=1))], DAY, SCHEDULE)


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("REG fee", FeeType.REG),
        ("reg fee for proceed of 5 shares", FeeType.REG),
        ("SEC Section 31 fee", FeeType.REG),
        ("FINRA TAF", FeeType.TAF),
        ("Trading Activity Fee", FeeType.TAF),
        ("CAT fee", FeeType.CAT),
        ("Consolidated Audit Trail fee", FeeType.CAT),
        ("ORF", FeeType.ORF),
        ("Options Regulatory Fee", FeeType.ORF),
        ("Regulatory fee", None),
        ("ADR fee", None),
        ("REG and TAF fee", None),
        ("", None),
    ],
)
def test_fee_type_parser(description: str, expected: FeeType | None) -> None:
    assert fee_type_of(fee(description, "-0.01")) is expected


# --- allocation ------------------------------------------------------------------------------------


def test_equity_allocation_by_rule_adds_up_exactly() -> None:
    result = allocate_fees(daily_fee_activities(EQUITY_DAY, DAY, SCHEDULE), EQUITY_DAY, SCHEDULE)
    by_type = {d.fee_type: d.shares for d in result.details}
    # REG 0.56 by sell notional 18512 : 1295 -> 52.338 / 3.661 cents -> 52 + 3, leftover cent to p3
    assert by_type[FeeType.REG] == {"p1:exit": D("0.52"), "p3:exit": D("0.04")}
    # TAF 0.02 by 0.0166 : 0.001162 -> 1.869 / 0.131 cents -> p1 gets both
    assert by_type[FeeType.TAF] == {"p1:exit": D("0.02"), "p3:exit": D("0.00")}
    # CAT 0.01 by shares 100 : 10 : 7 -> the cent goes to p1 (remainder 0.855)
    assert by_type[FeeType.CAT] == {"p1:exit": D("0.01"), "p2:entry": D("0.00"), "p3:exit": D("0.00")}
    assert result.allocations == {"p1:exit": D("0.55"), "p2:entry": D("0"), "p3:exit": D("0.04")}
    assert result.total_allocated == D("0.59")
    assert result.unallocated == () and result.ignored == ()


def test_taf_allocation_weighs_the_capped_amount() -> None:
    fills = [fill("big", "sell", "100000", "1"), fill("cap", "sell", "50000", "1")]  # both pay 8.30
    result = allocate_fees([fee("TAF fee", "-16.60")], fills, SCHEDULE)
    assert result.allocations == {"big": D("8.30"), "cap": D("8.30")}  # by shares it would be 11.07 / 5.53


def test_crypto_allocation_per_fill_and_per_symbol() -> None:
    fills = [
        fill("b1", "buy", "0.5", "60000", "BTC/USD", "crypto"),
        fill("b2", "buy", "0.1", "61000.5", "BTC/USD", "crypto"),
        fill("s1", "sell", "0.2", "60500", "BTC/USD", "crypto"),
        fill("e1", "buy", "2", "3000", "ETH/USD", "crypto"),
    ]
    result = allocate_fees(daily_fee_activities(fills, DAY, SCHEDULE), fills, SCHEDULE)
    # b1: 0.00125 BTC x 60000; b2: 0.00025 BTC x 61000.5; s1: 12100 x 0.0025; e1: 0.005 ETH x 3000
    assert result.allocations == {"b1": D("75"), "b2": D("15.250125"), "s1": D("30.25"), "e1": D("15")}
    # one posting for the day's BTC buys at an average price (matches no fill price): split by quantity
    pooled = allocate_fees([cfee("BTCUSD", "-0.0015", "60166.75")], fills, SCHEDULE)
    detail = pooled.details[0]
    assert detail.total_usd == D("90.250125") and detail.quantum == D("0.000000001")
    assert pooled.allocations == {"b1": D("75.2084375"), "b2": D("15.0416875")}  # 5/6 and 1/6


def test_partial_day_and_unallocated_activities_are_reported() -> None:
    buys_only = [fill("p2:entry", "buy", "10", "400", "MSFT"), fill("p4:entry", "buy", "30", "50", "F")]
    posted = [
        fee("REG fee", "-0.56"),
        fee("TAF fee", "-0.02"),
        fee("CAT fee", "-0.03"),
        fee("CAT fee", "-0.01", day=DAY + dt.timedelta(days=1)),  # a day whose fills are unknown
        fee("ADR fee", "-0.25"),
        cfee("ETH/USD", "-0.001", "3000", aid="cf-eth"),
    ]
    result = allocate_fees(posted, buys_only, SCHEDULE)
    # CAT 0.03 by shares 10 : 30 -> 0.75 / 2.25 cents -> 0 + 2, leftover cent to p2 (remainder 0.75)
    assert result.allocations == {"p2:entry": D("0.01"), "p4:entry": D("0.02")}
    reasons = {u.activity.description or u.activity.activity_id: (u.reason, u.amount_usd) for u in result.unallocated}
    assert reasons == {
        "REG fee": ("no REG fills on 2024-06-03", D("0.56")),
        "TAF fee": ("no TAF fills on 2024-06-03", D("0.02")),
        "CAT fee": ("no CAT fills on 2024-06-04", D("0.01")),
        "ADR fee": ("unrecognised fee type in description", D("0.25")),
        "cf-eth": ("no CFEE fills on 2024-06-03", D("3.000")),
    }
    posted_total = -sum((a.net_amount for a in posted if a.activity_type == "FEE"), D(0)) + D(3)
    unallocated_total = sum((u.amount_usd or D(0) for u in result.unallocated), D(0))
    assert result.total_allocated + unallocated_total == posted_total


def test_canceled_is_ignored_and_correction_is_added() -> None:
    sells = [fill("a", "sell", "100", "10"), fill("b", "sell", "300", "10")]
    posted = [
        fee("REG fee", "-1.00", aid="r1"),
        fee("REG fee", "-1.00", status="canceled", aid="r2"),
        fee("REG fee", "0.20", status="correct", aid="r3"),  # refund of 0.20
        fee("REG fee", "-0.04", status="correct", aid="r4"),  # extra charge of 0.04
    ]
    result = allocate_fees(posted, sells, SCHEDULE)
    assert [a.activity_id for a in result.ignored] == ["r2"]
    (detail,) = result.details
    assert detail.activity_ids == ("r1", "r3", "r4") and detail.total_usd == D("0.84")
    assert result.allocations == {"a": D("0.21"), "b": D("0.63")}  # 0.84 by notional 1 : 3
    odd = allocate_fees([fee("REG fee", "-1.00", status="pending")], sells, SCHEDULE)
    assert odd.unallocated[0].reason == "unknown status 'pending'"


def test_tie_break_is_by_key_whatever_the_input_order() -> None:
    fills = [fill(k, "buy", "10", "5") for k in ("c", "a", "b")]
    for order in (fills, fills[::-1]):
        result = allocate_fees([fee("CAT fee", "-0.10")], order, SCHEDULE)
        assert result.allocations == {"a": D("0.04"), "b": D("0.03"), "c": D("0.03")}


def test_partial_fills_of_one_leg_are_summed() -> None:
    fills = [
        fill("p1:exit", "sell", "50", "10"),
        fill("p1:exit", "sell", "50", "10.5"),
        fill("p2:exit", "sell", "100", "1"),
    ]
    result = allocate_fees([fee("REG fee", "-0.11")], fills, SCHEDULE)
    # notional 500 + 525 = 1025 vs 100: 10.02 / 0.98 cents -> 10 + 0, leftover to p2 (remainder 0.98)
    assert result.allocations == {"p1:exit": D("0.10"), "p2:exit": D("0.01")}


def test_zero_rate_schedule_still_allocates_by_basis() -> None:
    no_sec = FeeSchedule(sec_fee_rate=D(0))
    result = allocate_fees(
        [fee("REG fee", "-0.04")], [fill("a", "sell", "1", "10"), fill("b", "sell", "1", "30")], no_sec
    )
    assert result.allocations == {"a": D("0.01"), "b": D("0.03")}


def test_largest_remainder_contract() -> None:
    assert largest_remainder(D("1.00"), {"x": D(1), "y": D(1), "z": D(1)}) == {
        "x": D("0.34"),
        "y": D("0.33"),
        "z": D("0.33"),
    }
    assert largest_remainder(D("-0.05"), {"x": D(1), "y": D(0)}) == {"x": D("-0.05"), "y": D("0.00")}
    with pytest.raises(ValueError, match="multiple"):
        largest_remainder(D("0.015"), {"x": D(1)})
    with pytest.raises(ValueError, match="zero"):
        largest_remainder(D("0.01"), {"x": D(0)})


# --- properties ------------------------------------------------------------------------------------

KEYS = st.sampled_from([f"k{i}" for i in range(8)])
QTY = st.decimals(min_value=D("0.000000001"), max_value=D("200000"), places=9, allow_nan=False, allow_infinity=False)
PRICE = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=4, allow_nan=False, allow_infinity=False)


@st.composite
def fills_strategy(draw: st.DrawFn) -> list[Fill]:
    out = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        asset_class = draw(st.sampled_from(["equity", "option", "crypto"]))
        symbol = {"equity": draw(st.sampled_from(["AAPL", "F"])), "option": "AAPL240119C00190000"}.get(
            asset_class, draw(st.sampled_from(["BTC/USD", "ETH/USD"]))
        )
        qty = draw(QTY) if asset_class == "crypto" else D(draw(st.integers(min_value=1, max_value=200000)))
        price = draw(st.sampled_from([D("100"), D("100.5")])) if draw(st.booleans()) else draw(PRICE)
        out.append(fill(draw(KEYS), draw(st.sampled_from(["buy", "sell"])), str(qty), str(price), symbol, asset_class))
    return out


@settings(max_examples=150, deadline=None)
@given(fills_strategy())
def test_property_posted_fees_are_allocated_exactly(fills: list[Fill]) -> None:
    acts = daily_fee_activities(fills, DAY, SCHEDULE)
    result = allocate_fees(acts, fills, SCHEDULE)
    assert result.unallocated == ()
    assert sum(len(d.activity_ids) for d in result.details) == len(acts)
    for detail in result.details:
        assert sum(detail.shares.values(), D(0)) == detail.total_usd
        assert all(share >= 0 for share in detail.shares.values())
        if detail.fee_type is not FeeType.CFEE:
            weights: dict[str, Fraction] = {}
            for f in fills:
                weights[f.key] = weights.get(f.key, Fraction(0)) + Fraction(
                    estimate_fees(f, SCHEDULE).amount(detail.fee_type)
                )
            total_weight = sum(weights.values(), Fraction(0))
            for key, share in detail.shares.items():
                exact = Fraction(detail.total_usd) * weights[key] / total_weight
                assert abs(Fraction(share) - exact) < Fraction(detail.quantum)
    assert result.total_allocated == sum((posted_usd(a) for a in acts), D(0))


def posted_usd(activity: FeeActivity) -> D:
    """USD value of a posted activity: -net_amount, or an asset CFEE's qty at its price (9 places)."""
    if activity.net_amount:
        return -activity.net_amount
    assert activity.qty is not None and activity.price is not None
    return (-activity.qty * activity.price).quantize(D("0.000000001"))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(KEYS, st.decimals(min_value=D(0), max_value=D("1e6"), places=9), min_size=1),
    st.integers(min_value=0, max_value=10**9),
)
def test_property_largest_remainder(weights: dict[str, D], cents: int) -> None:
    if all(w == 0 for w in weights.values()):
        weights = {**weights, "k0": D(1)}
    total = D(cents) / 100
    shares = largest_remainder(total, weights)
    assert sum(shares.values(), D(0)) == total
    assert all(s >= 0 for s in shares.values())
    total_weight = sum((Fraction(w) for w in weights.values()), Fraction(0))
    for key, share in shares.items():
        assert abs(Fraction(share) - Fraction(total) * Fraction(weights[key]) / total_weight) < Fraction(1, 100)
