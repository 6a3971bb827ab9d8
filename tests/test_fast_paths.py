"""Every speed trick sits beside its plain reference, and a property says the two agree on any input.

A fast path earns its place only while it gives what the obvious code gives (issue 16, item 12). Each test
below draws inputs with hypothesis (the suite's pinned profile, ``tests/conftest.py``; ``make fuzz`` explores
fresh ones) and compares the fast path with the reference it replaces, value for value, digits and
exceptions included:

* ``WorkItem.encoder`` (the dispatcher's per-id message) against ``WorkItem(...).to_message()``;
* ``bars._bars_table`` + ``bars.real_bars`` (the prefetch's Arrow rows and its refusals) against one validated
  ``MarketBar`` per bar;
* ``bars.decimal_floats`` (the warehouse's decimals read as floats) against ``float(Decimal)``;
* ``rejected_signals.fee_per_unit`` (the interpolated fee line) against the fee model's validated fills;

What each trick saves is measured by ``python -m bench.fast_paths`` (``bench/README.md``, "Fast paths"); a
trick that saved under 5% of its case was removed rather than tested: Loops B and C's array-wise ``decs`` and
``whens`` (rows convert each value with ``dec`` and ``when``), the DuckDB write reading rows' ``__dict__``
(``rows_to_arrow`` uses ``model_dump``) and ``decimal_floats`` reading the decimal buffer (it casts through
the text).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import weakref
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from goldthread.adapters.duckdb_warehouse import arrow_schema
from goldthread.loops import bars as bars_module
from goldthread.loops.rejected_signals import _fills_total, fee_per_unit
from goldthread.models.hot import AssetClass, Side
from goldthread.models.types import quantize9
from goldthread.models.warehouse import MarketBar, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.local_runtime import fewer_gc_passes
from goldthread.ports.market_data import Bars, from_ns
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

NINE = Decimal("0.000000001")
NO_DEADLINE = settings(deadline=None)  # timings on a loaded machine are no part of any property here
IDENTIFIER = st.from_regex(r"[A-Za-z0-9_.:\-]{1,128}", fullmatch=True)
AWARE = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2099, 12, 30),
                     timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5)),
                                                dt.timezone(dt.timedelta(hours=5, minutes=30))]))


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    """What a call gives: ``("ok", value)`` or ``("raises", exception type)``, to compare two paths."""
    try:
        return "ok", call(*args)
    except (ValidationError, ArithmeticError) as exc:
        return "raises", ValidationError if isinstance(exc, ValidationError) else ArithmeticError


# -- the dispatcher's message encoder --------------------------------------------------------------------


@NO_DEADLINE
@given(run_id=IDENTIFIER, loop=st.sampled_from(list(Loop)), ds=st.dates(), published_at=AWARE,
       doc_id=st.one_of(IDENTIFIER, st.text(max_size=140)))
def test_the_encoder_gives_what_to_message_gives_or_refuses_what_a_work_item_refuses(
    run_id: str, loop: Loop, ds: dt.date, published_at: dt.datetime, doc_id: str
) -> None:
    encode = WorkItem.encoder(run_id, loop, ds, published_at)

    def reference(doc_id: str) -> tuple[bytes, dict[str, str]]:
        return WorkItem(run_id=run_id, loop=loop, ds=ds, doc_id=doc_id, published_at=published_at).to_message()

    assert outcome(encode, doc_id) == outcome(reference, doc_id)


# -- the bars prefetch: Arrow rows and refusals ------------------------------------------------------------

PRICE = st.one_of(
    st.floats(min_value=1e-12, max_value=1e30, allow_nan=False, allow_infinity=False),  # anything positive
    st.decimals(min_value=0, max_value=10**6, places=4).map(float),  # prices as sources print them
    st.decimals(min_value=0, max_value=10, places=10).map(float),  # ties at the 10th place
    st.sampled_from([0.0, -0.0, -1.0, 5e-10, 5.000000000000001e-10, 1e19, 9.999999999999998e18,
                     float("nan"), float("inf")]),
)
BAR = st.tuples(st.integers(0, 4_000_000_000 // 60) .map(lambda m: m * 60 * 10**9),  # minute bars, 1970 to 2096
                PRICE, PRICE, PRICE, PRICE, PRICE)


def reference_bar(symbol: str, ts: int, o: float, h: float, low: float, c: float, v: float) -> MarketBar | None:
    """The plain way: validate one ``MarketBar`` from the floats (``Money`` reads each through its repr)."""
    moment = from_ns(ts)
    try:
        return MarketBar(row_id=row_id_for("market_bars", symbol, "1Min", str(ts)), ds=moment.date(), symbol=symbol,
                         timeframe="1Min", ts=moment, open=o, high=h, low=low, close=c, volume=v, source="test")
    except ValidationError:
        return None


@NO_DEADLINE
@given(st.lists(BAR, max_size=12))
def test_the_prefetch_stores_exactly_the_bars_market_bar_accepts_as_market_bar_would(
    drawn: list[tuple[int, float, float, float, float, float]]
) -> None:
    ts = np.array([b[0] for b in drawn], dtype=np.int64)
    o, h, low, c, v = (np.array([b[i] for b in drawn], dtype=np.float64) for i in range(1, 6))
    bars = Bars("AAPL", ts, o, h, low, c, v, "1Min")
    real = bars_module.real_bars(bars)
    want = [reference_bar("AAPL", *b) for b in drawn]
    assert real.tolist() == [w is not None for w in want]  # the prefetch refuses what MarketBar refuses
    kept = bars_module._subset(bars, real)
    got = bars_module._bars_table(kept, "1Min", "test")
    rows = [w for w in want if w is not None]
    expected = pa.Table.from_pylist([r.model_dump() for r in rows], schema=arrow_schema(MarketBar))
    assert got.equals(expected)
    assert [str(x) for x in got.column("close").to_pylist()] == [str(r.close) for r in rows]  # digits too


# -- the bars read back: decimals as floats ----------------------------------------------------------------

DECIMAL_38_9 = st.decimals(min_value=-(10**29) + 1, max_value=10**29 - 1, places=9, allow_nan=False)


@NO_DEADLINE
@given(st.lists(st.one_of(DECIMAL_38_9, st.decimals(min_value=-(10**7), max_value=10**7, places=9), st.none()),
                min_size=1, max_size=20),
       st.data())
def test_decimal_floats_are_the_float_of_each_exact_decimal(values: list[Decimal | None], data: st.DataObject) -> None:
    array = pa.array(values, pa.decimal128(38, 9))
    cut = data.draw(st.integers(0, len(values)), label="cut")
    for column, part in ((array, values), (array.slice(cut), values[cut:]),
                         (pa.chunked_array([array[:cut], array[cut:]]), values)):
        got = bars_module.decimal_floats(column)
        want = np.array([float("nan") if x is None else float(x) for x in part], dtype=np.float64)
        np.testing.assert_array_equal(got, want)


# -- Loop B: the interpolated fee line ---------------------------------------------------------------------

FILL_PRICE = st.one_of(
    st.decimals(min_value=NINE, max_value=10**12, places=9),
    st.decimals(min_value=NINE, max_value=Decimal("99999999999999999999999999999.999999999"), places=9),
    st.decimals(min_value=-5, max_value=5, places=12),  # not fill prices: the fills' own error must come out
)


@NO_DEADLINE
@given(kind=st.sampled_from([("AAPL", AssetClass.EQUITY), ("BTC/USD", AssetClass.CRYPTO),
                             ("AAPL240119C00190000", AssetClass.OPTION), ("BTC/EUR", AssetClass.CRYPTO)]),
       side=st.sampled_from(list(Side)), day=st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)),
       entry=FILL_PRICE, exit_=FILL_PRICE)
def test_the_fee_line_gives_what_the_fills_give(
    kind: tuple[str, AssetClass], side: Side, day: dt.date, entry: Decimal, exit_: Decimal
) -> None:
    symbol, asset_class = kind
    signal = SimpleNamespace(symbol=symbol, asset_class=asset_class, side=side,
                             created_at=dt.datetime.combine(day, dt.time(15), dt.UTC))

    def reference(entry: Decimal, exit_: Decimal) -> Decimal:
        return quantize9(_fills_total(symbol, asset_class, side, day, entry, exit_))

    got, want = outcome(fee_per_unit, signal, entry, exit_), outcome(reference, entry, exit_)
    assert (got[0], str(got[1])) == (want[0], str(want[1]))


# -- the local runs' GC tuning -------------------------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "fails"), [((700, 10, 10), False), ((123, 4, 5), True)])
def test_fewer_gc_passes_changes_only_the_collector_and_restores_it(threshold: tuple[int, int, int],
                                                                     fails: bool) -> None:
    """The GC tuning changes no value a run computes (it only decides when the cyclic collector runs), so what
    it must hold is that it leaves the collector as it found it, also when the run raises, and that a cycle
    made during the run is still collected afterwards. (Two cases, not a hypothesis search: each case costs
    a full collection.)"""
    before = gc.get_threshold()
    gc.set_threshold(*threshold)
    try:
        with contextlib.suppress(RuntimeError), fewer_gc_passes():
            assert gc.get_threshold()[0] == 50_000 and gc.get_freeze_count() > 0
            node = Node()
            node.self = node  # a cycle: only the collector frees it
            watch = weakref.ref(node)
            del node
            if fails:
                raise RuntimeError("the run failed")
        assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
        gc.collect()
        assert watch() is None
    finally:
        gc.set_threshold(*before)


class Node:
    """An object that can sit in a reference cycle (for the GC test)."""

    self: Any = None
