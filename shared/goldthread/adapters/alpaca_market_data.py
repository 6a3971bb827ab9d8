"""Alpaca market-data adapter: stock and crypto OHLCV bars through alpaca-py, as numpy arrays.

Stocks come from ``/v2/stocks/bars`` (``StockHistoricalDataClient``), crypto pairs (symbols with a
``/``, such as ``BTC/USD``) from ``/v1beta3/crypto/{location}/bars`` (``CryptoHistoricalDataClient``).
The stock ``feed`` (``iex`` on the free plan, ``sip`` with a subscription) and ``adjustment`` (``raw``,
``split``, ``dividend``, ``all``) change the prices, so they are constructor options and ``source_of``
names them for the rows that store the bars (``alpaca-iex``, ``alpaca-sip-all``, ``alpaca-crypto-us``).

Several symbols go in one request (up to ``symbols_per_request``); each page is fetched once and
retried on its own (see ``fetch_pages``). Timeouts, retries, the rate limit, credentials and error
translation are shared with the broker adapter (``goldthread.adapters.alpaca_broker``).

Alpaca's ``end`` is inclusive while the port's is exclusive, so bars opening at ``end`` are dropped.
Bar timestamps are the bar's open time; daily crypto bars have moved between Chicago and UTC midnight
over API versions, so callers that care should check ``ts`` or build days from hourly bars.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from goldthread.adapters.alpaca_broker import (
    DATA_URL_ENV,
    AlpacaCaller,
    AlpacaRetryPolicy,
    TokenBucket,
    fetch_pages,
    harden_client,
    resolve_credentials,
    resolve_url,
)
from goldthread.errors import BrokerRequestError, ConfigError
from goldthread.ports.market_data import Bars, MarketData

TIMEFRAMES = ("1Min", "1Hour", "1Day")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def is_crypto(symbol: str) -> bool:
    """Crypto pairs are written ``BASE/QUOTE``; stock tickers never contain a slash."""
    return "/" in symbol


class AlpacaMarketData(MarketData):
    """The ``MarketData`` port on Alpaca's historical bars API.

    ``feed`` and ``adjustment`` apply to stocks and are validated against alpaca-py's enums;
    ``crypto_location`` is the crypto venue group (``us``). ``data_url`` (else
    ``GOLDTHREAD_ALPACA_DATA_URL``) overrides ``https://data.alpaca.markets``.
    """

    name: ClassVar[str] = "alpaca"

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        feed: str = "iex",
        adjustment: str = "raw",
        crypto_location: str = "us",
        data_url: str | None = None,
        symbols_per_request: int = 100,
        page_size: int = 10_000,
        policy: AlpacaRetryPolicy | None = None,
        rate_limiter: TokenBucket | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from alpaca.data.enums import Adjustment, CryptoFeed, DataFeed
        from alpaca.data.historical.crypto import CryptoHistoricalDataClient
        from alpaca.data.historical.stock import StockHistoricalDataClient

        env = os.environ if env is None else env
        key, secret = resolve_credentials(api_key, secret_key, env)
        try:
            self._feed = DataFeed(feed)
            self._adjustment = Adjustment(adjustment)
            self._crypto_feed = CryptoFeed(crypto_location)
        except ValueError as exc:
            raise ConfigError(f"invalid Alpaca market-data option: {exc}") from exc
        if not 1 <= symbols_per_request <= 1000 or not 1 <= page_size <= 10_000:
            raise ConfigError("symbols_per_request must be 1..1000 and page_size 1..10000")
        self.symbols_per_request = symbols_per_request
        self.page_size = page_size
        self.data_url = resolve_url(data_url, env, DATA_URL_ENV)
        self.policy = policy or AlpacaRetryPolicy()
        self._caller = AlpacaCaller(self.policy, rate_limiter or TokenBucket(), (key, secret))
        self._stocks = StockHistoricalDataClient(key, secret, raw_data=True, url_override=self.data_url)
        self._crypto = CryptoHistoricalDataClient(key, secret, raw_data=True, url_override=self.data_url)
        for client in (self._stocks, self._crypto):
            harden_client(client, self.policy.timeout)

    @property
    def feed(self) -> str:
        """The stock feed the prices come from (``iex`` or ``sip`` ...)."""
        return str(self._feed.value)

    @property
    def adjustment(self) -> str:
        """The corporate-action adjustment applied to stock prices (``raw`` ...)."""
        return str(self._adjustment.value)

    @property
    def crypto_location(self) -> str:
        """The crypto venue group bars come from (``us``)."""
        return str(self._crypto_feed.value)

    def source_of(self, symbol: str) -> str:
        """Where ``symbol``'s bars come from, for lineage: ``alpaca-iex``, ``alpaca-sip-split``, ``alpaca-crypto-us``.

        The value fits ``MarketBar.source``.
        """
        if is_crypto(symbol):
            return f"alpaca-crypto-{self.crypto_location}"
        suffix = "" if self.adjustment == "raw" else f"-{self.adjustment}"
        return f"alpaca-{self.feed}{suffix}"

    def __repr__(self) -> str:
        return f"AlpacaMarketData(feed={self.feed!r}, adjustment={self.adjustment!r}, data_url={self.data_url!r})"

    def get_bars(
        self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Bars]:
        """Bars per symbol with open time in ``[start, end)``, sorted by time; no data -> empty ``Bars``.

        ``timeframe`` is ``1Min``, ``1Hour`` or ``1Day``; ``start`` and ``end`` must be timezone-aware.
        Stocks and crypto pairs may be mixed. Transient failures raise ``BrokerUnavailableError`` and
        refusals ``BrokerRequestError``, naming the symbols of the failing request.
        """
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe {timeframe!r} must be one of {', '.join(TIMEFRAMES)}")
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        wanted = list(dict.fromkeys(symbols))
        raw: dict[str, list[Any]] = {}
        stocks = [s for s in wanted if not is_crypto(s)]
        crypto = [s for s in wanted if is_crypto(s)]
        for group, is_pair in ((stocks, False), (crypto, True)):
            for i in range(0, len(group), self.symbols_per_request):
                raw.update(self._fetch(group[i : i + self.symbols_per_request], is_pair, timeframe, start, end))
        lo, hi = _ns(start), _ns(end)
        return {s: _to_bars(s, raw.get(s) or [], lo, hi, timeframe) for s in wanted}

    def _fetch(
        self, symbols: list[str], is_pair: bool, timeframe: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, list[Any]]:
        from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

        unit = {"1Min": TimeFrameUnit.Minute, "1Hour": TimeFrameUnit.Hour, "1Day": TimeFrameUnit.Day}[timeframe]
        frame = TimeFrame(1, unit)
        what = f"{timeframe} bars for {','.join(symbols)}"
        if is_pair:
            request: Any = CryptoBarsRequest(symbol_or_symbols=symbols, timeframe=frame, start=start, end=end)
            client: Any = self._crypto
            path = f"/crypto/{self.crypto_location}/bars"
        else:
            request = StockBarsRequest(
                symbol_or_symbols=symbols, timeframe=frame, start=start, end=end,
                feed=self._feed, adjustment=self._adjustment,
            )
            client = self._stocks
            path = "/stocks/bars"
        params = {**request.to_request_fields(), "limit": self.page_size}
        return fetch_pages(self._caller, client.get, path, params, "bars", what)

    def close(self) -> None:
        """Close the HTTP sessions of both clients."""
        for client in (self._stocks, self._crypto):
            client._session.close()


def _ns(moment: dt.datetime) -> int:
    """Exact int nanoseconds since the epoch (no float rounding)."""
    return ((moment - _EPOCH) // _US) * 1000


def _to_bars(symbol: str, rows: list[Any], lo: int, hi: int, timeframe: str) -> Bars:
    """Alpaca bar dicts (``t o h l c v``) to sorted, de-duplicated ``Bars`` within ``[lo, hi)`` ns, of the
    ``timeframe`` asked for (Alpaca serves exactly that one)."""
    if not rows:
        return Bars.empty(symbol, timeframe)
    try:
        ts = np.fromiter((_ns(dt.datetime.fromisoformat(r["t"])) for r in rows), dtype=np.int64, count=len(rows))
        cols = [np.fromiter((float(r[k]) for r in rows), dtype=np.float64, count=len(rows)) for k in "ohlcv"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokerRequestError(f"bars for {symbol}: Alpaca sent a bar without a valid t/o/h/l/c/v: {exc}") from exc
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    cols = [c[order] for c in cols]
    keep = (ts >= lo) & (ts < hi)
    if len(ts) > 1:
        keep[1:] &= ts[1:] != ts[:-1]  # a bar repeated across pages counts once
    if not keep.any():
        return Bars.empty(symbol, timeframe)
    o, h, low, c, v = (col[keep] for col in cols)
    return Bars(symbol, ts[keep], o, h, low, c, v, timeframe)
