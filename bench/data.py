"""Generated data for the benchmark: closed positions with their signals, strategy versions and broker orders.

The data is built fast and outside the measured time: documents go into the SQLite hot store with one
bulk ``put_many`` per collection, and orders straight into the simulator's ``orders`` table with one
``executemany``. Each size is generated once into a template directory and copied for every run, so a
run starts from exactly the same files.

One document in a hundred is bad, in one of several ways a buggy bot writes them (a negative quantity,
a lower-case symbol, a close before the open, a price that is not a number, an unknown field, a version
that contradicts the strategy history), so the dead-letter path is measured too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.sqlite_hot_store import SqliteHotStore

GENERATOR_VERSION = "3"
UTC = dt.UTC
DS = dt.date(2024, 3, 29)  # the day the run archives (every position closed on or before it)
FIRST_DAY = dt.date(2024, 3, 1)
NOW = dt.datetime(2024, 3, 30, 3, 0, tzinfo=UTC)  # when the scheduler runs the loop for DS
BAD_EVERY = 100  # 1% bad documents
SYMBOLS = {
    "AAPL": ("equity", 190.0), "MSFT": ("equity", 420.0), "NVDA": ("equity", 120.0), "SPY": ("equity", 520.0),
    "GOOG": ("equity", 170.0), "TSLA": ("equity", 240.0), "BTC/USD": ("crypto", 60000.0),
    "ETH/USD": ("crypto", 3000.0), "SOL/USD": ("crypto", 150.0),
}
STRATEGIES = ("momo", "meanrev", "breakout", "carry", "pairs")
VERSIONS = (  # (version, deployed_at): each strategy moves through the same three versions
    ("1.0", dt.datetime(2024, 1, 2, tzinfo=UTC)),
    ("1.1", dt.datetime(2024, 3, 10, tzinfo=UTC)),
    ("2.0", dt.datetime(2024, 3, 20, 12, tzinfo=UTC)),
)
BAD_KINDS = ("negative_qty", "lowercase_symbol", "closed_before_open", "price_not_a_number", "unknown_field",
             "scd_conflict")


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _version_at(moment: dt.datetime) -> str:
    current = VERSIONS[0][0]
    for version, deployed in VERSIONS:
        if deployed <= moment:
            current = version
    return current


def _money(value: float, places: int) -> str:
    return str(Decimal(repr(round(value, places))))


def generate_records(n: int, seed: int = 42) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], list[tuple]]]:
    """Yield ``(position_id, position_doc, signal_doc, orders)`` for ``n`` closed positions (1% bad)."""
    rng = random.Random(seed)
    symbols = list(SYMBOLS)
    span = (dt.datetime.combine(DS, dt.time(22), UTC) - dt.datetime.combine(FIRST_DAY, dt.time(), UTC))
    span_s = int(span.total_seconds()) - 6 * 3600
    start = dt.datetime.combine(FIRST_DAY, dt.time(), UTC)
    for i in range(n):
        pid = f"pos-{i:08d}"
        sid = f"sig-{i:08d}"
        symbol = symbols[i % len(symbols)]
        asset_class, base = SYMBOLS[symbol]
        strategy = STRATEGIES[i % len(STRATEGIES)]
        long = rng.random() < 0.6
        opened = start + dt.timedelta(seconds=rng.randrange(span_s), microseconds=rng.randrange(1_000_000))
        closed = opened + dt.timedelta(seconds=rng.randrange(60, 5 * 3600))
        created = opened - dt.timedelta(seconds=rng.randrange(1, 120))
        version = _version_at(created)
        places = 4 if asset_class == "crypto" else 2
        price = base * (1 + rng.uniform(-0.05, 0.05))
        entry = round(price * (1 + rng.uniform(-0.0005, 0.0005)), places)
        exit_ = round(entry * (1 + rng.uniform(-0.03, 0.03)), places)
        qty = _money(rng.uniform(0.01, 2), 4) if asset_class == "crypto" else str(rng.randrange(1, 200))
        sign = 1 if long else -1
        signal = {
            "archived_run_id": None, "archived_at": None, "dead_lettered_run_id": None, "is_canary": False,
            "signal_id": sid, "strategy_id": strategy, "strategy_version": version, "symbol": symbol,
            "asset_class": asset_class, "side": "long" if long else "short",
            "signal_price": _money(price, places),
            "take_profit": _money(price * (1 + sign * 0.05), places),
            "stop_loss": _money(price * (1 - sign * 0.03), places),
            "created_at": _iso(created), "expires_at": _iso(created + dt.timedelta(hours=4)), "status": "EXECUTED",
        }
        bot_entry = _money(entry, places) if rng.random() > 0.05 else "0"  # Alpaca reports 0 off-session
        bot_exit = _money(exit_ * (1 + rng.uniform(-0.0002, 0.0002)), places)
        position = {
            "archived_run_id": None, "archived_at": None, "dead_lettered_run_id": None, "is_canary": False,
            "position_id": pid, "signal_id": sid, "strategy_id": strategy, "strategy_version": version,
            "symbol": symbol, "asset_class": asset_class, "side": "long" if long else "short", "qty": qty,
            "entry_order_id": f"{pid}-entry", "exit_order_id": f"{pid}-exit",
            "entry_filled_avg_price": bot_entry, "exit_filled_avg_price": bot_exit,
            "opened_at": _iso(opened), "closed_at": _iso(closed), "status": "CLOSED",
            "est_fee_usd": _money(rng.uniform(0, 2), 2), "multiplier": "1",
        }
        if i % BAD_EVERY == BAD_EVERY // 2:
            _spoil(position, BAD_KINDS[(i // BAD_EVERY) % len(BAD_KINDS)])
        buy, sell = ("buy", "sell") if long else ("sell", "buy")
        orders = [
            (f"{pid}-entry", symbol, asset_class, buy, qty, _money(entry, places), _iso(opened), _iso(opened)),
            (f"{pid}-exit", symbol, asset_class, sell, qty, _money(exit_, places), _iso(closed), _iso(closed)),
        ]
        yield pid, position, signal, orders


def _spoil(position: dict[str, Any], kind: str) -> None:
    if kind == "negative_qty":
        position["qty"] = "-3"
    elif kind == "lowercase_symbol":
        position["symbol"] = position["symbol"].lower()
    elif kind == "closed_before_open":
        position["closed_at"], position["opened_at"] = position["opened_at"], position["closed_at"]
    elif kind == "price_not_a_number":
        position["exit_filled_avg_price"] = "n/a"
    elif kind == "unknown_field":
        position["comment"] = "manual close"
    elif kind == "scd_conflict":
        position["strategy_version"] = "9.9"


def strategy_docs() -> dict[str, dict[str, Any]]:
    """Every strategy version document (``strategies`` collection)."""
    out = {}
    for strategy in STRATEGIES:
        for version, deployed in VERSIONS:
            out[f"{strategy}:{version}"] = {
                "archived_run_id": None, "archived_at": None, "dead_lettered_run_id": None, "is_canary": False,
                "strategy_id": strategy, "version": version, "params": {"lookback": 20, "v": version},
                "deployed_at": _iso(deployed),
            }
    return out


def write_dataset(directory: Path, n: int, chunk: int = 50_000) -> dict[str, int]:
    """Write ``hot.sqlite`` and ``broker.sqlite`` for ``n`` positions into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    hot = SqliteHotStore(directory / "hot.sqlite")
    broker = SimulatedBroker(directory / "broker.sqlite", clock=lambda: NOW)
    broker.close()
    hot.put_many("strategies", strategy_docs())
    db = sqlite3.connect(str(directory / "broker.sqlite"), isolation_level=None)
    positions: dict[str, dict[str, Any]] = {}
    signals: dict[str, dict[str, Any]] = {}
    orders: list[tuple] = []

    def flush() -> None:
        hot.put_many("live_positions", positions)
        hot.put_many("live_signals", signals)
        db.execute("BEGIN")
        db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)", orders)
        db.execute("COMMIT")
        positions.clear()
        signals.clear()
        orders.clear()

    for pid, position, signal, order_rows in generate_records(n):
        positions[pid] = position
        signals[signal["signal_id"]] = signal
        orders.extend(order_rows)
        if len(positions) >= chunk:
            flush()
    flush()
    db.close()
    hot.close()
    return {"positions": n, "bad": sum(1 for i in range(n) if i % BAD_EVERY == BAD_EVERY // 2)}


def cache_root() -> Path:
    """Where generated templates are kept between runs (``GOLDTHREAD_BENCH_CACHE`` overrides)."""
    return Path(os.environ.get("GOLDTHREAD_BENCH_CACHE", Path(tempfile.gettempdir()) / "goldthread-bench"))


def code_key() -> str:
    """A short hash of the adapters that write the template files (a changed file format means new data)."""
    import hashlib

    import goldthread.adapters.sim_broker as broker_module
    import goldthread.adapters.sqlite_hot_store as hot_module

    digest = hashlib.sha256()
    for module in (hot_module, broker_module):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:10]


def template(n: int) -> Path:
    """The template directory for ``n`` positions, generated on first use."""
    directory = cache_root() / f"trades-v{GENERATOR_VERSION}-{code_key()}-{n}"
    if not (directory / "done.json").exists():
        building = directory.with_name(f"{directory.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        info = write_dataset(building, n)
        (building / "done.json").write_text(json.dumps(info))
        shutil.rmtree(directory, ignore_errors=True)
        building.rename(directory)
    return directory


def copy_template(n: int, target: Path) -> Path:
    """A fresh copy of the template for ``n`` positions in ``target`` (the measured run mutates it)."""
    source = template(n)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("hot.sqlite", "broker.sqlite"):
        shutil.copyfile(source / name, target / name)
    return target


def load_documents(directory: Path, collection: str) -> list[tuple[str, dict[str, Any]]]:
    """Every document of ``collection`` parsed from the hot store's JSON (for the references)."""
    db = sqlite3.connect(str(directory / "hot.sqlite"))
    rows = db.execute("SELECT id, data FROM docs WHERE collection=? ORDER BY id", (collection,)).fetchall()
    db.close()
    return [(doc_id, json.loads(data)) for doc_id, data in rows]


def prepare(n: int) -> dict[str, object]:
    """Generate the template for ``n`` positions if missing (run by the command before any measurement)."""
    import time

    started = time.perf_counter()
    directory = template(n)
    return {"seconds": time.perf_counter() - started, "items": n, "path": str(directory)}
