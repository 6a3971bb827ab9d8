"""Hand-computed cases for every triple-barrier (Loop B) and excursion (Loop C) rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from goldthread.analytics.barriers import (
    DEFAULT_WINDOW_NS,
    EXIT_REASONS,
    NAT_NS,
    ExcursionResult,
    TripleBarrierResult,
    excursions,
    excursions_batch,
    side_codes,
    side_sign,
    triple_barrier,
    triple_barrier_batch,
)
from goldthread.models.hot import Side
from goldthread.models.warehouse import ExitReason
from goldthread.ports.market_data import Bars

MIN = 60 * 1_000_000_000
T0 = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z


def t(i: int) -> int:
    """Open time of bar ``i`` (one-minute bars)."""
    return T0 + i * MIN


def make_bars(*ohlc: tuple[float, float, float, float]) -> Bars:
    """One-minute bars from (open, high, low, close) rows starting at ``T0``."""
    arr = np.array(ohlc, dtype=np.float64).reshape(-1, 4)
    n = arr.shape[0]
    return Bars("TEST", T0 + np.arange(n, dtype=np.int64) * MIN, arr[:, 0].copy(), arr[:, 1].copy(),
                arr[:, 2].copy(), arr[:, 3].copy(), np.ones(n))


SIGNAL_BAR = (100.0, 101.0, 99.0, 100.0)  # bar 0: the signal is created at its open time
ENTRY_BAR = (100.0, 105.0, 95.0, 102.0)  # bar 1: entry at its open, 100; range 95..105 touches nothing
QUIET = (102.0, 104.0, 96.0, 101.0)


def long_trade(*later: tuple[float, float, float, float], end_bar: int = 10, **kw: float) -> TripleBarrierResult:
    """A long at tp=110 / sl=90 created at bar 0's open, over ``SIGNAL_BAR, ENTRY_BAR, *later``."""
    bars = make_bars(SIGNAL_BAR, ENTRY_BAR, *later)
    return triple_barrier(bars, Side.LONG, t(0), kw.get("tp", 110.0), kw.get("sl", 90.0), t(end_bar))


def mirror(row: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The bar reflected about 100: a short on it behaves like a long on the original."""
    o, h, low, c = row
    return 200 - o, 200 - low, 200 - h, 200 - c


def short_trade(*later: tuple[float, float, float, float], end_bar: int = 10) -> TripleBarrierResult:
    """A short at tp=90 / sl=110 over the mirror image of ``long_trade``'s bars."""
    bars = make_bars(*(mirror(r) for r in (SIGNAL_BAR, ENTRY_BAR, *later)))
    return triple_barrier(bars, Side.SHORT, t(0), 90.0, 110.0, t(end_bar))


def test_long_take_profit_first_fills_at_the_barrier() -> None:
    r = long_trade((102, 111, 101, 108))
    assert r == TripleBarrierResult(
        entry_price=100.0, entry_time=t(1), exit_price=110.0, exit_time=t(2), exit_reason=ExitReason.TAKE_PROFIT,
        pnl_per_unit=10.0, pnl_pct=10.0, r_multiple=1.0,
        mfe_price=11.0, mfe_pct=11.0, mfe_r=1.1, mae_price=5.0, mae_pct=5.0, mae_r=0.5, bars_observed=2,
    )


def test_long_stop_loss_first_fills_at_the_barrier() -> None:
    r = long_trade(QUIET, (100, 103, 89, 92), (92, 120, 91, 119))
    assert (r.exit_reason, r.exit_price, r.exit_time) == (ExitReason.STOP_LOSS, 90.0, t(3))
    assert (r.pnl_per_unit, r.pnl_pct, r.r_multiple) == (-10.0, -10.0, -1.0)
    assert (r.mfe_price, r.mae_price, r.mae_r, r.bars_observed) == (5.0, 11.0, 1.1, 3)


def test_one_bar_touching_both_barriers_exits_at_the_stop() -> None:
    r = long_trade((100, 112, 88, 105))
    assert (r.exit_reason, r.exit_price, r.exit_time, r.pnl_per_unit) == (ExitReason.STOP_LOSS, 90.0, t(2), -10.0)
    assert (r.mfe_price, r.mae_price) == (12.0, 12.0)  # the exit bar's whole range counts


def test_gap_through_the_stop_fills_at_the_open() -> None:
    r = long_trade((85, 87, 80, 86))
    assert (r.exit_reason, r.exit_price, r.pnl_per_unit, r.r_multiple) == (ExitReason.STOP_LOSS, 85.0, -15.0, -1.5)


def test_gap_through_the_target_fills_at_the_open() -> None:
    r = long_trade((115, 118, 113, 117))
    assert (r.exit_reason, r.exit_price, r.pnl_per_unit, r.r_multiple) == (ExitReason.TAKE_PROFIT, 115.0, 15.0, 1.5)


def test_gap_beyond_the_target_wins_even_if_the_bar_later_touches_the_stop() -> None:
    # The open is the bar's first print, so the target was certainly reached before the stop.
    r = long_trade((115, 116, 85, 90))
    assert (r.exit_reason, r.exit_price, r.exit_time) == (ExitReason.TAKE_PROFIT, 115.0, t(2))


def test_gap_through_the_stop_with_the_target_also_touched_fills_the_stop_at_the_open() -> None:
    r = long_trade((88, 115, 80, 112))
    assert (r.exit_reason, r.exit_price) == (ExitReason.STOP_LOSS, 88.0)


@pytest.mark.parametrize(("entry_open", "reason"), [(112.0, ExitReason.TAKE_PROFIT), (88.0, ExitReason.STOP_LOSS)])
def test_entry_bar_opening_beyond_a_barrier_exits_at_once_with_zero_pnl(entry_open: float, reason: ExitReason) -> None:
    bars = make_bars(SIGNAL_BAR, (entry_open, entry_open + 1, entry_open - 1, entry_open), QUIET)
    r = triple_barrier(bars, "long", t(0), 110.0, 90.0, t(10))
    assert (r.exit_reason, r.entry_price, r.exit_price, r.entry_time, r.exit_time) == (
        reason, entry_open, entry_open, t(1), t(1))
    assert (r.pnl_per_unit, r.pnl_pct, r.r_multiple, r.bars_observed) == (0.0, 0.0, 0.0, 1)


def test_timeout_exits_at_the_close_of_the_last_bar_opening_before_window_end() -> None:
    # window_end == t(4): bar 4 (which would hit the target) opens at window_end and is outside.
    r = long_trade(QUIET, QUIET, (101, 130, 100, 129), end_bar=4)
    assert (r.exit_reason, r.exit_price, r.exit_time, r.bars_observed) == (ExitReason.TIMEOUT, 101.0, t(3), 3)
    assert (r.pnl_per_unit, r.pnl_pct, r.r_multiple) == (1.0, 1.0, 0.1)
    assert (r.mfe_price, r.mae_price) == (5.0, 5.0)
    assert long_trade(QUIET, QUIET, (101, 130, 100, 129), end_bar=5).exit_reason is ExitReason.TAKE_PROFIT


def test_entry_is_the_first_bar_opening_strictly_after_created_at() -> None:
    bars = make_bars(SIGNAL_BAR, ENTRY_BAR, (103, 104, 102, 103), QUIET)
    at_open = triple_barrier(bars, Side.LONG, t(1), 110.0, 90.0, t(10))
    inside = triple_barrier(bars, Side.LONG, t(1) - 1, 110.0, 90.0, t(10))
    assert (at_open.entry_time, at_open.entry_price) == (t(2), 103.0)
    assert (inside.entry_time, inside.entry_price) == (t(1), 100.0)


def test_short_is_the_mirror_of_long() -> None:
    cases = [
        [(102, 111, 101, 108)], [QUIET, (100, 103, 89, 92)], [(100, 112, 88, 105)], [(85, 87, 80, 86)],
        [(115, 118, 113, 117)], [(115, 116, 85, 90)], [QUIET, QUIET, QUIET],
    ]
    for later in cases:
        lg, sh = long_trade(*later, end_bar=4), short_trade(*later, end_bar=4)
        assert sh.exit_reason == lg.exit_reason
        assert (sh.entry_time, sh.exit_time, sh.bars_observed) == (lg.entry_time, lg.exit_time, lg.bars_observed)
        assert sh.entry_price is not None and sh.exit_price is not None
        assert lg.entry_price is not None and lg.exit_price is not None
        assert (200 - sh.entry_price, 200 - sh.exit_price) == (lg.entry_price, lg.exit_price)
        for f in ("pnl_per_unit", "pnl_pct", "r_multiple", "mfe_price", "mfe_pct", "mfe_r", "mae_price", "mae_r"):
            assert getattr(sh, f) == pytest.approx(getattr(lg, f), abs=1e-12), f


def test_short_hand_computed() -> None:
    bars = make_bars((50, 51, 49, 50), (50, 51.5, 47, 48), (48, 49, 44, 45))
    r = triple_barrier(bars, Side.SHORT, t(0), 45.0, 52.0, t(3))
    assert (r.exit_reason, r.entry_price, r.exit_price, r.pnl_per_unit, r.pnl_pct) == (
        ExitReason.TAKE_PROFIT, 50.0, 45.0, 5.0, 10.0)
    assert (r.r_multiple, r.mfe_price, r.mae_price, r.mae_r) == (2.5, 6.0, 1.5, 0.75)


def no_data(r: TripleBarrierResult) -> bool:
    """True when every derived field is null and the reason is NO_DATA."""
    return r == TripleBarrierResult(None, None, None, None, ExitReason.NO_DATA, *([None] * 9), bars_observed=0)


def test_no_data() -> None:
    bars = make_bars(SIGNAL_BAR, ENTRY_BAR, QUIET)
    assert no_data(triple_barrier(Bars.empty("X"), Side.LONG, t(0), 110.0, 90.0, t(10)))
    assert no_data(triple_barrier(bars, Side.LONG, t(5), 110.0, 90.0, t(10)))  # created after the data
    assert no_data(triple_barrier(bars, Side.LONG, t(0), 110.0, 90.0, t(1)))  # window shuts before bar 1
    assert no_data(triple_barrier(bars, Side.LONG, t(0), 110.0, 90.0, t(0)))  # empty window


def test_signal_at_the_very_end_of_the_data() -> None:
    bars = make_bars(SIGNAL_BAR, ENTRY_BAR, QUIET)
    assert no_data(triple_barrier(bars, Side.SHORT, t(2), 90.0, 110.0, t(2) + DEFAULT_WINDOW_NS))
    last_one = triple_barrier(bars, Side.SHORT, t(1), 90.0, 110.0)  # default window: 7 days
    assert (last_one.exit_reason, last_one.entry_price, last_one.exit_price) == (ExitReason.TIMEOUT, 102.0, 101.0)
    assert (last_one.pnl_per_unit, last_one.bars_observed) == (1.0, 1)


def test_zero_initial_risk_gives_null_r_multiples() -> None:
    r = long_trade((102, 111, 101, 108), sl=100.0)  # the stop sits at the entry price
    assert r.exit_reason is ExitReason.STOP_LOSS  # the entry bar's low (95) is through it
    assert (r.pnl_per_unit, r.r_multiple, r.mfe_r, r.mae_r) == (0.0, None, None, None)
    assert r.mfe_price == 5.0


def test_infinite_barriers_never_fill() -> None:
    r = long_trade((102, 500, 1, 108), tp=math.inf, sl=-math.inf)
    assert (r.exit_reason, r.exit_price, r.r_multiple) == (ExitReason.TIMEOUT, 108.0, 0.0)


def test_batch_matches_single_calls_and_broadcasts_scalars() -> None:
    bars = make_bars(SIGNAL_BAR, ENTRY_BAR, (102, 111, 101, 108), (100, 112, 88, 105), QUIET, (85, 87, 80, 86))
    created = np.array([t(0), t(1), t(2), t(3), t(4), t(5), t(9)])
    sides = side_codes(["long", Side.SHORT, 1, -1, "LONG", "short", 1])
    tp = np.array([110.0, 90.0, 111.0, 101.0, 110.0, 80.0, 1.0])
    batch = triple_barrier_batch(bars, sides, created, tp, 94.0, t(6))
    assert len(batch) == 7
    for i in range(7):
        assert batch.row(i) == triple_barrier(bars, int(sides[i]), int(created[i]), float(tp[i]), 94.0, t(6))
    assert batch.exit_reasons() == [batch.row(i).exit_reason for i in range(7)]
    assert batch.exit_reasons()[-2:] == [ExitReason.NO_DATA, ExitReason.NO_DATA]
    assert batch.entry_time[-1] == NAT_NS and np.isnan(batch.pnl_per_unit[-1])
    as_dt64 = triple_barrier_batch(bars, sides, created.astype("datetime64[ns]").astype("datetime64[ms]"),
                                   tp, 94.0, np.datetime64(t(6), "ns"))
    np.testing.assert_array_equal(as_dt64.exit_price, batch.exit_price)
    assert len(triple_barrier_batch(bars, np.empty(0, np.int8), np.empty(0, np.int64), 1.0, 1.0)) == 0
    assert EXIT_REASONS[int(batch.exit_reason[0])] is ExitReason.TAKE_PROFIT


def test_bad_inputs_are_refused() -> None:
    bars = make_bars(SIGNAL_BAR, ENTRY_BAR)
    with pytest.raises(ValueError, match="side"):
        triple_barrier_batch(bars, np.array([2]), np.array([t(0)]), 110.0, 90.0)
    with pytest.raises(ValueError, match="side"):
        side_sign(0)
    with pytest.raises(ValueError, match="take_profit"):
        triple_barrier(bars, Side.LONG, t(0), math.nan, 90.0)
    unsorted = Bars("X", bars.ts[::-1].copy(), bars.open, bars.high, bars.low, bars.close, bars.volume)
    with pytest.raises(ValueError, match="sorted"):
        triple_barrier(unsorted, Side.LONG, t(0), 110.0, 90.0)


# ------------------------------------------------------------------------------------------------ Loop C

LOOP_C_BARS = (
    (99.0, 100.0, 98.0, 99.0),  # bar 0: before the signal
    (100.0, 103.0, 97.0, 102.0),  # bar 1: created_at is its open time, so it counts
    (102.0, 108.0, 101.0, 107.0),  # bar 2: first time the high reaches 108
    (107.0, 108.0, 94.0, 95.0),  # bar 3: ties the high; the lowest low
    (95.0, 112.0, 95.0, 111.0),  # bar 4: lookahead_end is its open time, so it does not count
)


def test_loop_c_long_excursions() -> None:
    bars = make_bars(*LOOP_C_BARS)
    r = excursions(bars, Side.LONG, t(1), 100.0, 105.0, 96.0, t(4), 8.0)
    assert r == ExcursionResult(
        max_mfe_price=8.0, max_mfe_pct=8.0, max_mfe_r=2.0, max_mfe_at=t(2),
        mae_price=6.0, mae_pct=6.0, mae_r=1.5, mae_at=t(3),
        take_profit_hit=True, take_profit_hit_at=t(2), is_missed_moonshot=True, bars_observed=3,
    )
    not_a_moonshot = excursions(bars, Side.LONG, t(1), 100.0, 109.0, 96.0, t(4), 8.5)
    assert (not_a_moonshot.is_missed_moonshot, not_a_moonshot.take_profit_hit) == (False, False)
    assert not_a_moonshot.take_profit_hit_at is None
    target_on_first_bar = excursions(bars, "long", t(1), 100.0, 103.0, 96.0, t(4), 8.0)
    assert target_on_first_bar.take_profit_hit_at == t(1)


def test_loop_c_short_excursions() -> None:
    bars = make_bars(*LOOP_C_BARS)
    r = excursions(bars, Side.SHORT, t(1), 100.0, 95.0, 104.0, t(4), 5.0)
    assert r == ExcursionResult(
        max_mfe_price=6.0, max_mfe_pct=6.0, max_mfe_r=1.5, max_mfe_at=t(3),
        mae_price=8.0, mae_pct=8.0, mae_r=2.0, mae_at=t(2),
        take_profit_hit=True, take_profit_hit_at=t(3), is_missed_moonshot=True, bars_observed=3,
    )


def test_loop_c_mfe_is_signed_when_price_only_moved_against_the_signal() -> None:
    bars = make_bars((90.0, 95.0, 85.0, 88.0))
    r = excursions(bars, Side.LONG, t(0), 100.0, 110.0, 80.0, t(1), 1.0)
    assert (r.max_mfe_price, r.max_mfe_pct, r.mae_price, r.is_missed_moonshot) == (-5.0, -5.0, 15.0, False)


def test_loop_c_no_data() -> None:
    bars = make_bars(*LOOP_C_BARS)
    empty = ExcursionResult(*([None] * 11), bars_observed=0)
    assert excursions(bars, Side.LONG, t(5), 100.0, 105.0, 96.0, t(9), 8.0) == empty
    assert excursions(Bars.empty("X"), Side.LONG, t(1), 100.0, 105.0, 96.0, t(9), 8.0) == empty
    batch = excursions_batch(bars, np.array([1, -1], np.int8), np.array([t(5), t(1)]), 100.0, 105.0, 96.0,
                             np.array([t(9), t(4)]), 8.0)
    assert batch.row(0) == empty and batch.row(1).bars_observed == 3
    assert batch.max_mfe_at[0] == NAT_NS and not batch.take_profit_hit[0]
