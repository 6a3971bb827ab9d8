"""Counterfactual trade maths for Loops B and C: triple-barrier P&L and price excursions.

Pure and vectorised: every function takes a symbol's ``Bars`` and plain numbers or arrays and returns
numbers or arrays; no I/O, no clock, no Decimal (the caller converts float64 to ``Money``).

Loop B (rejected signals) asks what a trade would have made had it been taken: enter at the open of
the first bar that opens strictly after ``created_at``, leave at the first touch of the take-profit or
the stop-loss, or at the close of the last bar that closes by ``window_end`` (TIMEOUT). Conventions:

* Bars last ``bar_ns`` (their timeframe): a bar opening at ``t`` covers ``[t, t + bar_ns)``. Only bars
  wholly inside the window count: one that opened before ``created_at`` (a daily bar holding the signal's
  own day) is never used, nor one that closes after the window's end. ``bar_ns = 0`` (the default, for
  callers that treat bars as instants) keeps every bar opening before the end.

* Touching is inclusive: a long's stop is touched when ``low <= stop_loss``, its target when
  ``high >= take_profit``; a short is the mirror (``high >= stop_loss``, ``low <= take_profit``).
* A bar that opens at or beyond a barrier (a gap) fills at its open, not at the barrier; otherwise the
  fill is the barrier price. This holds for the entry bar too: if the entry bar opens beyond a
  barrier the trade exits immediately at that open with zero P&L (what backtesting.py does).
* A bar that touches both barriers exits at the stop (the conservative convention of backtesting.py,
  vectorbt and freqtrade), unless the bar opened at or beyond the take-profit: the open is the first
  print of the bar, so the target was certainly reached first and fills at the open. backtesting.py
  still fills the stop in that one case; ``tests/test_barriers_backtesting.py`` documents it.
* Times are bar open timestamps (int64 ns) naming the bar in which the event happened; a TIMEOUT's
  ``exit_time`` is the open time of the last bar inside the window, whose close is the exit price.
* R multiples divide by the initial risk ``|entry_price - stop_loss|``: the entry price, not the
  signal price, because the counterfactual trade is entered at the next open and that is the risk
  it would actually have carried. A zero risk gives NaN rather than infinity.
* MFE/MAE span the entry bar to the exit bar inclusive: long ``MFE = max(high) - entry`` and
  ``MAE = entry - min(low)``, short mirrored. Both are non-negative for well-formed bars, as the
  entry bar's range contains its open.

Loop C (expired signals) asks how far price ran, measured from the signal price, over the bars that
open at or after ``created_at`` and close by ``lookahead_end`` (open before it when ``bar_ns`` is 0).
MFE and MAE are signed (an MFE below zero means price only ever moved against the signal) and
``is_missed_moonshot`` is ``max_mfe_pct >= threshold_pct`` on the
floats. Loop C does not store that flag: the float percentage of an exact 10 % move can be 9.999999999999998,
so it decides on the 9-place decimal it stores (``loops.expired_signals.missed_moonshot``).

Exactness of the touches: bar prices reach these functions as the floats nearest the 9-place decimals
``market_bars`` stores, and barriers as the floats nearest the signal's decimals. Below 2**23 (8,388,608)
floats are spaced under 1e-9, so distinct 9-place decimals are distinct floats and rounding keeps their
order: every touch (``high >= take_profit``, ``low <= stop_loss``, an open beyond a barrier) and so
``take_profit_hit`` and ``exit_reason`` decide exactly as the stored decimals would. Prices at or above
2**23 could tie where the decimals differ by less than a float spacing.

Speed: a sparse table (range minimum of ``low``, range maximum of ``high``) is built once per call over
the bars the signals need, in O(n log n). Range extremes are then O(1) and the first touch of a barrier
is an O(log n) binary lift, each step one numpy operation over all signals at once: no Python loop
over bars or signals. Missing values: NaN for floats, ``NAT_NS`` (numpy's NaT) for times. Bars are
taken as given: sorted by open time (checked) and free of NaN prices (not checked; a NaN low or high
would read as a touch).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from goldthread.models.hot import Side
from goldthread.models.warehouse import ExitReason
from goldthread.ports.market_data import Bars

NAT_NS: int = int(np.iinfo(np.int64).min)
"""Missing timestamp in int64 ns arrays; the bit pattern of numpy's ``NaT``."""

DEFAULT_WINDOW_NS: int = 7 * 24 * 3600 * 1_000_000_000
"""Loop B's default validity window (7 days) in ns, used when no ``window_end`` is given."""

TAKE_PROFIT, STOP_LOSS, TIMEOUT, NO_DATA = 0, 1, 2, 3
EXIT_REASONS: tuple[ExitReason, ...] = (
    ExitReason.TAKE_PROFIT, ExitReason.STOP_LOSS, ExitReason.TIMEOUT, ExitReason.NO_DATA,
)
"""``ExitReason`` by the int8 code stored in ``TripleBarrierBatch.exit_reason``."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def side_sign(side: Side | str | int) -> int:
    """+1 for long and -1 for short, from a ``Side``, its string value or the sign itself."""
    if isinstance(side, str):
        return 1 if Side(side.lower()) is Side.LONG else -1
    if side in (1, -1):
        return int(side)
    raise ValueError(f"side must be long/short or +1/-1, got {side!r}")


def side_codes(sides: Any) -> npt.NDArray[np.int8]:
    """An int8 array of +1/-1 from a sequence of ``Side``s, strings or signs, for the batch functions."""
    return np.fromiter((side_sign(s) for s in sides), dtype=np.int8)


# --------------------------------------------------------------------------------------------- results


def _scalar(value: Any) -> Any:
    """One array element as a Python scalar, with NaN and ``NAT_NS`` turned into None."""
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass(frozen=True)
class TripleBarrierResult:
    """Loop B's answer for one signal: the theoretical trade, or nulls with ``NO_DATA``.

    Prices are per unit in the symbol's currency, times int64 ns bar open times, percentages are of
    ``entry_price`` and R multiples of ``|entry_price - stop_loss|``."""

    entry_price: float | None
    entry_time: int | None
    exit_price: float | None
    exit_time: int | None
    exit_reason: ExitReason
    pnl_per_unit: float | None
    pnl_pct: float | None
    r_multiple: float | None
    mfe_price: float | None
    mfe_pct: float | None
    mfe_r: float | None
    mae_price: float | None
    mae_pct: float | None
    mae_r: float | None
    bars_observed: int


@dataclass(frozen=True)
class TripleBarrierBatch:
    """Loop B's answers for many signals of one symbol, one float64/int64 array per field.

    ``exit_reason`` holds int8 codes (``EXIT_REASONS[code]`` is the ``ExitReason``); missing values are
    NaN and ``NAT_NS``. ``bars_observed`` counts the bars from the entry bar to the exit bar inclusive
    (0 for NO_DATA). ``row(i)`` gives one signal's ``TripleBarrierResult``."""

    entry_price: FloatArray
    entry_time: IntArray
    exit_price: FloatArray
    exit_time: IntArray
    exit_reason: npt.NDArray[np.int8]
    pnl_per_unit: FloatArray
    pnl_pct: FloatArray
    r_multiple: FloatArray
    mfe_price: FloatArray
    mfe_pct: FloatArray
    mfe_r: FloatArray
    mae_price: FloatArray
    mae_pct: FloatArray
    mae_r: FloatArray
    bars_observed: IntArray

    def __len__(self) -> int:
        return int(self.exit_reason.shape[0])

    @classmethod
    def empty(cls, m: int) -> TripleBarrierBatch:
        """``m`` NO_DATA answers, to be filled in for the signals that have bars."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name.endswith("_time"):
                kw[f.name] = np.full(m, NAT_NS, dtype=np.int64)
            elif f.name == "exit_reason":
                kw[f.name] = np.full(m, NO_DATA, dtype=np.int8)
            elif f.name == "bars_observed":
                kw[f.name] = np.zeros(m, dtype=np.int64)
            else:
                kw[f.name] = np.full(m, np.nan)
        return cls(**kw)

    def exit_reasons(self) -> list[ExitReason]:
        """The exit reasons as ``ExitReason`` members."""
        return [EXIT_REASONS[c] for c in self.exit_reason.tolist()]

    def row(self, i: int) -> TripleBarrierResult:
        """Signal ``i``'s answer as Python scalars, None where missing."""
        kw = {f.name: _scalar(getattr(self, f.name)[i]) for f in fields(self)}
        for name in ("entry_time", "exit_time"):
            if kw[name] == NAT_NS:
                kw[name] = None
        kw["exit_reason"] = EXIT_REASONS[kw["exit_reason"]]
        return TripleBarrierResult(**kw)


@dataclass(frozen=True)
class ExcursionResult:
    """Loop C's answer for one signal: best and worst excursion from the signal price, and the TP.

    All fields but ``bars_observed`` are None when no bar opens inside the window. Percentages are of
    ``signal_price`` and R multiples of ``|signal_price - stop_loss|``; times are bar open times (ns)."""

    max_mfe_price: float | None
    max_mfe_pct: float | None
    max_mfe_r: float | None
    max_mfe_at: int | None
    mae_price: float | None
    mae_pct: float | None
    mae_r: float | None
    mae_at: int | None
    take_profit_hit: bool | None
    take_profit_hit_at: int | None
    is_missed_moonshot: bool | None
    bars_observed: int


@dataclass(frozen=True)
class ExcursionBatch:
    """Loop C's answers for many signals of one symbol, one array per field.

    Missing values are NaN and ``NAT_NS``; the two bool arrays are False where ``bars_observed`` is 0,
    which ``row(i)`` turns into None."""

    max_mfe_price: FloatArray
    max_mfe_pct: FloatArray
    max_mfe_r: FloatArray
    max_mfe_at: IntArray
    mae_price: FloatArray
    mae_pct: FloatArray
    mae_r: FloatArray
    mae_at: IntArray
    take_profit_hit: npt.NDArray[np.bool_]
    take_profit_hit_at: IntArray
    is_missed_moonshot: npt.NDArray[np.bool_]
    bars_observed: IntArray

    def __len__(self) -> int:
        return int(self.bars_observed.shape[0])

    @classmethod
    def empty(cls, m: int) -> ExcursionBatch:
        """``m`` no-data answers, to be filled in for the signals that have bars."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name.endswith("_at"):
                kw[f.name] = np.full(m, NAT_NS, dtype=np.int64)
            elif f.name in ("take_profit_hit", "is_missed_moonshot"):
                kw[f.name] = np.zeros(m, dtype=np.bool_)
            elif f.name == "bars_observed":
                kw[f.name] = np.zeros(m, dtype=np.int64)
            else:
                kw[f.name] = np.full(m, np.nan)
        return cls(**kw)

    def row(self, i: int) -> ExcursionResult:
        """Signal ``i``'s answer as Python scalars, None where missing."""
        kw = {f.name: _scalar(getattr(self, f.name)[i]) for f in fields(self)}
        for name in ("max_mfe_at", "mae_at", "take_profit_hit_at"):
            if kw[name] == NAT_NS:
                kw[name] = None
        if kw["bars_observed"] == 0:
            kw["take_profit_hit"] = kw["is_missed_moonshot"] = None
        return ExcursionResult(**kw)


# ----------------------------------------------------------------------------------------- sparse table


class _RangeTable:
    """Sparse table over one price array: range minimum (or maximum) in O(1) and the first index
    reaching a threshold in O(log n); every query vectorised over an array of ranges.

    Row ``p`` holds the extreme of the ``2**p`` values starting at each index (padded with +-inf)."""

    def __init__(self, values: FloatArray, *, is_min: bool) -> None:
        n = int(values.shape[0])
        self.is_min = is_min
        self.levels = max(1, n.bit_length())
        self.ext = np.empty((self.levels, n))  # filled row by row: one pass over the memory, not two
        self.ext[0] = values
        combine = np.minimum if is_min else np.maximum
        for p in range(1, self.levels):
            half, m = 1 << (p - 1), n - (1 << p) + 1
            combine(self.ext[p - 1, :m], self.ext[p - 1, half:half + m], out=self.ext[p, :m])
            self.ext[p, m:] = np.inf if is_min else -np.inf

    def extreme(self, a: IntArray, b: IntArray) -> FloatArray:
        """Extreme of ``values[a:b+1]`` per range (``a <= b``): two overlapping power-of-two blocks."""
        p = np.frexp((b - a + 1).astype(np.float64))[1].astype(np.int64) - 1  # floor(log2(length))
        r = b - np.left_shift(1, p) + 1
        combine = np.minimum if self.is_min else np.maximum
        return combine(self.ext[p, a], self.ext[p, r])

    def first_reaching(self, start: IntArray, stop: IntArray, threshold: FloatArray) -> IntArray:
        """First ``i`` in ``[start, stop)`` with ``values[i] <= threshold`` (min table) or ``>=`` (max
        table), else ``stop``: binary lifting over blocks that stay clear of the threshold."""
        pos = start.copy()
        for p in range(self.levels - 1, -1, -1):
            step = 1 << p
            fits = pos + step <= stop
            if not fits.any():
                continue
            block = self.ext[p, np.where(fits, pos, 0)]
            clear = block > threshold if self.is_min else block < threshold
            pos += step * (fits & clear)
        return pos


# ---------------------------------------------------------------------------------------------- inputs


def _ns(values: Any) -> IntArray:
    """int64 ns from int64 ns or datetime64 of any unit."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]").view(np.int64)
    return arr.astype(np.int64)


def _length(*values: Any) -> int:
    """The number of signals: the length of the array inputs (scalars broadcast; all scalars is one)."""
    sizes = [int(np.asarray(v).size) for v in values if v is not None and np.ndim(v) > 0]
    return max(sizes) if sizes else 1


def _check_bars(bars: Bars) -> None:
    """Refuse bars that are not sorted by open time: every window bound relies on binary search."""
    if len(bars) > 1 and bool(np.any(bars.ts[1:] < bars.ts[:-1])):
        raise ValueError(f"bars of {bars.symbol} are not sorted by open time")


def _stop(bars: Bars, end: IntArray, bar_ns: int) -> IntArray:
    """Per window end, the index after the last bar inside it: the bars whose close ``ts + bar_ns`` is at or
    before the end (``ts <= end - bar_ns``), or, for ``bar_ns = 0``, those opening strictly before it."""
    if bar_ns < 0:
        raise ValueError("bar_ns must not be negative")
    return np.searchsorted(bars.ts, end - max(int(bar_ns), 1) + 1, side="left")  # type: ignore[no-any-return]


def _signs(side: Any, m: int) -> FloatArray:
    """Signal sides as float +1/-1 (float so that ``sign * price`` stays float64)."""
    arr = np.broadcast_to(np.asarray(side), (m,))
    if arr.dtype.kind in "iu":
        if not bool(((arr == 1) | (arr == -1)).all()):
            raise ValueError("side codes must be +1 (long) or -1 (short)")
        return arr.astype(np.float64)
    return side_codes(arr.tolist()).astype(np.float64)


def _prices(m: int, **named: Any) -> list[FloatArray]:
    """Float64 arrays of length ``m``; NaN is refused (use +-inf for a barrier that never fills)."""
    out = []
    for name, value in named.items():
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (m,))
        if np.isnan(arr).any():
            raise ValueError(f"{name} has NaN")
        out.append(arr)
    return out


# -------------------------------------------------------------------------------------------- Loop B


def triple_barrier_batch(
    bars: Bars,
    side: Any,
    created_ns: Any,
    take_profit: Any,
    stop_loss: Any,
    window_end_ns: Any = None,
    bar_ns: int = 0,
) -> TripleBarrierBatch:
    """Triple-barrier theoretical trades for many signals on one symbol's bars (Loop B).

    ``side`` is an int8 array of +1 (long) / -1 (short) (``Side`` values are accepted too); times are
    int64 ns (or datetime64); ``window_end_ns`` defaults to ``created_ns + DEFAULT_WINDOW_NS``; ``bar_ns`` is
    the length of a bar (``Bars.length_ns``), so the time-out is the last bar closing by the end. Scalars
    broadcast against the arrays. The rules are in the module docstring. O((n + m) log n) for n bars
    and m signals, with no Python loop over either."""
    _check_bars(bars)
    created = _ns(created_ns).reshape(-1)
    m = _length(created, side, take_profit, stop_loss, window_end_ns)
    created = np.broadcast_to(created, (m,))
    end = created + DEFAULT_WINDOW_NS if window_end_ns is None else np.broadcast_to(_ns(window_end_ns), (m,))
    sign = _signs(side, m)
    tp_all, sl_all = _prices(m, take_profit=take_profit, stop_loss=stop_loss)
    out = TripleBarrierBatch.empty(m)

    start_all = np.searchsorted(bars.ts, created, side="right")  # first bar opening after created_at
    stop_all = _stop(bars, end, bar_ns)  # bars closing by window_end
    idx = np.flatnonzero(stop_all > start_all)
    if idx.size == 0:
        return out
    lo, hi = int(start_all[idx].min()), int(stop_all[idx].max())
    s, e = start_all[idx] - lo, stop_all[idx] - lo  # local to the bars the signals need
    open_, high, low, close = (a[lo:hi] for a in (bars.open, bars.high, bars.low, bars.close))
    tmin, tmax = _RangeTable(low, is_min=True), _RangeTable(high, is_min=False)
    sg, tp, sl = sign[idx], tp_all[idx], sl_all[idx]
    is_long = sg > 0

    # A long's stop and a short's target are reached from above (low <= x), the others from below.
    k_low = tmin.first_reaching(s, e, np.where(is_long, sl, tp))
    k_high = tmax.first_reaching(s, e, np.where(is_long, tp, sl))
    k_sl, k_tp = np.where(is_long, k_low, k_high), np.where(is_long, k_high, k_low)
    k = np.minimum(k_sl, k_tp)
    touched = k < e
    k_exit = np.where(touched, k, e - 1)
    o = open_[k_exit]
    opens_beyond_tp = sg * (o - tp) >= 0
    is_tp = touched & ((k_tp < k_sl) | ((k_tp == k_sl) & opens_beyond_tp))
    is_sl = touched & ~is_tp
    # The fill is the barrier, or the bar's open when it opened beyond it (worse for SL, better for TP).
    tp_fill = np.where(is_long, np.maximum(o, tp), np.minimum(o, tp))
    sl_fill = np.where(is_long, np.minimum(o, sl), np.maximum(o, sl))
    exit_price = np.where(is_tp, tp_fill, np.where(is_sl, sl_fill, close[k_exit]))
    entry = open_[s]
    pnl = sg * (exit_price - entry)

    top, bottom = tmax.extreme(s, k_exit), tmin.extreme(s, k_exit)
    mfe = np.where(is_long, top - entry, entry - bottom)
    mae = np.where(is_long, entry - bottom, top - entry)
    risk = np.where(entry != sl, np.abs(entry - sl), np.nan)  # zero risk: R is undefined, not infinite
    with np.errstate(divide="ignore", invalid="ignore"):
        out.pnl_pct[idx] = pnl / entry * 100.0
        out.mfe_pct[idx] = mfe / entry * 100.0
        out.mae_pct[idx] = mae / entry * 100.0
        out.r_multiple[idx] = pnl / risk
        out.mfe_r[idx] = mfe / risk
        out.mae_r[idx] = mae / risk
    out.entry_price[idx] = entry
    out.entry_time[idx] = bars.ts[lo + s]
    out.exit_price[idx] = exit_price
    out.exit_time[idx] = bars.ts[lo + k_exit]
    out.exit_reason[idx] = np.where(is_tp, TAKE_PROFIT, np.where(is_sl, STOP_LOSS, TIMEOUT))
    out.pnl_per_unit[idx] = pnl
    out.mfe_price[idx] = mfe
    out.mae_price[idx] = mae
    out.bars_observed[idx] = k_exit - s + 1
    return out


def triple_barrier(
    bars: Bars,
    side: Side | str | int,
    created_at_ns: int,
    take_profit: float,
    stop_loss: float,
    window_end_ns: int | None = None,
    bar_ns: int = 0,
) -> TripleBarrierResult:
    """The triple-barrier theoretical trade of one rejected signal (Loop B); see ``triple_barrier_batch``.

    Only the bars inside the signal's window are indexed, so one call costs O(w log w) for w bars."""
    batch = triple_barrier_batch(
        bars, np.array([side_sign(side)], dtype=np.int8), np.array([created_at_ns], dtype=np.int64),
        take_profit, stop_loss, None if window_end_ns is None else np.array([window_end_ns], dtype=np.int64),
        bar_ns,
    )
    return batch.row(0)


# -------------------------------------------------------------------------------------------- Loop C


def excursions_batch(
    bars: Bars,
    side: Any,
    created_ns: Any,
    signal_price: Any,
    take_profit: Any,
    stop_loss: Any,
    lookahead_end_ns: Any,
    moonshot_threshold_pct: Any,
    bar_ns: int = 0,
) -> ExcursionBatch:
    """Excursions of many expired signals on one symbol's bars (Loop C), over bars opening at or after
    ``created_ns`` and closing by ``lookahead_end_ns`` (bars ``bar_ns`` long), measured from ``signal_price``.

    Long: ``max_mfe = max(high) - signal_price`` and ``mae = signal_price - min(low)``; short mirrored.
    ``*_at`` is the open time of the first bar reaching the extreme; ``take_profit_hit`` asks whether any
    bar in the window reached the target (stop-loss ignored: the signal was never traded), and
    ``is_missed_moonshot`` is ``max_mfe_pct >= moonshot_threshold_pct``. Arrays as in
    ``triple_barrier_batch``; O((n + m) log n)."""
    _check_bars(bars)
    created = _ns(created_ns).reshape(-1)
    m = _length(created, side, signal_price, take_profit, stop_loss, lookahead_end_ns, moonshot_threshold_pct)
    created = np.broadcast_to(created, (m,))
    end = np.broadcast_to(_ns(lookahead_end_ns), (m,))
    sign = _signs(side, m)
    ref_all, tp_all, sl_all, thr_all = _prices(
        m, signal_price=signal_price, take_profit=take_profit, stop_loss=stop_loss,
        moonshot_threshold_pct=moonshot_threshold_pct,
    )
    out = ExcursionBatch.empty(m)

    start_all = np.searchsorted(bars.ts, created, side="left")
    stop_all = _stop(bars, end, bar_ns)
    idx = np.flatnonzero(stop_all > start_all)
    if idx.size == 0:
        return out
    lo, hi = int(start_all[idx].min()), int(stop_all[idx].max())
    s, e = start_all[idx] - lo, stop_all[idx] - lo
    ts = bars.ts[lo:hi]
    tmin, tmax = _RangeTable(bars.low[lo:hi], is_min=True), _RangeTable(bars.high[lo:hi], is_min=False)
    sg, ref, tp, sl = sign[idx], ref_all[idx], tp_all[idx], sl_all[idx]
    is_long = sg > 0

    top, bottom = tmax.extreme(s, e - 1), tmin.extreme(s, e - 1)
    # When: the first bar reaching the extreme is the first whose high (low) is >= (<=) it. A long's target is
    # reached from below (high >= tp), a short's from above: one search per table answers both questions.
    k = len(s)
    s2, e2 = np.concatenate((s, s)), np.concatenate((e, e))
    from_high = tmax.first_reaching(s2, e2, np.concatenate((top, tp)))
    from_low = tmin.first_reaching(s2, e2, np.concatenate((bottom, tp)))
    top_at, bottom_at = from_high[:k], from_low[:k]
    mfe = np.where(is_long, top - ref, ref - bottom)
    mae = np.where(is_long, ref - bottom, top - ref)
    k_tp = np.where(is_long, from_high[k:], from_low[k:])
    hit = k_tp < e
    risk = np.where(ref != sl, np.abs(ref - sl), np.nan)  # zero risk: R is undefined, not infinite
    with np.errstate(divide="ignore", invalid="ignore"):
        mfe_pct = mfe / ref * 100.0
        out.mae_pct[idx] = mae / ref * 100.0
        out.max_mfe_r[idx] = mfe / risk
        out.mae_r[idx] = mae / risk
    out.max_mfe_price[idx] = mfe
    out.max_mfe_pct[idx] = mfe_pct
    out.max_mfe_at[idx] = ts[np.where(is_long, top_at, bottom_at)]
    out.mae_price[idx] = mae
    out.mae_at[idx] = ts[np.where(is_long, bottom_at, top_at)]
    out.take_profit_hit[idx] = hit
    out.take_profit_hit_at[idx] = np.where(hit, ts[np.minimum(k_tp, e - 1)], NAT_NS)
    out.is_missed_moonshot[idx] = mfe_pct >= thr_all[idx]
    out.bars_observed[idx] = e - s
    return out


def excursions(
    bars: Bars,
    side: Side | str | int,
    created_at_ns: int,
    signal_price: float,
    take_profit: float,
    stop_loss: float,
    lookahead_end_ns: int,
    moonshot_threshold_pct: float,
    bar_ns: int = 0,
) -> ExcursionResult:
    """Excursions of one expired signal (Loop C); see ``excursions_batch`` for the definitions."""
    batch = excursions_batch(
        bars, np.array([side_sign(side)], dtype=np.int8), np.array([created_at_ns], dtype=np.int64),
        signal_price, take_profit, stop_loss, np.array([lookahead_end_ns], dtype=np.int64), moonshot_threshold_pct,
        bar_ns,
    )
    return batch.row(0)
