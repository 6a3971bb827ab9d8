"""Case 2: Loops B and C (counterfactuals) through the local path, beside a per-signal pandas loop.

``n`` signals over 50 symbols (10 crypto pairs trading 24/7, 40 equities in the US session), all created
on one day: half rejected (Loop B replays each as a trade over the 7-day validity window) and half
expired unexecuted (Loop C measures excursions over the signal's life plus a 24 h look-ahead). The bars
are synthetic 1-minute OHLCV over the 8 days the windows touch; the first run fetches them into
``market_bars`` through the loops' own prefetch, and that fetch is part of the measured time.

* ``run_goldthread``: dispatch and deliver Loop B, then Loop C, on an embedded context; market-data
  calls are counted per (symbol, day, timeframe) to prove each is fetched at most once.
* ``run_pandas``: the straightforward way, one signal at a time with pandas (slice the symbol's bars
  to the window, find the first touch of each barrier, the extremes...). It runs on ``subset`` signals
  and its time is extrapolated linearly to ``n`` (it is linear: each signal costs the same); its
  answers are checked against the library's vectorised ones on the same signals.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

UTC = dt.UTC
DAY0 = dt.date(2024, 3, 4)  # a Monday
NOW = dt.datetime.combine(DAY0 + dt.timedelta(days=10), dt.time(3), UTC)
CRYPTO = tuple(f"C{i:02d}/USD" for i in range(10))
EQUITIES = tuple(f"EQ{i:02d}" for i in range(40))
SYMBOLS = CRYPTO + EQUITIES


def generate_signals(n: int, seed: int = 7) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``n`` signal documents: ``n // 2`` rejected (Loop B) and the rest expired (Loop C), one day, 50 symbols."""
    from goldthread.adapters.synthetic_market_data import SyntheticMarketData

    market = SyntheticMarketData()
    rng = random.Random(seed)
    start = dt.datetime.combine(DAY0, dt.time(), UTC)
    rejected: dict[str, dict[str, Any]] = {}
    expired: dict[str, dict[str, Any]] = {}
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        crypto = symbol in CRYPTO
        created = start + dt.timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(1_000_000))
        price = round(market.price_at(symbol, created), 4)
        long = rng.random() < 0.6
        sign = 1 if long else -1
        width = rng.uniform(0.01, 0.03) if crypto else rng.uniform(0.005, 0.02)
        doc = {
            "archived_run_id": None, "archived_at": None, "dead_lettered_run_id": None, "is_canary": False,
            "signal_id": f"sig-{i:08d}", "strategy_id": "momo", "strategy_version": "1.0", "symbol": symbol,
            "asset_class": "crypto" if crypto else "equity", "side": "long" if long else "short",
            "signal_price": f"{price:.4f}", "take_profit": f"{price * (1 + sign * width):.4f}",
            "stop_loss": f"{price * (1 - sign * width * 0.6):.4f}",
            "created_at": created.isoformat(timespec="microseconds"),
            "expires_at": (created + dt.timedelta(hours=4)).isoformat(timespec="microseconds"),
        }
        if i % 2 == 0:
            rejected[doc["signal_id"]] = {
                **doc, "status": "REJECTED", "rejection_reason": "MAX_EXPOSURE",
                "rejected_at": (created + dt.timedelta(seconds=1)).isoformat(timespec="microseconds"),
            }
        else:
            expired[doc["signal_id"]] = {**doc, "status": "EXPIRED"}
    return rejected, expired


class CountingMarketData:
    """Synthetic market data that counts every (symbol, day, timeframe) it is asked for."""

    name: ClassVar[str] = "synthetic"

    def __init__(self) -> None:
        from goldthread.adapters.synthetic_market_data import SyntheticMarketData

        self.inner = SyntheticMarketData()
        self.calls = 0
        self.fetches: Counter[tuple[str, dt.date, str]] = Counter()

    def get_bars(self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime) -> Any:
        """Count, then delegate."""
        self.calls += 1
        last = (end - dt.timedelta(microseconds=1)).date()
        days = [start.date() + dt.timedelta(days=i) for i in range((last - start.date()).days + 1)]
        for symbol in symbols:
            for day in days:
                self.fetches[(symbol, day, timeframe)] += 1
        return self.inner.get_bars(symbols, timeframe, start, end)

    def price_at(self, symbol: str, moment: dt.datetime) -> float:
        """Delegate (the simulated broker asks for prices)."""
        return self.inner.price_at(symbol, moment)


def run_goldthread(n: int) -> dict[str, Any]:
    """Loops B and C for ``n`` signals through the local path, with market-data calls counted."""
    from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
    from goldthread.adapters.local_bus import LocalBus
    from goldthread.adapters.sim_broker import SimulatedBroker
    from goldthread.adapters.sqlite_hot_store import SqliteHotStore
    from goldthread.config import Settings
    from goldthread.pipeline.context import Context
    from goldthread.pipeline.local_runtime import run_loop, wire_local_bus

    from bench.loop_a import _null_logs

    _null_logs()
    rejected, expired = generate_signals(n)
    with tempfile.TemporaryDirectory(prefix="gt-bench-bc-") as tmp:
        directory = Path(tmp)
        hot = SqliteHotStore(directory / "hot.sqlite")
        hot.put_many("rejected_signals", rejected)
        hot.put_many("live_signals", expired)
        del rejected, expired
        market = CountingMarketData()

        def clock() -> dt.datetime:
            return NOW

        ctx = Context(
            Settings(home=directory), clock=clock, hot=hot, bus=LocalBus(),
            warehouse=DuckDbWarehouse(directory / "warehouse.duckdb"),
            broker=SimulatedBroker(directory / "broker.sqlite", clock=clock, market=market.inner),  # type: ignore[arg-type]
            market_data=market,  # type: ignore[arg-type]
        )
        wire_local_bus(ctx, min_backoff=0.01)
        ctx.warehouse  # noqa: B018 - tables before the clock starts
        started, cpu = time.perf_counter(), time.process_time()
        run_b = run_loop(ctx, "rejected_signals", DAY0)
        middle = time.perf_counter()
        run_c = run_loop(ctx, "expired_signals", DAY0 + dt.timedelta(days=1))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows_b = ctx.warehouse.query("SELECT COUNT(*) AS n FROM fact_rejected_signals")[0]["n"]
        rows_c = ctx.warehouse.query("SELECT COUNT(*) AS n FROM fact_signals_expired")[0]["n"]
        ctx.close()
    for run in (run_b, run_c):
        if run.loaded + run.duplicates + run.dead_lettered != run.published or run.dead_lettered:
            raise RuntimeError(f"run did not load everything: {run.model_dump()}")
    if rows_b + rows_c != n:
        raise RuntimeError(f"expected {n} rows, found {rows_b} + {rows_c}")
    return {
        "seconds": seconds, "cpu_seconds": cpu, "items": n, "signals": n, "symbols": len(SYMBOLS),
        "rows_b": rows_b, "rows_c": rows_c,
        "phases": {"loop_b": round(middle - started, 3), "loop_c": round(started + seconds - middle, 3)},
        "market_data_calls": market.calls, "symbol_day_fetches": len(market.fetches),
        "max_fetches_per_symbol_day": max(market.fetches.values(), default=0),
    }


def _frames(market: Any, symbols: Sequence[str]) -> dict[str, Any]:
    import pandas as pd

    start = dt.datetime.combine(DAY0, dt.time(), UTC)
    end = start + dt.timedelta(days=9)
    out = {}
    for symbol, bars in market.get_bars(list(symbols), "1Min", start, end).items():
        out[symbol] = pd.DataFrame(
            {"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close},
            index=pd.to_datetime(bars.ts, utc=True),
        )
    return out


def pandas_rejected(df: Any, long: bool, created: Any, end: Any, tp: float, sl: float) -> dict[str, Any]:
    """Loop B for one signal, the straightforward pandas way."""
    w = df[(df.index > created) & (df.index < end)]
    if w.empty:
        return {"exit_reason": "NO_DATA", "bars_observed": 0}
    entry = float(w["open"].iloc[0])
    if long:
        tp_hit, sl_hit, tp_at_open = w["high"] >= tp, w["low"] <= sl, w["open"] >= tp
    else:
        tp_hit, sl_hit, tp_at_open = w["low"] <= tp, w["high"] >= sl, w["open"] <= tp
    take = tp_hit & (~sl_hit | tp_at_open)
    first_tp = take.idxmax() if take.any() else None
    first_sl = sl_hit.idxmax() if sl_hit.any() else None
    if first_tp is not None and (first_sl is None or first_tp < first_sl):
        reason, at = "TAKE_PROFIT", first_tp
        o = float(w.at[at, "open"])
        exit_price = max(o, tp) if long else min(o, tp)
    elif first_sl is not None:
        reason, at = "STOP_LOSS", first_sl
        o = float(w.at[at, "open"])
        exit_price = min(o, sl) if long else max(o, sl)
    else:
        reason, at = "TIMEOUT", w.index[-1]
        exit_price = float(w["close"].iloc[-1])
    life = w.loc[:at]
    top, bottom = float(life["high"].max()), float(life["low"].min())
    pnl = exit_price - entry if long else entry - exit_price
    risk = abs(entry - sl)
    mfe, mae = (top - entry, entry - bottom) if long else (entry - bottom, top - entry)
    return {
        "exit_reason": reason, "entry_price": entry, "exit_price": exit_price, "pnl_per_unit": pnl,
        "r_multiple": pnl / risk if risk else None, "mfe_price": mfe, "mae_price": mae, "bars_observed": len(life),
    }


def pandas_expired(df: Any, long: bool, created: Any, end: Any, ref: float, tp: float) -> dict[str, Any]:
    """Loop C for one signal, the straightforward pandas way."""
    w = df[(df.index >= created) & (df.index < end)]
    if w.empty:
        return {"bars_observed": 0}
    if long:
        mfe, mfe_at = float(w["high"].max()) - ref, w["high"].idxmax()
        mae, mae_at = ref - float(w["low"].min()), w["low"].idxmin()
        hits = w["high"] >= tp
    else:
        mfe, mfe_at = ref - float(w["low"].min()), w["low"].idxmin()
        mae, mae_at = float(w["high"].max()) - ref, w["high"].idxmax()
        hits = w["low"] <= tp
    return {
        "max_mfe_price": mfe, "max_mfe_at": mfe_at, "mae_price": mae, "mae_at": mae_at,
        "take_profit_hit": bool(hits.any()), "take_profit_hit_at": hits.idxmax() if hits.any() else None,
        "bars_observed": len(w),
    }


def run_pandas(n: int, subset: int = 2000) -> dict[str, Any]:
    """The per-signal pandas loop on ``subset`` of the ``n`` signals; its time is extrapolated to ``n``."""
    import numpy as np
    import pandas as pd
    from goldthread.adapters.synthetic_market_data import SyntheticMarketData
    from goldthread.analytics.barriers import EXIT_REASONS, excursions_batch, triple_barrier_batch
    from goldthread.ports.market_data import to_ns

    rejected, expired = generate_signals(n)
    step_b = max(1, len(rejected) // max(1, subset // 2))
    step_c = max(1, len(expired) // max(1, subset - subset // 2))
    chosen_b = list(rejected.values())[::step_b][: subset // 2]
    chosen_c = list(expired.values())[::step_c][: subset - subset // 2]
    market = SyntheticMarketData()
    frames = _frames(market, SYMBOLS)  # the reference gets its bars ready-made, outside the clock
    bars = market.get_bars(list(SYMBOLS), "1Min", dt.datetime.combine(DAY0, dt.time(), UTC),
                           dt.datetime.combine(DAY0 + dt.timedelta(days=9), dt.time(), UTC))
    window, lookahead = pd.Timedelta(days=7), pd.Timedelta(hours=24)
    answers_b, answers_c = [], []
    started = time.perf_counter()
    for s in chosen_b:
        created = pd.Timestamp(s["created_at"])
        answers_b.append(pandas_rejected(frames[s["symbol"]], s["side"] == "long", created, created + window,
                                         float(s["take_profit"]), float(s["stop_loss"])))
    for s in chosen_c:
        created = pd.Timestamp(s["created_at"])
        answers_c.append(pandas_expired(frames[s["symbol"]], s["side"] == "long", created,
                                        pd.Timestamp(s["expires_at"]) + lookahead, float(s["signal_price"]),
                                        float(s["take_profit"])))
    measured = time.perf_counter() - started
    done = len(chosen_b) + len(chosen_c)
    agree_b = agree_c = 0
    for s, answer in zip(chosen_b, answers_b, strict=True):
        created = dt.datetime.fromisoformat(s["created_at"])
        ours = triple_barrier_batch(
            bars[s["symbol"]], np.array([1 if s["side"] == "long" else -1], dtype=np.int8),
            np.array([to_ns(created)]), np.array([float(s["take_profit"])]), np.array([float(s["stop_loss"])]),
            np.array([to_ns(created + dt.timedelta(days=7))]),
        )
        agree_b += EXIT_REASONS[int(ours.exit_reason[0])].value == answer["exit_reason"]
    for s, answer in zip(chosen_c, answers_c, strict=True):
        created = dt.datetime.fromisoformat(s["created_at"])
        end = dt.datetime.fromisoformat(s["expires_at"]) + dt.timedelta(hours=24)
        ours_c = excursions_batch(
            bars[s["symbol"]], np.array([1 if s["side"] == "long" else -1], dtype=np.int8),
            np.array([to_ns(created)]), np.array([float(s["signal_price"])]), np.array([float(s["take_profit"])]),
            np.array([float(s["stop_loss"])]), np.array([to_ns(end)]), 10.0,
        )
        agree_c += bool(ours_c.take_profit_hit[0]) == answer.get("take_profit_hit", False) and bool(
            np.isclose(ours_c.max_mfe_price[0], answer.get("max_mfe_price", np.nan), rtol=1e-9, equal_nan=True))
    vectorised = _vectorised_seconds(bars, rejected, expired)
    return {
        "seconds": measured * n / done, "items": n, "subset": done, "subset_seconds": measured,
        "vectorised_seconds": vectorised,
        "agreement": {"loop_b_exit_reason": round(agree_b / max(1, len(chosen_b)), 4),
                      "loop_c_mfe_and_target": round(agree_c / max(1, len(chosen_c)), 4)},
        "note": f"per-signal pandas loop timed on {done} signals and extrapolated linearly to {n}",
    }


def _vectorised_seconds(bars: dict[str, Any], rejected: dict[str, dict[str, Any]],
                        expired: dict[str, dict[str, Any]]) -> float:
    """The same maths for every signal with the library's vectorised functions (one call per symbol and loop)."""
    import numpy as np
    from goldthread.analytics.barriers import excursions_batch, triple_barrier_batch
    from goldthread.ports.market_data import to_ns

    def arrays(docs: list[dict[str, Any]], end_of: Any) -> dict[str, Any]:
        return {
            "side": np.array([1 if d["side"] == "long" else -1 for d in docs], dtype=np.int8),
            "created": np.array([to_ns(dt.datetime.fromisoformat(d["created_at"])) for d in docs], dtype=np.int64),
            "price": np.array([float(d["signal_price"]) for d in docs]),
            "tp": np.array([float(d["take_profit"]) for d in docs]),
            "sl": np.array([float(d["stop_loss"]) for d in docs]),
            "end": np.array([to_ns(end_of(d)) for d in docs], dtype=np.int64),
        }

    groups_b: dict[str, list[dict[str, Any]]] = {}
    groups_c: dict[str, list[dict[str, Any]]] = {}
    for d in rejected.values():
        groups_b.setdefault(d["symbol"], []).append(d)
    for d in expired.values():
        groups_c.setdefault(d["symbol"], []).append(d)
    ready_b = {s: arrays(g, lambda d: dt.datetime.fromisoformat(d["created_at"]) + dt.timedelta(days=7))
               for s, g in groups_b.items()}
    ready_c = {s: arrays(g, lambda d: dt.datetime.fromisoformat(d["expires_at"]) + dt.timedelta(hours=24))
               for s, g in groups_c.items()}
    started = time.perf_counter()
    for symbol, a in ready_b.items():
        triple_barrier_batch(bars[symbol], a["side"], a["created"], a["tp"], a["sl"], a["end"])
    for symbol, a in ready_c.items():
        excursions_batch(bars[symbol], a["side"], a["created"], a["price"], a["tp"], a["sl"], a["end"], 10.0)
    return time.perf_counter() - started
