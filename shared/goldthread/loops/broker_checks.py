"""Broker validation of a position (Loop A): the bot's record must agree with its entry and exit orders.

A bot that writes a wrong ``side`` would archive the P&L with its sign inverted; a wrong ``symbol`` would
archive another instrument's fills. So every CLOSED position is compared with the two orders the broker
reports, and each disagreement becomes one field-level error naming the field, the bot's value and the
broker's (``BrokerMismatchError``, reason ``BROKER_MISMATCH``; all of them, not only the first).

The rules:

* **Symbol**: each order's symbol equals the position's, crypto pairs compared without the slash
  (Alpaca reports ``BTC/USD`` or ``BTCUSD``).
* **Side**: a long is bought then sold (entry ``buy``, exit ``sell``); a short is sold then bought back.
* **Filled quantity**: an order that has filled anything (``filled_qty > 0``, whatever its status, so a
  partial fill and a canceled-after-partial-fill alike) must have filled exactly the position's ``qty``:
  the position is what was filled, so after a partial fill the bot must record the partial quantity.
* **Status**: an order with nothing filled is either *not filled yet* (any working status: ``new``,
  ``accepted``, ``pending_new``, ``held``, ``done_for_day`` ...; the row keeps the bot's price and the price
  patch repairs it later, as before) or *finished without a fill* (``canceled``, ``expired``, ``rejected``,
  ``replaced``, or ``filled`` with nothing filled): a mismatch, since the bot claims a fill that never
  happened.
* **Fill times** (orders that report a fill time): the entry fill not before ``opened_at - tolerance``
  and the exit fill not before ``closed_at - tolerance`` (``GOLDTHREAD_FILL_TIME_TOLERANCE_SECONDS``,
  default 300: the bot stamps its record after the order returns, on its own clock); neither more than
  ``MAX_FILL_DELAY`` (4 days) after the bot's time (an equity order placed outside the session fills at
  the next open, after a long weekend up to ~4 days later; the fee patch looks back as far); and the exit
  fill not before the entry fill.

The price discrepancy is not a mismatch: the row records the broker's fill (P&L uses it) beside the
bot's, in basis points, and is flagged beyond ``GOLDTHREAD_PRICE_TOLERANCE_BPS`` (see ``trade_rows``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from goldthread.config import Settings
from goldthread.errors import BrokerMismatchError
from goldthread.models.broker import BrokerOrder, OrderSide
from goldthread.models.hot import LivePosition, Side

MAX_FILL_DELAY = dt.timedelta(days=4)
"""Latest a fill may come after the bot's time: weekend and holiday equity orders fill at the next open."""

FINISHED_WITHOUT_FILL = frozenset({"canceled", "cancelled", "expired", "rejected", "replaced", "filled"})
"""Statuses that, with nothing filled, mean the order will never fill (``filled`` with 0 is contradictory)."""

EXPECTED_SIDES: dict[Side, tuple[OrderSide, OrderSide]] = {
    Side.LONG: (OrderSide.BUY, OrderSide.SELL),
    Side.SHORT: (OrderSide.SELL, OrderSide.BUY),
}
"""(entry side, exit side) of each position side."""


def same_symbol(a: str, b: str) -> bool:
    """Whether two symbols name the same instrument (``BTC/USD`` == ``BTCUSD``)."""
    return a.replace("/", "").upper() == b.replace("/", "").upper()


def has_fill(order: BrokerOrder) -> bool:
    """Whether the broker reports any quantity filled."""
    return order.filled_qty > 0


def never_fills(order: BrokerOrder) -> bool:
    """Nothing filled and a status that says nothing ever will."""
    return not has_fill(order) and order.status.strip().lower() in FINISHED_WITHOUT_FILL


@dataclass(frozen=True)
class FillRules:
    """The tolerances of the checks: from ``Settings`` (``fill_time_tolerance``) and ``MAX_FILL_DELAY``."""

    early: dt.timedelta = dt.timedelta(seconds=300)
    late: dt.timedelta = MAX_FILL_DELAY
    check_times: bool = True

    @classmethod
    def of(cls, settings: Settings) -> FillRules:
        """The rules configured in ``settings``."""
        return cls(early=settings.fill_time_tolerance)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _mismatch(loc: str, bot: object, broker: object, msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "broker_mismatch", "bot": str(bot), "broker": str(broker)}


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def mismatches(p: LivePosition, entry: BrokerOrder, exit_: BrokerOrder | None, rules: FillRules
               ) -> list[dict[str, Any]]:
    """Every field on which ``p`` contradicts its entry and exit orders (empty when they agree).

    ``exit_`` None checks the entry leg alone (an OPEN position, which the price patch may repair).
    """
    errors: list[dict[str, Any]] = []
    legs = [("entry", entry, EXPECTED_SIDES[p.side][0], "opened_at", p.opened_at)]
    if exit_ is not None and p.closed_at is not None:
        legs.append(("exit", exit_, EXPECTED_SIDES[p.side][1], "closed_at", p.closed_at))
    for leg, order, side, time_field, bot_time in legs:
        where = f"({leg} order {order.order_id})"
        if not same_symbol(p.symbol, order.symbol):
            errors.append(_mismatch("symbol", p.symbol, order.symbol, f"{p.symbol} vs broker {order.symbol} {where}"))
        if order.side is not side:
            errors.append(_mismatch("side", p.side.value, order.side.value,
                                    f"{p.side.value} vs broker {order.side.value} {where}: a {p.side.value}'s "
                                    f"{leg} is a {side.value}"))
        if has_fill(order) and order.filled_qty != p.qty:
            errors.append(_mismatch("qty", _text(p.qty), _text(order.filled_qty),
                                    f"{_text(p.qty)} vs broker filled {_text(order.filled_qty)} {where}"))
        if never_fills(order):
            errors.append(_mismatch(f"{leg}_order_id", "filled", f"{order.status} with 0 filled",
                                    f"filled vs broker {order.status} with 0 filled {where}: the fill never happened"))
        if rules.check_times and has_fill(order) and order.filled_at is not None:
            if order.filled_at < bot_time - rules.early:
                errors.append(_mismatch(time_field, _iso(bot_time), _iso(order.filled_at),
                                        f"{_iso(bot_time)} vs broker filled_at {_iso(order.filled_at)} {where}: "
                                        f"filled more than {rules.early} before the bot's time"))
            elif order.filled_at > bot_time + rules.late:
                errors.append(_mismatch(time_field, _iso(bot_time), _iso(order.filled_at),
                                        f"{_iso(bot_time)} vs broker filled_at {_iso(order.filled_at)} {where}: "
                                        f"filled more than {rules.late} after the bot's time"))
    if (exit_ is not None and rules.check_times and has_fill(entry) and has_fill(exit_)
            and entry.filled_at is not None and exit_.filled_at is not None and exit_.filled_at < entry.filled_at):
        errors.append(_mismatch("closed_at", f"exit after entry ({_iso(p.opened_at)} -> {_iso(p.closed_at)})"
                                if p.closed_at else "exit after entry",
                                f"exit filled {_iso(exit_.filled_at)} before entry filled {_iso(entry.filled_at)}",
                                f"exit order {exit_.order_id} filled at {_iso(exit_.filled_at)}, before entry "
                                f"order {entry.order_id} filled at {_iso(entry.filled_at)}"))
    return errors


def check_orders(p: LivePosition, entry: BrokerOrder, exit_: BrokerOrder, rules: FillRules) -> None:
    """Raise ``BrokerMismatchError`` listing every field on which ``p`` contradicts its orders."""
    errors = mismatches(p, entry, exit_, rules)
    if errors:
        details = "; ".join(f"{e['loc']}: bot {e['bot']}, broker {e['broker']}" for e in errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise BrokerMismatchError(f"position {p.position_id} contradicts its broker orders: {details}{more}", errors)
