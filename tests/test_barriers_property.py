"""The vectorised batch functions agree with an obviously-correct bar-by-bar reference on random data.

Prices live on a coarse grid so that barriers often sit exactly on a high, low or open, and signals
are created on, between and around bar open times, with windows that may hold no bar at all."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from goldthread.analytics.barriers import EXIT_REASONS, excursions_batch, triple_barrier_batch
from goldthread.models.warehouse import ExitReason
from goldthread.ports.market_data import Bars
from hypothesis import given, settings
from hypothesis import strategies as st

MIN = 60 * 1_000_000_000
T0 = 1_600_000_000 * 1_000_000_000


def reference_triple_barrier(bars: Bars, sign: int, created: int, tp: float, sl: float, end: int) -> dict[str, Any]:
    """Loop B, one bar at a time, straight from the rules."""
    window = [i for i in range(len(bars)) if created < bars.ts[i] < end]
    if not window:
        return {"exit_reason": ExitReason.NO_DATA, "bars_observed": 0}
    entry = float(bars.open[window[0]])
    exit_price, reason, last = float(bars.close[window[-1]]), ExitReason.TIMEOUT, window[-1]
    for k in window:
        o, h, low = float(bars.open[k]), float(bars.high[k]), float(bars.low[k])
        if sign > 0:
            sl_hit, tp_hit, tp_at_open = low <= sl, h >= tp, o >= tp
            tp_fill, sl_fill = max(o, tp), min(o, sl)
        else:
            sl_hit, tp_hit, tp_at_open = h >= sl, low <= tp, o <= tp
            tp_fill, sl_fill = min(o, tp), max(o, sl)
        if tp_hit and (not sl_hit or tp_at_open):
            exit_price, reason, last = tp_fill, ExitReason.TAKE_PROFIT, k
            break
        if sl_hit:
            exit_price, reason, last = sl_fill, ExitReason.STOP_LOSS, k
            break
    life = range(window[0], last + 1)
    top = max(float(bars.high[i]) for i in life)
    bottom = min(float(bars.low[i]) for i in life)
    pnl = exit_price - entry if sign > 0 else entry - exit_price
    mfe, mae = (top - entry, entry - bottom) if sign > 0 else (entry - bottom, top - entry)
    risk = abs(entry - sl)
    return {
        "entry_price": entry, "entry_time": int(bars.ts[window[0]]), "exit_price": exit_price,
        "exit_time": int(bars.ts[last]), "exit_reason": reason, "pnl_per_unit": pnl, "pnl_pct": pnl / entry * 100,
        "r_multiple": pnl / risk if risk else None, "mfe_price": mfe, "mfe_pct": mfe / entry * 100,
        "mfe_r": mfe / risk if risk else None, "mae_price": mae, "mae_pct": mae / entry * 100,
        "mae_r": mae / risk if risk else None, "bars_observed": len(life),
    }


def reference_excursions(
    bars: Bars, sign: int, created: int, ref: float, tp: float, sl: float, end: int, threshold: float
) -> dict[str, Any]:
    """Loop C, one bar at a time, straight from the definitions."""
    window = [i for i in range(len(bars)) if created <= bars.ts[i] < end]
    if not window:
        return {"bars_observed": 0}
    highs = [float(bars.high[i]) for i in window]
    lows = [float(bars.low[i]) for i in window]
    top_at = int(bars.ts[window[highs.index(max(highs))]])  # list.index: the first occurrence
    bottom_at = int(bars.ts[window[lows.index(min(lows))]])
    if sign > 0:
        mfe, mfe_at, mae, mae_at = max(highs) - ref, top_at, ref - min(lows), bottom_at
        hits = [i for i in window if bars.high[i] >= tp]
    else:
        mfe, mfe_at, mae, mae_at = ref - min(lows), bottom_at, max(highs) - ref, top_at
        hits = [i for i in window if bars.low[i] <= tp]
    risk = abs(ref - sl)
    return {
        "max_mfe_price": mfe, "max_mfe_pct": mfe / ref * 100, "max_mfe_r": mfe / risk if risk else None,
        "max_mfe_at": mfe_at, "mae_price": mae, "mae_pct": mae / ref * 100, "mae_r": mae / risk if risk else None,
        "mae_at": mae_at, "take_profit_hit": bool(hits), "take_profit_hit_at": int(bars.ts[hits[0]]) if hits else None,
        "is_missed_moonshot": mfe / ref * 100 >= threshold, "bars_observed": len(window),
    }


@st.composite
def random_bars(draw: st.DrawFn) -> Bars:
    """0-40 well-formed bars (low <= open, close <= high) on a 1.0 price grid, with uneven time gaps."""
    n = draw(st.integers(0, 40))
    gaps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    ts = T0 + np.cumsum(np.array(gaps, dtype=np.int64)) * MIN
    oc = np.array(draw(st.lists(st.tuples(st.integers(5, 20), st.integers(5, 20)), min_size=n, max_size=n)),
                  dtype=np.float64).reshape(n, 2)
    wicks = np.array(draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=n, max_size=n)),
                     dtype=np.float64).reshape(n, 2)
    high = oc.max(axis=1) + wicks[:, 0]
    low = oc.min(axis=1) - wicks[:, 1]
    return Bars("PROP", ts, oc[:, 0].copy(), high, low, oc[:, 1].copy(), np.ones(n))


def signal_times(draw: st.DrawFn, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Creation times on and between bar times (half-minute steps), and windows of 0-50 minutes."""
    created = T0 + np.array(draw(st.lists(st.integers(-4, 130), min_size=m, max_size=m)), dtype=np.int64) * MIN // 2
    length = np.array(draw(st.lists(st.integers(0, 100), min_size=m, max_size=m)), dtype=np.int64) * MIN // 2
    return created, created + length


def grid_prices(draw: st.DrawFn, m: int) -> np.ndarray:
    """Prices on the bar grid and half-way between, so barriers both tie and miss bar prices."""
    return np.array(draw(st.lists(st.integers(4, 48), min_size=m, max_size=m)), dtype=np.float64) / 2


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Field-by-field equality (floats to 1e-12 relative), missing fields must be null."""
    for name, value in got.items():
        expected = want.get(name)
        if expected is None or isinstance(expected, (bool, int, ExitReason)):
            assert value == expected, (name, value, expected)
        else:
            assert value is not None and math.isclose(value, expected, rel_tol=1e-12, abs_tol=1e-12), (
                name, value, expected)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), bars=random_bars(), m=st.integers(1, 25))
def test_triple_barrier_batch_matches_reference(data: st.DataObject, bars: Bars, m: int) -> None:
    created, end = signal_times(data.draw, m)
    sides = np.array(data.draw(st.lists(st.sampled_from([1, -1]), min_size=m, max_size=m)), dtype=np.int8)
    tp, sl = grid_prices(data.draw, m), grid_prices(data.draw, m)
    batch = triple_barrier_batch(bars, sides, created, tp, sl, end)
    for i in range(m):
        want = reference_triple_barrier(bars, int(sides[i]), int(created[i]), tp[i], sl[i], int(end[i]))
        assert_matches(batch.row(i).__dict__, want)
        assert EXIT_REASONS[int(batch.exit_reason[i])] is want["exit_reason"]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), bars=random_bars(), m=st.integers(1, 25))
def test_excursions_batch_matches_reference(data: st.DataObject, bars: Bars, m: int) -> None:
    created, end = signal_times(data.draw, m)
    sides = np.array(data.draw(st.lists(st.sampled_from([1, -1]), min_size=m, max_size=m)), dtype=np.int8)
    ref, tp, sl = grid_prices(data.draw, m), grid_prices(data.draw, m), grid_prices(data.draw, m)
    threshold = np.array(data.draw(st.lists(st.integers(-50, 100), min_size=m, max_size=m)), dtype=np.float64)
    batch = excursions_batch(bars, sides, created, ref, tp, sl, end, threshold)
    for i in range(m):
        want = reference_excursions(
            bars, int(sides[i]), int(created[i]), ref[i], tp[i], sl[i], int(end[i]), threshold[i])
        assert_matches(batch.row(i).__dict__, want)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), m=st.integers(1, 40))
def test_long_windows_exercise_every_sparse_table_level(data: st.DataObject, m: int) -> None:
    """A random walk of 3,000 bars with windows up to all of it: deep binary lifts, long range queries."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = 3000
    close = 100 + np.cumsum(rng.normal(0, 0.5, n))
    open_ = np.r_[100.0, close[:-1]] + rng.normal(0, 0.2, n)
    high = np.maximum(open_, close) + rng.exponential(0.3, n)
    low = np.minimum(open_, close) - rng.exponential(0.3, n)
    bars = Bars("WALK", T0 + np.arange(n, dtype=np.int64) * MIN, open_, high, low, close, np.ones(n))
    created = T0 + rng.integers(-5, n + 5, m) * MIN + rng.integers(0, MIN, m)
    end = created + rng.integers(0, n + 10, m) * MIN
    sides = rng.choice(np.array([1, -1], dtype=np.int8), m)
    ref = bars.close[np.clip((created - T0) // MIN, 0, n - 1)]
    tp = ref * (1 + sides * rng.uniform(0.001, 0.3, m))
    sl = ref * (1 - sides * rng.uniform(0.001, 0.3, m))
    batch = triple_barrier_batch(bars, sides, created, tp, sl, end)
    exc = excursions_batch(bars, sides, created, ref, tp, sl, end, 5.0)
    for i in range(m):
        assert_matches(batch.row(i).__dict__, reference_triple_barrier(
            bars, int(sides[i]), int(created[i]), tp[i], sl[i], int(end[i])))
        assert_matches(exc.row(i).__dict__, reference_excursions(
            bars, int(sides[i]), int(created[i]), ref[i], tp[i], sl[i], int(end[i]), 5.0))
