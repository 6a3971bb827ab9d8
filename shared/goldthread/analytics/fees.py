"""The fee model shared by real trades, counterfactual trades and the simulated broker.

Three jobs, all pure functions on exact ``Decimal`` values (no floats, no I/O):

* :func:`estimate_fees`: what one fill costs under a :class:`FeeSchedule`, per component and unrounded.
  The bot's ``est_fee_usd`` and Loop B's theoretical trades use it.
* :func:`daily_fee_activities`: the FEE / CFEE activities a broker posts at the end of a day for that
  day's fills, the way Alpaca does (one FEE per regulatory fee type per day, rounded up to the cent; one
  CFEE per crypto fill). The simulated broker uses it.
* :func:`allocate_fees`: the reverse (fee patch, T+1): spread each posted activity over the day's fills by
  the rule that generated it, so each trade gets its ``actual_fee_usd`` and the cents add up exactly.

Arithmetic runs in a 200-digit context: products of 9-place quantities and prices are exact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from goldthread.errors import ConfigError
from goldthread.models.broker import FeeActivity, OrderSide
from goldthread.models.hot import AssetClass
from goldthread.models.types import CENT, NINE_PLACES, Identifier, Money, Quantity, Symbol

_CTX = Context(prec=200, rounding=ROUND_HALF_EVEN)
_ZERO = Decimal(0)
_BPS = Decimal(10000)


class FeeType(StrEnum):
    """A kind of fee the broker posts: four regulatory FEE types and the crypto CFEE."""

    REG = "REG"  # SEC Section 31 fee, sells, on notional
    TAF = "TAF"  # FINRA Trading Activity Fee, sells, per share / contract, capped per trade
    CAT = "CAT"  # Consolidated Audit Trail fee, both sides, per executed equivalent share
    ORF = "ORF"  # Options Regulatory Fee, both sides, per contract
    CFEE = "CFEE"  # crypto transaction fee, in the asset received


REGULATORY_FEE_TYPES: tuple[FeeType, ...] = (FeeType.REG, FeeType.TAF, FeeType.CAT, FeeType.ORF)
"""FEE types posted as one USD activity per type per day, in posting order."""

CFEE_DESCRIPTION_ASSET = "Coin Pair Transaction Fee (Non USD)"
CFEE_DESCRIPTION_USD = "Coin Pair Transaction Fee (USD)"


CAT_FEE_PER_SHARE = Decimal("0.000035")
"""The published CAT fee, USD per executed equivalent share, charged to the executing broker on each side.

Source: CAT Fee 2024-1, FINRA Rule 6897(a)(1)(C) and CAT Fee Alert 2024-1 (catnmsplan.com FAQ V6): $0.000035
per executed equivalent share, effective for transactions from 1 September 2024 (first invoice October 2024)
and in effect "until a new subsequent CAT Fee is in effect". Prospective CAT fees are reset about every six
months (CAT Fee 2025-1 was filed in June 2025 for July to December 2025), so this default may be stale: the
rate in force is in the latest CAT Fee Alert on catnmsplan.com. Historical CAT Assessment 1 ($0.000013 per
executed equivalent share, from the November 2024 invoice) is a separate line, not included. To follow a new
rate, or to add the historical assessment the broker passes through, set ``GOLDTHREAD_CAT_FEE_PER_SHARE``
(no code change) and update this constant with its source and date."""

CAT_FEE_ENV = "GOLDTHREAD_CAT_FEE_PER_SHARE"


def cat_fee_per_share(env: Mapping[str, str] | None = None) -> Decimal:
    """The CAT rate in force: ``GOLDTHREAD_CAT_FEE_PER_SHARE`` (a non-negative decimal, e.g. ``0.000048``) if
    set, else ``CAT_FEE_PER_SHARE``. An unreadable or negative value is a ``ConfigError``, never a silent
    default: fees computed at a wrong rate would look right."""
    text = (os.environ if env is None else env).get(CAT_FEE_ENV, "").strip()
    if not text:
        return CAT_FEE_PER_SHARE
    try:
        rate = Decimal(text)
    except ArithmeticError as exc:
        raise ConfigError(f"{CAT_FEE_ENV}={text!r} is not a decimal number") from exc
    if not rate.is_finite() or rate < 0 or rate >= 1:
        raise ConfigError(f"{CAT_FEE_ENV}={text!r} must be a dollar rate per share, at least 0 and below 1")
    return rate


class FeeSchedule(BaseModel):
    """Fee rates, configurable; the defaults resemble Alpaca's pass-through fees in 2024-2025.

    Equities and options are commission-free (Alpaca), so only regulatory fees are modelled:

    * ``sec_fee_rate``: SEC Section 31 fee per dollar of SELL notional, $27.80 per million (fiscal 2024
      rate; the SEC resets it each year and set $0.00 from 14 May 2025: configure the rate in force).
    * ``taf_per_share`` / ``taf_max_per_trade``: FINRA TAF on shares SOLD, $0.000166 a share, at most
      $8.30 per trade. A "trade" here is one :class:`Fill`: pass an order's partial fills as one fill for a
      per-order cap.
    * ``cat_per_share``: CAT fee per executed equivalent share on BOTH sides: by default
      ``GOLDTHREAD_CAT_FEE_PER_SHARE`` if set, else the published rate ``CAT_FEE_PER_SHARE`` (see there for
      its source and date). Assumption: an option contract counts as ``multiplier`` executed equivalent
      shares (CAT NMS Plan funding model).
    * Options, simplified: REG on sell premium notional (qty x price x multiplier), TAF per contract sold
      (``option_taf_per_contract``, $0.00279, no cap by default), ORF per contract on both sides
      (``option_orf_per_contract``: exchanges' rates vary, $0.02685 is an assumption; fold the OCC clearing
      fee in here if the broker charges one), plus CAT as above.
    * Crypto: ``crypto_fee_bps`` of notional (25 bps = Alpaca's lowest-volume taker tier), charged in the
      asset RECEIVED: a buy of BTC/USD pays in BTC, a sell pays in USD.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sec_fee_rate: Decimal = Field(default=Decimal("0.0000278"), ge=0, allow_inf_nan=False)
    taf_per_share: Decimal = Field(default=Decimal("0.000166"), ge=0, allow_inf_nan=False)
    taf_max_per_trade: Decimal | None = Field(default=Decimal("8.30"), ge=0, allow_inf_nan=False)
    cat_per_share: Decimal = Field(default_factory=lambda: cat_fee_per_share(), ge=0, allow_inf_nan=False)
    option_taf_per_contract: Decimal = Field(default=Decimal("0.00279"), ge=0, allow_inf_nan=False)
    option_taf_max_per_trade: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    option_orf_per_contract: Decimal = Field(default=Decimal("0.02685"), ge=0, allow_inf_nan=False)
    crypto_fee_bps: Decimal = Field(default=Decimal(25), ge=0, allow_inf_nan=False)

    @property
    def crypto_fee_rate(self) -> Decimal:
        """The crypto fee as a fraction of notional (25 bps -> 0.0025)."""
        with localcontext(_CTX):
            return self.crypto_fee_bps / _BPS


def _crypto_base(symbol: str) -> str | None:
    """Base asset of a USD-quoted pair (``BTC/USD`` or ``BTCUSD`` -> ``BTC``); None otherwise."""
    if "/" in symbol:
        base, _, quote = symbol.partition("/")
        return base if quote == "USD" and base else None
    return symbol[:-3] if symbol.endswith("USD") and len(symbol) > 3 else None


def _norm_symbol(symbol: str) -> str:
    """Compare crypto pairs whatever the broker's spelling (``BTC/USD`` == ``BTCUSD``)."""
    return symbol.replace("/", "")


class Fill(BaseModel):
    """One execution the fee model prices: a real fill, a simulated one or a theoretical one.

    ``key`` names the trade leg the fee belongs to, e.g. ``leg_key(position_id, "entry")``; several fills
    (partial fills of one order) may share a key, and their allocations are summed. ``day`` is the day the
    broker posts the fee for (the trading day; for crypto, the broker's posting calendar). ``multiplier``
    is the contract size of options (default 100) and must be 1 for other assets. Crypto pairs must be
    quoted in USD, because the model reports fees in USD.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Identifier
    symbol: Symbol
    asset_class: AssetClass
    side: OrderSide
    qty: Quantity = Field(gt=0)
    price: Money = Field(gt=0)
    day: dt.date
    multiplier: Quantity = Field(default=Decimal(1), gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_multiplier(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("multiplier") is None:
            data = {k: v for k, v in data.items() if k != "multiplier"}
            if data.get("asset_class") == AssetClass.OPTION:
                data["multiplier"] = Decimal(100)
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.asset_class is not AssetClass.OPTION and self.multiplier != 1:
            raise ValueError("multiplier applies to options only")
        if self.asset_class is AssetClass.CRYPTO and _crypto_base(self.symbol) is None:
            raise ValueError(f"crypto pair {self.symbol!r} is not quoted in USD")
        return self

    @property
    def notional(self) -> Decimal:
        """USD value traded: qty x price x multiplier (exact)."""
        with localcontext(_CTX):
            return self.qty * self.price * self.multiplier

    @property
    def received_asset(self) -> str:
        """What the fill delivers: the base asset for a buy, USD for a sell (or for non-crypto)."""
        if self.asset_class is AssetClass.CRYPTO and self.side is OrderSide.BUY:
            return _crypto_base(self.symbol) or "USD"
        return "USD"


def leg_key(position_id: str, leg: str) -> str:
    """The conventional fill key of a position's leg: ``leg_key("p1", "entry") == "p1:entry"``."""
    return f"{position_id}:{leg}"


@dataclass(frozen=True)
class FeeBreakdown:
    """Estimated fees of one fill, per component, in USD, exact and unrounded.

    ``cfee_qty`` is the crypto fee in ``cfee_asset`` (the asset received: BTC for a BTC/USD buy, USD for a
    sell); ``cfee`` is its USD value at the fill price.
    """

    reg: Decimal = _ZERO
    taf: Decimal = _ZERO
    cat: Decimal = _ZERO
    orf: Decimal = _ZERO
    cfee: Decimal = _ZERO
    cfee_asset: str | None = None
    cfee_qty: Decimal = _ZERO

    @property
    def total(self) -> Decimal:
        """All components in USD."""
        with localcontext(_CTX):
            return self.reg + self.taf + self.cat + self.orf + self.cfee

    def amount(self, fee_type: FeeType) -> Decimal:
        """The USD amount of one component."""
        return {
            FeeType.REG: self.reg,
            FeeType.TAF: self.taf,
            FeeType.CAT: self.cat,
            FeeType.ORF: self.orf,
            FeeType.CFEE: self.cfee,
        }[fee_type]


def _capped(amount: Decimal, cap: Decimal | None) -> Decimal:
    return amount if cap is None else min(amount, cap)


def estimate_fees(fill: Fill, schedule: FeeSchedule) -> FeeBreakdown:
    """Price one fill under ``schedule``: exact per-component USD fees, before the broker's rounding.

    Used wherever a fee must be known before (or without) the broker posting it: the bot's estimate,
    Loop B's theoretical trades, and the simulated broker's postings.
    """
    sell = fill.side is OrderSide.SELL
    with localcontext(_CTX):
        if fill.asset_class is AssetClass.CRYPTO:
            rate = schedule.crypto_fee_rate
            if sell:
                usd = fill.notional * rate
                return FeeBreakdown(cfee=usd, cfee_asset="USD", cfee_qty=usd)
            in_asset = fill.qty * rate
            return FeeBreakdown(cfee=in_asset * fill.price, cfee_asset=fill.received_asset, cfee_qty=in_asset)
        cat = fill.qty * fill.multiplier * schedule.cat_per_share
        reg = fill.notional * schedule.sec_fee_rate if sell else _ZERO
        if fill.asset_class is AssetClass.OPTION:
            orf = fill.qty * schedule.option_orf_per_contract
            taf = _capped(fill.qty * schedule.option_taf_per_contract, schedule.option_taf_max_per_trade)
            return FeeBreakdown(reg=reg, taf=taf if sell else _ZERO, cat=cat, orf=orf)
        taf = _capped(fill.qty * schedule.taf_per_share, schedule.taf_max_per_trade)
        return FeeBreakdown(reg=reg, taf=taf if sell else _ZERO, cat=cat)


def total_estimated_fees(fills: Iterable[Fill], schedule: FeeSchedule) -> Decimal:
    """Sum of :func:`estimate_fees` totals (e.g. a position's entry and exit), exact USD."""
    with localcontext(_CTX):
        return sum((estimate_fees(f, schedule).total for f in fills), _ZERO)


def _round_up(value: Decimal, quantum: Decimal) -> Decimal:
    with localcontext(_CTX):
        return value.quantize(quantum, rounding=ROUND_CEILING)


def _activity_id(day: dt.date, fee_type: FeeType, *content: object) -> str:
    digest = hashlib.sha256("|".join(str(c) for c in (day.isoformat(), fee_type, *content)).encode()).hexdigest()
    return f"{day.isoformat()}:{fee_type}:{digest[:20]}"


def daily_fee_activities(fills_of_day: Sequence[Fill], day: dt.date, schedule: FeeSchedule) -> list[FeeActivity]:
    """The FEE and CFEE activities a broker posts at the end of ``day`` for that day's fills, like Alpaca.

    * One FEE activity per regulatory type with a non-zero total (REG, TAF, CAT, ORF, in that order):
      ``net_amount = -(day's exact total, rounded UP to the cent)``, description ``"<TYPE> fee"``, no
      symbol. Rounding the day's sum once (not each fill) is what Alpaca does.
    * One CFEE activity per crypto fill (not per symbol: each fill has its own price, and Alpaca's
      example carries a fill price). A buy's fee is in the asset received: ``qty`` = -(fee in the asset,
      rounded up to 9 places), ``price`` = fill price, ``net_amount`` 0. A sell's fee is in USD:
      ``net_amount`` = ``qty`` = -(fee rounded up to the cent), ``price`` = fill price.

    Ids are deterministic: day, type and a hash of the content (plus the fill key and an ordinal for CFEE).
    Raises ``ValueError`` when a fill belongs to another day.
    """
    wrong = [f.key for f in fills_of_day if f.day != day]
    if wrong:
        raise ValueError(f"fills of another day than {day.isoformat()}: {', '.join(wrong)}")
    estimates = [(f, estimate_fees(f, schedule)) for f in fills_of_day]
    activities: list[FeeActivity] = []
    with localcontext(_CTX):
        for fee_type in REGULATORY_FEE_TYPES:
            total = sum((b.amount(fee_type) for _, b in estimates), _ZERO)
            if total <= 0:
                continue
            net = -_round_up(total, CENT)
            activities.append(
                FeeActivity(
                    activity_id=_activity_id(day, fee_type, net),
                    activity_type="FEE",
                    date=day,
                    net_amount=net,
                    description=f"{fee_type} fee",
                )
            )
        seen: dict[tuple[object, ...], int] = defaultdict(int)
        for fill, breakdown in estimates:
            if fill.asset_class is not AssetClass.CRYPTO or breakdown.cfee_qty <= 0:
                continue
            if breakdown.cfee_asset == "USD":
                qty = net = -_round_up(breakdown.cfee_qty, CENT)
                description = CFEE_DESCRIPTION_USD
            else:
                qty, net = -_round_up(breakdown.cfee_qty, NINE_PLACES), _ZERO
                description = CFEE_DESCRIPTION_ASSET
            content = (fill.key, fill.symbol, qty, fill.price, net)
            seen[content] += 1
            activities.append(
                FeeActivity(
                    activity_id=_activity_id(day, FeeType.CFEE, *content, seen[content]),
                    activity_type="CFEE",
                    date=day,
                    net_amount=net,
                    description=description,
                    symbol=fill.symbol,
                    qty=qty,
                    price=fill.price,
                )
            )
    return activities


_DESCRIPTION_PATTERNS: tuple[tuple[FeeType, re.Pattern[str]], ...] = (
    (FeeType.REG, re.compile(r"\b(?:REG|SEC)\b|section\s*31", re.IGNORECASE)),
    (FeeType.TAF, re.compile(r"\bTAF\b|trading\s+activity\s+fee", re.IGNORECASE)),
    (FeeType.CAT, re.compile(r"\bCAT\b|consolidated\s+audit\s+trail", re.IGNORECASE)),
    (FeeType.ORF, re.compile(r"\bORF\b|options?\s+regulatory\s+fee", re.IGNORECASE)),
)


def fee_type_of(activity: FeeActivity) -> FeeType | None:
    """Which fee an activity is: CFEE by its type; a FEE by its description, or None when unknown.

    Matches whole words, case-insensitively, so "REG fee", "reg fee for proceed of 5 shares", "SEC Section
    31 fee", "FINRA TAF", "CAT fee", "Consolidated Audit Trail fee", "ORF" and "Options Regulatory Fee" are
    recognised, while "regulatory" alone is not REG. A description naming two types is ambiguous: None.
    """
    if activity.activity_type == "CFEE":
        return FeeType.CFEE
    found = {fee_type for fee_type, pattern in _DESCRIPTION_PATTERNS if pattern.search(activity.description)}
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class UnallocatedFee:
    """A posted activity no fill could take, with why; ``amount_usd`` is its fee in USD when known."""

    activity: FeeActivity
    reason: str
    amount_usd: Decimal | None


@dataclass(frozen=True)
class AllocatedFee:
    """Audit of one allocation: the activities pooled (same day, type and match), their total and shares.

    ``quantum`` is the unit the shares were rounded to: the cent when the total is whole cents (every FEE,
    a USD CFEE), else 1e-9 (a CFEE in an asset converted at its price), so ``sum(shares) == total_usd``.
    """

    fee_type: FeeType
    day: dt.date
    activity_ids: tuple[str, ...]
    total_usd: Decimal
    quantum: Decimal
    shares: dict[str, Decimal]


@dataclass(frozen=True)
class FeeAllocation:
    """Result of :func:`allocate_fees`.

    ``allocations``: USD fee per fill key, summed over every activity. ``unallocated``: activities that
    matched no fill (kept, never dropped). ``ignored``: canceled activities. ``details``: one
    :class:`AllocatedFee` per pool, for the patch's audit trail.
    """

    allocations: dict[str, Decimal]
    unallocated: tuple[UnallocatedFee, ...] = ()
    ignored: tuple[FeeActivity, ...] = ()
    details: tuple[AllocatedFee, ...] = field(default=())

    @property
    def total_allocated(self) -> Decimal:
        """Sum of all allocations, USD."""
        with localcontext(_CTX):
            return sum(self.allocations.values(), _ZERO)


def largest_remainder(total: Decimal, weights: dict[str, Decimal], quantum: Decimal = CENT) -> dict[str, Decimal]:
    """Split ``total`` (a multiple of ``quantum``) over ``weights`` so the parts add up to it exactly.

    Each key first gets its proportional share rounded down to the quantum; the units left over go one
    each to the largest remainders, ties to the smallest key. Every part is within one quantum of its exact
    share and has the sign of ``total``. Raises ``ValueError`` for negative or all-zero weights, or a
    total that is not a multiple of the quantum.
    """
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must not be negative")
    total_weight = sum((Fraction(w) for w in weights.values()), Fraction(0))
    if total_weight == 0:
        raise ValueError("weights must not all be zero")
    units_fraction = Fraction(abs(total)) / Fraction(quantum)
    if units_fraction.denominator != 1:
        raise ValueError(f"total {total} is not a multiple of {quantum}")
    units = units_fraction.numerator
    exact = {k: units * Fraction(w) / total_weight for k, w in weights.items()}
    floors = {k: v.numerator // v.denominator for k, v in exact.items()}
    left = units - sum(floors.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - floors[k]), k))[:left]:
        floors[k] += 1
    sign = -1 if total < 0 else 1
    with localcontext(_CTX):
        return {k: (sign * n * quantum).quantize(quantum) for k, n in floors.items()}


@dataclass
class _Pool:
    fee_type: FeeType
    day: dt.date
    weights: dict[str, Decimal]
    activities: list[FeeActivity] = field(default_factory=list)
    amounts: list[Decimal] = field(default_factory=list)


def _cfee_in_usd(activity: FeeActivity) -> bool:
    """A CFEE charged in USD carries a non-zero ``net_amount``; one in an asset posts 0 and a qty."""
    return activity.net_amount != 0


def _cfee_usd(activity: FeeActivity) -> Decimal | None:
    """USD value of a CFEE (positive = a charge), or None when an asset fee lacks qty or price."""
    if _cfee_in_usd(activity):
        return -activity.net_amount
    if activity.qty is None or activity.price is None:
        return None
    with localcontext(_CTX):
        return (-activity.qty * activity.price).quantize(NINE_PLACES)


def _applies(fill: Fill, fee_type: FeeType) -> bool:
    """Whether ``fee_type`` can arise from ``fill`` under any schedule (the rule, not the rate)."""
    if fee_type is FeeType.CFEE:
        return fill.asset_class is AssetClass.CRYPTO
    if fill.asset_class is AssetClass.CRYPTO:
        return False
    if fee_type in (FeeType.REG, FeeType.TAF):
        return fill.side is OrderSide.SELL
    return fee_type is FeeType.CAT or fill.asset_class is AssetClass.OPTION


def _basis(fill: Fill, fee_type: FeeType) -> Decimal:
    """Fallback weight when the schedule prices a type at zero: notional for REG, units otherwise."""
    if fee_type is FeeType.REG or (fee_type is FeeType.CFEE and fill.side is OrderSide.SELL):
        return fill.notional
    with localcontext(_CTX):
        return fill.qty * fill.multiplier if fee_type is FeeType.CAT else fill.qty


def _weights(fills: Sequence[Fill], fee_type: FeeType, schedule: FeeSchedule) -> dict[str, Decimal]:
    """Weights per key: each fill's estimated fee of that type (so a capped TAF weighs its capped amount).

    CFEE weighs the fee in the asset received (quantity for buys). Falls back to :func:`_basis` when the
    schedule gives every fill zero, so a fee the schedule no longer charges is still allocated.
    """
    weights: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    with localcontext(_CTX):
        for fill in fills:
            b = estimate_fees(fill, schedule)
            weights[fill.key] += b.cfee_qty if fee_type is FeeType.CFEE else b.amount(fee_type)
        if all(w == 0 for w in weights.values()):
            weights.clear()
            for fill in fills:
                weights[fill.key] += _basis(fill, fee_type)
    return dict(weights)


def _match(activity: FeeActivity, fee_type: FeeType, fills: Sequence[Fill]) -> tuple[tuple[object, ...], list[Fill]]:
    """The fills an activity belongs to and the pool key that groups it with like activities."""
    candidates = [f for f in fills if f.day == activity.date and _applies(f, fee_type)]
    if fee_type is not FeeType.CFEE:
        return (activity.date, fee_type), candidates
    symbol = _norm_symbol(activity.symbol or "")
    side = OrderSide.SELL if _cfee_in_usd(activity) else OrderSide.BUY
    candidates = [f for f in candidates if _norm_symbol(f.symbol) == symbol and f.side is side]
    priced = [f for f in candidates if f.price == activity.price]
    if priced:  # a per-fill posting: the fills at exactly its price
        return (activity.date, fee_type, symbol, side, activity.price), priced
    return (activity.date, fee_type, symbol, side, None), candidates


def allocate_fees(activities: Iterable[FeeActivity], fills: Sequence[Fill], schedule: FeeSchedule) -> FeeAllocation:
    """Allocate the broker's posted fees to the fills that caused them, exactly to the cent.

    Each activity goes to the fills of its ``date`` by the rule that generated it: REG to sells by
    notional, TAF to sells by (capped) TAF, CAT to both sides by executed equivalent shares, ORF to option
    fills by contracts (weights are the fills' estimated fees of that type, so all of these hold), CFEE to
    the crypto fills of its symbol on the side that pays in that currency (USD fee: sells; asset fee:
    buys) by quantity, restricted to the fills at the activity's price when any match it; an asset fee is
    converted to USD at the activity's price.

    Activities with the same day, type and match are pooled and their total is split by
    :func:`largest_remainder`, so each pool's shares add up exactly to its posted USD total. Status
    ``canceled``: ignored (reported in ``ignored``). Status ``correct``: a correction, pooled with the day's
    activities of its type, so its amount (a refund if positive ``net_amount``, an extra charge if negative)
    is added to their total before allocating; a correction larger than the charges gives negative
    allocations. Activities that match no fill, name no known fee type or have an unknown status are
    returned in ``unallocated`` with the reason, never dropped.
    """
    pools: dict[tuple[object, ...], _Pool] = {}
    unallocated: list[UnallocatedFee] = []
    ignored: list[FeeActivity] = []
    for activity in activities:
        status = activity.status.lower()
        if status in ("canceled", "cancelled"):
            ignored.append(activity)
            continue
        fee_type = fee_type_of(activity)
        amount = _cfee_usd(activity) if fee_type is FeeType.CFEE else -activity.net_amount
        if status not in ("executed", "correct"):
            unallocated.append(UnallocatedFee(activity, f"unknown status {activity.status!r}", amount))
            continue
        if fee_type is None:
            unallocated.append(UnallocatedFee(activity, "unrecognised fee type in description", amount))
            continue
        if amount is None:
            unallocated.append(UnallocatedFee(activity, "CFEE in an asset without qty or price", None))
            continue
        pool_key, matched = _match(activity, fee_type, fills)
        if not matched:
            reason = f"no {fee_type} fills on {activity.date.isoformat()}"
            unallocated.append(UnallocatedFee(activity, reason, amount))
            continue
        pool = pools.get(pool_key)
        if pool is None:
            pool = pools[pool_key] = _Pool(fee_type, activity.date, _weights(matched, fee_type, schedule))
        pool.activities.append(activity)
        pool.amounts.append(amount)

    allocations: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    details: list[AllocatedFee] = []
    with localcontext(_CTX):
        for pool in pools.values():
            total = sum(pool.amounts, _ZERO)
            quantum = CENT if total % CENT == 0 else NINE_PLACES
            shares = largest_remainder(total.quantize(quantum), pool.weights, quantum)
            for key, share in shares.items():
                allocations[key] += share
            ids = tuple(a.activity_id for a in pool.activities)
            details.append(AllocatedFee(pool.fee_type, pool.day, ids, total.quantize(quantum), quantum, shares))
    return FeeAllocation(dict(allocations), tuple(unallocated), tuple(ignored), tuple(details))
