"""The broker port: orders, account, option Greeks, fee activities and the account's daily equity history
(Alpaca in production)."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from goldthread.models.broker import BrokerAccount, BrokerOrder, EquityPoint, FeeActivity, OptionPosition


class Broker(ABC):
    """Abstract broker. Implementations: ``SimulatedBroker`` (embedded), ``AlpacaBroker``.

    Errors: ``BrokerUnavailableError`` (transient: timeouts, 429, 5xx) and ``BrokerRequestError``
    (permanent), each naming the order or symbol concerned.
    """

    name: ClassVar[str]

    @abstractmethod
    def get_orders(self, order_ids: Sequence[str]) -> dict[str, BrokerOrder]:
        """Orders by id; an id the broker does not know is absent from the result."""

    @abstractmethod
    def get_account(self) -> BrokerAccount:
        """The account's balances now."""

    @abstractmethod
    def get_option_positions(self) -> list[OptionPosition]:
        """Open option positions with their contracts' Greeks."""

    @abstractmethod
    def get_fee_activities(self, day: dt.date) -> list[FeeActivity]:
        """FEE and CFEE activities posted for trading day ``day``."""

    @abstractmethod
    def get_portfolio_history(self, start: dt.date, end: dt.date) -> list[EquityPoint]:
        """The account's daily equity (timeframe 1D) for the trading days ``start`` to ``end`` inclusive (New
        York days), oldest first: one point per day the market was open and the account existed.

        Only the equity (and the broker's P/L against its base value) has a history: margins, buying power,
        positions and Greeks exist only now (``get_account``, ``get_option_positions``). Points with a null
        equity are left out; a zero equity is kept. Every point carries the response's ``base_value`` and
        ``base_value_asof``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
