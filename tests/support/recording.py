"""Test doubles shared by several test files: a market-data source that records its requests, and the fake
Alpaca server with the real alpaca-py broker adapter pointed at it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
from goldthread.adapters.alpaca_broker import AlpacaBroker, AlpacaRetryPolicy
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.ports.market_data import Bars

from tests.fakes.alpaca_server import FakeAlpaca

KEY = "PKTESTKEYID7Q2W"
SECRET = "sk-super-secret-value-9f8e7d"
FAST = AlpacaRetryPolicy(timeout=0.25, max_attempts=3, initial_backoff=0.001, max_backoff=0.01)
"""Retries without waiting, so a test of the retry path takes milliseconds."""


class CountingMarketData(SyntheticMarketData):
    """Synthetic bars, recording every request as (symbols, start, end)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[tuple[str, ...], dt.datetime, dt.datetime]] = []

    def get_bars(self, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime) -> dict[str, Bars]:
        self.requests.append((tuple(symbols), start, end))
        return super().get_bars(symbols, timeframe, start, end)

    def per_symbol(self, since: int = 0) -> Counter[str]:
        """Requests per symbol since request number ``since``."""
        return Counter(s for symbols, _, _ in self.requests[since:] for s in symbols)


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    """The local Alpaca server, answering only the test's key."""
    with FakeAlpaca(api_key=KEY, secret_key=SECRET) as server:
        yield server


@pytest.fixture
def broker(fake: FakeAlpaca) -> Iterator[AlpacaBroker]:
    """The real Alpaca adapter (alpaca-py) pointed at ``fake``."""
    adapter = AlpacaBroker(KEY, SECRET, base_url=fake.url, data_url=fake.url, policy=FAST, env={})
    yield adapter
    adapter.close()
