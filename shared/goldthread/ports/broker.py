"""The broker port: orders, account, option Greeks and fee activities (Alpaca in production)."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from goldthread.models.broker import BrokerAccount, BrokerOrder, FeeActivity, OptionPosition


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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
