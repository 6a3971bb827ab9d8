"""A scriptable local Alpaca: a threaded HTTP server answering with Alpaca's documented JSON shapes.

Point the real alpaca-py clients at ``FakeAlpaca.url`` (``url_override``; both the trading and the data
base URL) and the adapters run their production code paths. Endpoints::

    GET /v2/orders/{id}               an order, 404 {"code": 40410000, ...} for an unknown id
    GET /v2/account                   the account
    GET /v2/positions                 open positions
    GET /v2/account/portfolio/history ?timeframe=1D &start &end (RFC 3339, inclusive): parallel arrays
                                      timestamp (Unix seconds), equity, profit_loss, profit_loss_pct,
                                      with base_value, base_value_asof, timeframe
    GET /v2/account/activities        ?activity_types=FEE,CFEE &date | &after &until, direction,
                                      page_size (<= 100), page_token (the last id of the previous page)
    GET /v1beta1/options/snapshots    ?symbols=...  {"snapshots": {...}, "next_page_token": ...}
    GET /v2/stocks/bars               ?symbols, timeframe, start, end, limit, page_token, feed, adjustment
    GET /v1beta3/crypto/us/bars       same, for pairs such as BTC/USD

Every request must carry ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` equal to ``api_key`` /
``secret_key`` (else 401). Tests script it::

    with FakeAlpaca(bars_page_size=2) as alpaca:
        order = alpaca.add_order(symbol="AAPL", filled_avg_price="185.12")
        alpaca.fail("/v2/orders/*", status=429, times=1, retry_after=0)   # then a normal answer
        alpaca.delay("/v2/account", seconds=1.0)                         # longer than the timeout
        alpaca.malformed("/v2/positions")                                # 200 with broken JSON
        ...
        assert alpaca.count(f"/v2/orders/{order['id']}") == 2
        assert alpaca.requests_to("/v2/stocks/bars")[0].query["feed"] == "iex"

Faults match a path exactly, or every path starting with the prefix before a trailing ``*``; they are
used up in the order they were added, ``times`` each (``times=None``: forever).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import threading
import time
import uuid
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received: method, path, decoded query (last value wins) and headers."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Fault:
    """A scripted misbehaviour for matching paths: an error status, a delay or malformed JSON."""

    pattern: str
    kind: str  # "status" | "delay" | "malformed"
    times: int | None = 1
    status: int = 500
    retry_after: float | None = None
    body: str | None = None
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        """True when this fault applies to ``path``."""
        if self.pattern.endswith("*"):
            return path.startswith(self.pattern[:-1])
        return path == self.pattern


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: str) -> dt.datetime:
    """An RFC 3339 time from a query ('+' may arrive decoded as a space); naive means UTC."""
    parsed = dt.datetime.fromisoformat(value.replace(" ", "+"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    return int(base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)[1])


class FakeAlpaca:
    """A local Alpaca Trading + Market Data API on 127.0.0.1 (ephemeral port) for tests.

    Seed it with ``add_order`` / ``set_account`` / ``add_position`` / ``set_snapshot`` /
    ``add_activity`` / ``add_bars``; script faults with ``fail`` / ``delay`` / ``malformed``; inspect
    ``requests``, ``count(path)`` and ``requests_to(path)``. Use as a context manager (or
    ``start``/``stop``). ``bars_page_size`` and ``snapshots_page_size`` force server-side paging.
    """

    def __init__(
        self,
        *,
        api_key: str = "fake-key-id",
        secret_key: str = "fake-secret-key",
        bars_page_size: int = 10_000,
        snapshots_page_size: int = 1000,
    ) -> None:
        self.api_key = api_key
        self.secret_key = secret_key
        self.bars_page_size = bars_page_size
        self.snapshots_page_size = snapshots_page_size
        self.orders: dict[str, Json] = {}
        self.account: Json = self._default_account()
        self.positions: list[Json] = []
        self.snapshots: dict[str, Json] = {}
        self.activities: list[Json] = []
        self.bars: dict[tuple[str, str | None], list[Json]] = {}
        self.history: list[Json] = []
        self.history_base: Json = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeAlpaca:
        """Start serving on an ephemeral port in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        serve = functools.partial(self._server.serve_forever, poll_interval=0.02)  # quick shutdown
        self._thread = threading.Thread(target=serve, name="fake-alpaca", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAlpaca:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for ``url_override`` (no API version)."""
        if self._server is None:
            raise RuntimeError("FakeAlpaca is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- seeding -------------------------------------------------------------------------------------

    def add_order(
        self,
        *,
        order_id: str | None = None,
        symbol: str = "AAPL",
        side: str = "buy",
        qty: str = "10",
        status: str = "filled",
        filled_qty: str | None = None,
        filled_avg_price: str | None = "185.12",
        filled_at: dt.datetime | None = dt.datetime(2024, 1, 2, 15, 30, tzinfo=dt.UTC),
        asset_class: str = "us_equity",
        **extra: Any,
    ) -> Json:
        """Add an order as ``GET /v2/orders/{id}`` returns it (numbers as strings); returns the JSON."""
        created = dt.datetime(2024, 1, 2, 15, 29, 59, tzinfo=dt.UTC)
        oid = order_id or str(uuid.uuid4())
        order: Json = {
            "id": oid, "client_order_id": f"gt-{oid[:8]}", "created_at": _iso(created), "updated_at": _iso(created),
            "submitted_at": _iso(created), "filled_at": _iso(filled_at) if filled_at else None,
            "expired_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol,
            "asset_class": asset_class, "notional": None, "qty": qty,
            "filled_qty": filled_qty if filled_qty is not None else (qty if status == "filled" else "0"),
            "filled_avg_price": filled_avg_price, "order_class": "simple", "order_type": "market", "type": "market",
            "side": side, "time_in_force": "day", "limit_price": None, "stop_price": None, "status": status,
            "extended_hours": False, "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
            "position_intent": "buy_to_open" if side == "buy" else "sell_to_close",
        }
        order.update(extra)
        with self._lock:
            self.orders[oid.lower()] = order
        return order

    @staticmethod
    def _default_account() -> Json:
        return {
            "id": "904837e3-3b76-47ec-b432-046db621571b", "account_number": "PA3ABCDEFGH", "status": "ACTIVE",
            "crypto_status": "ACTIVE", "currency": "USD", "buying_power": "200000", "regt_buying_power": "200000",
            "non_marginable_buying_power": "100000", "cash": "100000", "accrued_fees": "0",
            "portfolio_value": "100000", "pattern_day_trader": False, "trading_blocked": False,
            "transfers_blocked": False, "account_blocked": False, "created_at": "2023-01-03T14:00:00Z",
            "trade_suspended_by_user": False, "multiplier": "2", "shorting_enabled": True, "equity": "100000",
            "last_equity": "99000", "long_market_value": "0", "short_market_value": "0", "initial_margin": "0",
            "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0,
            "options_buying_power": "100000", "options_approved_level": 3, "options_trading_level": 3,
        }

    def set_account(self, **fields: Any) -> Json:
        """Change account fields (``None`` removes one); returns the account JSON."""
        with self._lock:
            for key, value in fields.items():
                if value is None:
                    self.account.pop(key, None)
                else:
                    self.account[key] = value
            return dict(self.account)

    def add_position(
        self, symbol: str, qty: str, *, asset_class: str = "us_option", side: str | None = None,
        avg_entry_price: str = "2.50", **extra: Any,
    ) -> Json:
        """Add an open position; ``qty`` is signed as Alpaca reports it (negative when short)."""
        side = side or ("short" if qty.startswith("-") else "long")
        position: Json = {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol,
            "exchange": "" if asset_class == "us_option" else ("CRYPTO" if asset_class == "crypto" else "NASDAQ"),
            "asset_class": asset_class, "asset_marginable": asset_class == "us_equity",
            "avg_entry_price": avg_entry_price, "qty": qty, "side": side, "market_value": "0",
            "cost_basis": "0", "unrealized_pl": "0", "unrealized_plpc": "0", "unrealized_intraday_pl": "0",
            "unrealized_intraday_plpc": "0", "current_price": avg_entry_price, "lastday_price": avg_entry_price,
            "change_today": "0", "qty_available": qty,
        }
        position.update(extra)
        with self._lock:
            self.positions.append(position)
        return position

    def set_snapshot(
        self, symbol: str, *, delta: float | None, gamma: float = 0.0, theta: float = 0.0, vega: float = 0.0,
        rho: float = 0.0, implied_volatility: float = 0.3,
    ) -> Json:
        """Set an option contract's snapshot; ``delta=None`` leaves out the Greeks (no quote yet)."""
        snapshot: Json = {
            "latestQuote": {"ap": 2.6, "as": 10, "ax": "C", "bp": 2.4, "bs": 12, "bx": "C", "c": "A",
                            "t": "2024-01-02T20:59:59.5Z"},
            "latestTrade": {"c": "I", "p": 2.5, "s": 1, "t": "2024-01-02T20:58:00Z", "x": "C"},
        }
        if delta is not None:
            snapshot["impliedVolatility"] = implied_volatility
            snapshot["greeks"] = {"delta": delta, "gamma": gamma, "theta": theta, "vega": vega, "rho": rho}
        with self._lock:
            self.snapshots[symbol] = snapshot
        return snapshot

    def add_activity(
        self, activity_type: str, day: dt.date, net_amount: str, *, activity_id: str | None = None, **extra: Any,
    ) -> Json:
        """Add a non-trade activity (FEE, CFEE, DIV ...) posted on ``day``; ids sort in posting order."""
        with self._lock:
            n = len(self.activities)
            aid = activity_id or f"{day:%Y%m%d}{160000000 + n:09d}::{uuid.uuid5(uuid.NAMESPACE_OID, str(n))}"
            activity: Json = {
                "id": aid, "activity_type": activity_type, "date": day.isoformat(), "net_amount": net_amount,
                "description": extra.pop("description", f"{activity_type} posted"), "status": "executed",
            }
            activity.update(extra)
            self.activities.append(activity)
        return activity

    def add_bars(self, symbol: str, bars: list[Json], *, timeframe: str | None = None) -> None:
        """Add bars (``t`` as ISO UTC, ``o h l c v n vw``) for ``symbol``, for one or every timeframe."""
        with self._lock:
            self.bars.setdefault((symbol, timeframe), []).extend(bars)

    def add_history_point(
        self, day: dt.date, equity: float | None, *, label: dt.time = dt.time(), profit_loss: float | None = None,
        profit_loss_pct: float | None = None,
    ) -> Json:
        """Add a 1D portfolio history point for ``day``, labelled at ``label`` New York time (Alpaca's
        documented label is midnight); ``equity=None`` is a day without data (Alpaca sends null)."""
        stamp = int(dt.datetime.combine(day, label, NEW_YORK).timestamp())
        point: Json = {"timestamp": stamp, "equity": equity, "profit_loss": profit_loss,
                       "profit_loss_pct": profit_loss_pct}
        with self._lock:
            self.history.append(point)
            self.history.sort(key=lambda p: p["timestamp"])
        return point

    def set_history_base(self, base_value: float | None, base_value_asof: dt.date | None = None) -> None:
        """The response's ``base_value`` and ``base_value_asof`` (None: left out of the response)."""
        with self._lock:
            self.history_base = {"base_value": base_value, "base_value_asof": base_value_asof}

    @staticmethod
    def bar(t: dt.datetime, close: float, *, volume: float = 1000.0) -> Json:
        """A bar in Alpaca's shape opening at ``t``, with open/high/low around ``close``."""
        return {"t": _iso(t), "o": close - 0.5, "h": close + 1.0, "l": close - 1.0, "c": close, "v": volume,
                "n": 10, "vw": close}

    # -- faults --------------------------------------------------------------------------------------

    def fail(
        self, pattern: str, status: int = 500, *, times: int | None = 1, retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer ``status`` (with ``Retry-After`` if given) on matching paths, ``times`` times."""
        self._add_fault(Fault(pattern, "status", times, status=status, retry_after=retry_after, body=body))

    def delay(self, pattern: str, seconds: float, *, times: int | None = 1) -> None:
        """Wait ``seconds`` before answering normally (longer than the client timeout: it times out)."""
        self._add_fault(Fault(pattern, "delay", times, seconds=seconds))

    def malformed(self, pattern: str, *, times: int | None = 1) -> None:
        """Answer 200 with a truncated JSON body on matching paths."""
        self._add_fault(Fault(pattern, "malformed", times))

    def _add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # -- inspection ----------------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (exact, or a prefix ending in ``*``); all requests if None."""
        with self._lock:
            if path is None:
                return sum(self._counts.values())
            if path.endswith("*"):
                return sum(n for p, n in self._counts.items() if p.startswith(path[:-1]))
            return self._counts[path]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests for exactly ``path``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- serving -------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            self._counts[path] += 1
            self.requests.append(RecordedRequest("GET", path, query, dict(handler.headers.items())))
        try:
            if (handler.headers.get("APCA-API-KEY-ID"), handler.headers.get("APCA-API-SECRET-KEY")) != (
                self.api_key, self.secret_key,
            ):
                self._send(handler, 401, {"code": 40110000, "message": "request is not authorized"})
                return
            fault = self._take_fault(path)
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                body = fault.body if fault.body is not None else json.dumps(
                    {"code": fault.status * 100000, "message": f"scripted HTTP {fault.status}"})
                self._send_raw(handler, fault.status, body, headers)
                return
            if fault is not None and fault.kind == "malformed":
                self._send_raw(handler, 200, '{"id": "truncated", "symbol": ')
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
            status, body = self._route(path, query)
            self._send(handler, status, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away

    def _route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            if path.startswith("/v2/orders/"):
                order = self.orders.get(path.rsplit("/", 1)[1].lower())
                return (200, order) if order else (404, {"code": 40410000, "message": "order not found"})
            if path == "/v2/account":
                return 200, dict(self.account)
            if path == "/v2/positions":
                return 200, list(self.positions)
            if path == "/v2/account/portfolio/history":
                return self._portfolio_history(q)
            if path.startswith("/v2/account/activities"):
                return 200, self._activities(path, q)
            if path == "/v1beta1/options/snapshots":
                return 200, self._snapshots(q)
            if path in ("/v2/stocks/bars", "/v1beta3/crypto/us/bars"):
                return self._bars(q)
        return 404, None  # Alpaca's router answers unknown paths with plain text, not its JSON error

    def _activities(self, path: str, q: dict[str, str]) -> list[Json]:
        types = set(filter(None, q.get("activity_types", "").split(",")))
        if path.count("/") == 4:  # /v2/account/activities/{type}
            types = {path.rsplit("/", 1)[1]}
        rows = [a for a in self.activities if not types or a["activity_type"] in types]
        if "date" in q:
            rows = [a for a in rows if str(a["date"])[:10] == q["date"]]
        if "after" in q:
            rows = [a for a in rows if str(a["date"])[:10] > q["after"][:10]]
        if "until" in q:
            rows = [a for a in rows if str(a["date"])[:10] <= q["until"][:10]]
        rows.sort(key=lambda a: a["id"], reverse=q.get("direction", "desc") == "desc")
        if q.get("page_token"):
            ids = [a["id"] for a in rows]
            start = ids.index(q["page_token"]) + 1 if q["page_token"] in ids else len(rows)
            rows = rows[start:]
        size = min(int(q.get("page_size") or 100), 100)
        return rows[:size]

    def _portfolio_history(self, q: dict[str, str]) -> tuple[int, Json]:
        if q.get("timeframe", "1D") != "1D":
            return 422, {"code": 42210000, "message": "this fake serves timeframe 1D only"}
        start = _parse_time(q["start"]).timestamp() if "start" in q else float("-inf")
        end = _parse_time(q["end"]).timestamp() if "end" in q else float("inf")
        points = [p for p in self.history if start <= p["timestamp"] <= end]
        series = ("timestamp", "equity", "profit_loss", "profit_loss_pct")
        body: Json = {key: [p[key] for p in points] for key in series}
        base = self.history_base.get("base_value")
        if base is None:  # Alpaca: the earliest non-zero point when no earlier close exists
            base = next((p["equity"] for p in points if p["equity"]), 0)
        body["base_value"] = base
        if self.history_base.get("base_value_asof") is not None:
            body["base_value_asof"] = self.history_base["base_value_asof"].isoformat()
        body["timeframe"] = "1D"
        return 200, body

    def _page(self, items: list[tuple[str, Any]], q: dict[str, str], server_size: int) -> tuple[list[Any], str | None]:
        size = min(int(q.get("limit") or server_size), server_size)
        start = _offset(q.get("page_token"))
        end = start + size
        return items[start:end], (_token(end) if end < len(items) else None)

    def _snapshots(self, q: dict[str, str]) -> Json:
        symbols = sorted(s for s in q.get("symbols", "").split(",") if s in self.snapshots)
        page, token = self._page([(s, self.snapshots[s]) for s in symbols], q, self.snapshots_page_size)
        return {"snapshots": dict(page), "next_page_token": token}

    def _bars(self, q: dict[str, str]) -> tuple[int, Json]:
        if "timeframe" not in q or "symbols" not in q:
            return 400, {"code": 40010001, "message": "symbols and timeframe are required"}
        start = _parse_time(q["start"]) if "start" in q else None
        end = _parse_time(q["end"]) if "end" in q else None
        flat: list[tuple[str, Json]] = []
        for symbol in sorted(set(q["symbols"].split(","))):
            rows = self.bars.get((symbol, q["timeframe"])) or self.bars.get((symbol, None)) or []
            for bar in sorted(rows, key=lambda b: b["t"]):
                t = _parse_time(bar["t"].replace("Z", "+00:00"))
                if (start is None or t >= start) and (end is None or t <= end):  # Alpaca's end is inclusive
                    flat.append((symbol, bar))
        page, token = self._page(flat, q, self.bars_page_size)
        grouped: dict[str, list[Json]] = {}
        for symbol, bar in page:
            grouped.setdefault(symbol, []).append(bar)
        return 200, {"bars": grouped, "next_page_token": token}

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        FakeAlpaca._send_raw(handler, status, "404 page not found" if body is None else json.dumps(body))

    @staticmethod
    def _send_raw(
        handler: BaseHTTPRequestHandler, status: int, body: str, headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


def iter_minutes(start: dt.datetime, n: int, step: dt.timedelta = dt.timedelta(minutes=1)) -> Iterator[dt.datetime]:
    """``n`` timestamps from ``start`` spaced ``step`` apart (helper for seeding bars)."""
    for i in range(n):
        yield start + i * step


__all__ = ["FakeAlpaca", "Fault", "RecordedRequest", "iter_minutes"]
