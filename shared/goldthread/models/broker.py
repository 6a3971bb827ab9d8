"""Models of what a broker tells us: orders, the account, option positions, fee activities and the
account's daily equity history.

Adapters (the simulator, Alpaca) return these, validated, so loop code never sees a vendor type.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from goldthread.models.types import Identifier, Money, Quantity, Symbol, Text, UtcDatetime


class BrokerModel(BaseModel):
    """Base of broker records: immutable, unknown fields ignored (vendors add fields freely)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderSide(StrEnum):
    """Order direction at the broker."""

    BUY = "buy"
    SELL = "sell"


class BrokerOrder(BrokerModel):
    """An order as the broker reports it; ``filled_avg_price`` is None until filled."""

    order_id: Identifier
    symbol: Symbol
    side: OrderSide
    status: str = Field(max_length=32, description="filled, partially_filled, new, canceled ...")
    filled_qty: Quantity = Field(ge=0)
    filled_avg_price: Money | None = Field(default=None, ge=0)
    filled_at: UtcDatetime | None = None

    @property
    def is_filled(self) -> bool:
        """True when the broker reports a usable fill (positive quantity and price)."""
        return bool(self.filled_qty > 0 and self.filled_avg_price and self.filled_avg_price > 0)


class BrokerAccount(BrokerModel):
    """Account balances, as Alpaca's ``/v2/account`` reports them."""

    account_id: Identifier
    equity: Money
    last_equity: Money
    cash: Money
    buying_power: Money
    initial_margin: Money
    maintenance_margin: Money
    long_market_value: Money
    short_market_value: Money


class OptionPosition(BrokerModel):
    """An open option position with the contract's Greeks (per contract, per unit of underlying)."""

    symbol: Symbol
    qty: Quantity = Field(description="Signed: negative for a short position.")
    multiplier: Quantity = Field(default=Decimal(100), gt=0)
    delta: Money
    gamma: Money
    theta: Money
    vega: Money


class FeeActivity(BrokerModel):
    """A FEE or CFEE account activity posted by the broker at end of day.

    FEE: regulatory fees in USD (``net_amount`` negative), not tied to an order. CFEE: a crypto fee
    charged in the received asset: ``qty`` (negative, in the asset) at ``price`` (USD per unit), with
    ``net_amount`` 0 when the asset is not USD.
    """

    activity_id: Identifier
    activity_type: str = Field(pattern=r"^(FEE|CFEE)$")
    date: dt.date
    net_amount: Money
    description: Text = ""
    symbol: Symbol | None = None
    qty: Quantity | None = None
    price: Money | None = None
    status: str = Field(default="executed", max_length=16)


NEW_YORK = ZoneInfo("America/New_York")
"""The exchange time zone Alpaca's daily (1D) portfolio history is labelled in."""


def new_york_midnight(day: dt.date) -> dt.datetime:
    """The start of ``day`` in New York, in UTC (04:00 UTC under daylight time, 05:00 UTC otherwise)."""
    return dt.datetime.combine(day, dt.time(), NEW_YORK).astimezone(dt.UTC)


class EquityPoint(BrokerModel):
    """One trading day of the account's portfolio history (Alpaca ``GET /v2/account/portfolio/history``,
    timeframe ``1D``): the account's equity at the end of that day.

    ``timestamp`` is the broker's label of the point, in UTC. Alpaca documents 1D points as labelled at the
    start of the New York day (midnight America/New_York = 04:00 or 05:00 UTC); with some reporting modes
    the label has been seen later the same New York day (20:00). Either way the point describes the New
    York day of its label, ``trading_day``. Points whose equity is null (no data) are left out by the
    adapters; a zero equity is kept as the broker sent it (an account not funded yet).
    """

    timestamp: UtcDatetime
    equity: Money
    profit_loss: Money | None = Field(default=None, description="equity - base_value.")
    profit_loss_pct: Money | None = Field(default=None, description="equity / base_value - 1 (a fraction).")
    base_value: Money | None = Field(
        default=None, description="The response's P/L basis: the closing equity of base_value_asof, else the "
        "earliest point's."
    )
    base_value_asof: dt.date | None = Field(
        default=None, description="The trading day whose closing equity base_value is; None when the account "
        "had no non-zero close before the period."
    )

    @property
    def trading_day(self) -> dt.date:
        """The New York trading day this point describes (the day of its label in New York)."""
        return self.timestamp.astimezone(NEW_YORK).date()
