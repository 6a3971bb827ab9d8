"""Alpaca broker adapter: orders, account, option Greeks, fee activities and portfolio history through
alpaca-py.

This module also holds the plumbing both Alpaca adapters share (``alpaca_market_data`` imports it):

* **Credentials** come from the constructor or ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``. They are
  never logged or shown by ``repr``, and every message built here is scrubbed of both values (the chained
  vendor exception keeps the server's raw error body; Alpaca does not echo credentials).
* **Base URLs** default to alpaca-py's (paper or live trading, ``data.alpaca.markets``); the constructor
  or ``GOLDTHREAD_ALPACA_URL`` / ``GOLDTHREAD_ALPACA_DATA_URL`` override them (tests point them at
  ``tests/fakes/alpaca_server.py``). Give the base URL without ``/v2``.
* **Timeouts**: alpaca-py sends every request without a timeout, so a hung connection would hang the
  loop. ``harden_client`` mounts a ``requests`` adapter with a default (connect, read) timeout on the
  client's session.
* **Retries**: alpaca-py retries 429/504 itself, three times with a fixed 3 s sleep and no regard for
  ``Retry-After``. ``harden_client`` turns that off (``_retry = 0``, no retry codes) and ``AlpacaCaller``
  retries instead, with tenacity: exponential backoff with jitter (at least ``Retry-After`` when the
  server sends it, capped by ``max_backoff``), bounded by ``max_attempts``, on 408, 429, 5xx, timeouts,
  connection errors and malformed JSON.
* **Rate limit**: Alpaca allows about 200 requests a minute per account; every HTTP request first takes
  a token from a ``TokenBucket`` (190 a minute with a burst of 10 by default, so no 60 s window can
  exceed 200). Pass one bucket to several adapters to share a budget.
* **Errors** are translated at the boundary, naming the order id or symbols, ``raise ... from exc``:
  408/429/5xx, timeouts, connection errors and malformed JSON -> ``BrokerUnavailableError`` (transient);
  other 4xx -> ``BrokerRequestError`` (permanent; a 404 carrying Alpaca's JSON error body is its
  subclass ``AlpacaNotFoundError``, a bare 404 means a wrong base URL).
  *Malformed JSON is transient*: Alpaca does not answer a valid request with broken JSON, so a body
  that does not parse is a truncated transfer or an HTML page from a proxy or load balancer, which
  heals; if it persists, the bus's delivery limit dead-letters the item. *Well-formed JSON of the wrong
  shape is permanent* (``BrokerRequestError``): asking again returns the same document.

alpaca-py is imported lazily (inside constructors and methods) so ``import goldthread`` stays light.
Responses are read as raw dicts (``raw_data=True``) and validated into goldthread's own models: an enum
value Alpaca adds tomorrow must not break parsing, and loop code never sees a vendor type.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from goldthread.errors import BrokerRequestError, BrokerUnavailableError, ConfigError
from goldthread.models.broker import (
    BrokerAccount,
    BrokerOrder,
    EquityPoint,
    FeeActivity,
    OptionPosition,
    new_york_midnight,
)
from goldthread.ports.broker import Broker

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"
TRADING_URL_ENV = "GOLDTHREAD_ALPACA_URL"
DATA_URL_ENV = "GOLDTHREAD_ALPACA_DATA_URL"
PAPER_ENV = "GOLDTHREAD_ALPACA_PAPER"

OPTION_SNAPSHOT_BATCH = 100
"""Alpaca accepts at most 100 symbols per option snapshot request."""

ACTIVITY_PAGE_SIZE = 100
"""The largest page the account activities endpoint returns."""

FEE_TYPES = ("FEE", "CFEE")


# ----------------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlpacaRetryPolicy:
    """How long one HTTP request may take and how failed requests are retried (all times in seconds).

    The wait before retry ``n`` is ``initial_backoff * 2**(n-1)`` plus up to 10 % jitter, at least the
    server's ``Retry-After``, never more than ``max_backoff``.
    """

    timeout: float = 10.0
    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.max_attempts < 1 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ConfigError("AlpacaRetryPolicy needs timeout > 0, max_attempts >= 1 and backoffs >= 0")


class TokenBucket:
    """A thread-safe client-side rate limiter: ``acquire`` blocks until a request may be sent.

    Tokens refill continuously at ``rate_per_minute / 60`` a second up to ``burst``. A caller that
    finds the bucket empty reserves the next token and sleeps outside the lock, so concurrent callers
    queue fairly instead of all waking at once. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate_per_minute: float = 190.0,
        burst: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ConfigError("TokenBucket needs rate_per_minute > 0 and burst >= 1")
        self._rate = rate_per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping first if none is left; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self._rate
        if wait > 0:
            self._sleep(wait)
        return wait


class AlpacaNotFoundError(BrokerRequestError):
    """Alpaca answered 404: the order (or other object) does not exist."""


class _RetryableError(BrokerUnavailableError):
    """A transient failure inside ``AlpacaCaller``, with the server's ``Retry-After`` if it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def resolve_credentials(api_key: str | None, secret_key: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The key id and secret from the arguments, else from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``."""
    key = api_key or env.get(KEY_ENV, "")
    secret = secret_key or env.get(SECRET_ENV, "")
    if not key or not secret:
        raise ConfigError(f"Alpaca credentials missing: pass api_key and secret_key or set {KEY_ENV} and {SECRET_ENV}")
    return key, secret


def resolve_url(explicit: str | None, env: Mapping[str, str], variable: str) -> str | None:
    """A base URL from the argument, else from ``variable``; None keeps alpaca-py's default."""
    url = (explicit or env.get(variable, "")).strip().rstrip("/")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"Alpaca base URL {url!r} ({variable}) must start with http:// or https://")
    if url.endswith(("/v1beta1", "/v1beta3", "/v2")):
        raise ConfigError(f"Alpaca base URL {url!r} ({variable}) must not include the API version")
    return url


@functools.cache
def _timeout_adapter_class() -> type:
    from requests.adapters import HTTPAdapter

    class TimeoutHTTPAdapter(HTTPAdapter):
        """A requests adapter that applies a default timeout to every request sent without one."""

        def __init__(self, timeout: float) -> None:
            super().__init__(max_retries=0)
            self.default_timeout = timeout

        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self.default_timeout
            return super().send(request, **kwargs)

    return TimeoutHTTPAdapter


def harden_client(client: Any, timeout: float) -> None:
    """Give an alpaca-py REST client a request timeout and switch off its own 3 s sleep-and-retry.

    alpaca-py 0.44 keeps its ``requests.Session`` in ``_session`` and its retry settings in ``_retry``
    and ``_retry_codes`` (``alpaca/common/rest.py``); a release that renames them fails loudly here
    rather than silently running without timeouts.
    """
    for attribute in ("_session", "_retry", "_retry_codes"):
        if not hasattr(client, attribute):
            raise ConfigError(f"alpaca-py client has no {attribute!r}: check harden_client against this release")
    client._retry = 0
    client._retry_codes = []
    adapter = _timeout_adapter_class()(timeout)
    client._session.mount("https://", adapter)
    client._session.mount("http://", adapter)


def _is_alpaca_error(body: str) -> bool:
    """True when an error body is Alpaca's JSON (``{"code": 40410000, "message": ...}``)."""
    import json

    try:
        return isinstance(parsed := json.loads(body), dict) and "code" in parsed
    except ValueError:
        return False


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


class AlpacaCaller:
    """Runs one Alpaca HTTP call under the rate limiter, retry policy and error translation.

    ``call(fn, what)`` returns ``fn()``; ``what`` names the order or symbols and starts every error
    message. Transient failures are retried; when attempts run out a ``BrokerUnavailableError`` is
    raised from the last vendor exception. Permanent failures are raised at once.
    """

    def __init__(self, policy: AlpacaRetryPolicy, limiter: TokenBucket, secrets: Iterable[str]) -> None:
        self.policy = policy
        self.limiter = limiter
        self._secrets = tuple(s for s in secrets if s)

    def scrub(self, text: str) -> str:
        """``text`` with every credential value masked and cut to a readable length."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text if len(text) <= 300 else text[:300] + "..."

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` with rate limiting, bounded retries on transient failures and translated errors."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_RetryableError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._once, fn, what)
        except _RetryableError as exc:
            attempts = self.policy.max_attempts
            raise BrokerUnavailableError(f"{exc} (gave up after {attempts} attempts)") from (exc.__cause__ or exc)

    def _once(self, fn: Callable[[], T], what: str) -> T:
        self.limiter.acquire()
        try:
            return fn()
        except Exception as exc:
            translated = self.translate(exc, what)
            if translated is None:
                raise
            raise translated from exc

    def translate(self, exc: BaseException, what: str) -> Exception | None:
        """The goldthread error for a vendor exception, or None when it is not a vendor failure."""
        import requests
        from alpaca.common.exceptions import APIError

        if isinstance(exc, APIError):
            status = exc.status_code
            detail = self.scrub(" ".join(str(exc).split()))
            if status == 404 and _is_alpaca_error(str(exc)):
                return AlpacaNotFoundError(f"{what}: not found at Alpaca (HTTP 404): {detail}")
            if status == 404:  # not Alpaca's JSON error: the path does not exist, so the base URL is wrong
                return BrokerRequestError(f"{what}: HTTP 404 from a path Alpaca lacks (check the base URL): {detail}")
            if status is None or status in (408, 429) or status >= 500:
                return _RetryableError(f"{what}: Alpaca answered HTTP {status}: {detail}", _retry_after(exc.response))
            return BrokerRequestError(f"{what}: Alpaca refused the request (HTTP {status}): {detail}")
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            return _RetryableError(f"{what}: Alpaca sent malformed JSON")
        if isinstance(exc, requests.exceptions.Timeout):
            return _RetryableError(f"{what}: Alpaca timed out (timeout {self.policy.timeout:g} s)")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return _RetryableError(f"{what}: cannot connect to Alpaca: {type(exc).__name__}")
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
            return BrokerRequestError(f"{what}: invalid Alpaca URL: {type(exc).__name__}")
        if isinstance(exc, requests.exceptions.RequestException):
            return _RetryableError(f"{what}: Alpaca request failed: {type(exc).__name__}")
        return None

    def _wait(self, state: RetryCallState) -> float:
        p = self.policy
        wait = p.initial_backoff * 2 ** (state.attempt_number - 1)
        wait += random.uniform(0, wait * 0.1)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _RetryableError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return min(wait, p.max_backoff)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s; retry %d/%d in %.2f s", exc, state.attempt_number, self.policy.max_attempts - 1, delay)


def fetch_pages(
    caller: AlpacaCaller,
    get: Callable[[str, dict[str, Any]], Any],
    path: str,
    params: Mapping[str, Any],
    key: str,
    what: str,
    max_pages: int = 10_000,
) -> dict[str, Any]:
    """Follow a market-data endpoint's ``next_page_token`` and merge ``body[key]`` per symbol.

    Each page is its own retried call, so a failure on page 3 retries page 3 only (alpaca-py's own
    pager would start again from page 1). List values (bars) are concatenated; others (snapshots) kept.
    """
    merged: dict[str, Any] = {}
    token: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        page_params = {**params, "page_token": token} if token else dict(params)
        body = caller.call(functools.partial(get, path, page_params), what)
        entries = body.get(key) if isinstance(body, dict) else None
        if entries is None and isinstance(body, dict) and key in body:
            entries = {}  # Alpaca sends null when nothing matched
        if not isinstance(entries, dict):
            raise BrokerRequestError(f"{what}: Alpaca's response has no {key!r} object")
        for symbol, value in entries.items():
            if isinstance(value, list):
                merged.setdefault(symbol, []).extend(value)
            else:
                merged[symbol] = value
        token = body.get("next_page_token")
        if not token:
            return merged
        if token in seen:
            raise BrokerRequestError(f"{what}: Alpaca repeated page token {token!r}")
        seen.add(token)
    raise BrokerRequestError(f"{what}: more than {max_pages} pages")


def build_model(model: type[M], data: Mapping[str, Any], what: str) -> M:
    """Validate vendor data into a goldthread model; a mismatch is permanent and names ``what``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in exc.errors()[:5])
        errors = [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise BrokerRequestError(f"{what}: Alpaca's data does not fit {model.__name__}: {problems}", errors) from exc


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BrokerRequestError(f"{what}: Alpaca's response is not a JSON object")
    return value


def _as_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BrokerRequestError(f"{what}: Alpaca's response is not a JSON array")
    return value


def _decimal(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise BrokerRequestError(f"{what}: {value!r} is not a number") from exc


# ----------------------------------------------------------------------------------------------------
# The broker
# ----------------------------------------------------------------------------------------------------


class AlpacaBroker(Broker):
    """The ``Broker`` port on Alpaca's Trading API (orders, account, positions, activities) and its
    options market-data API (snapshots, for Greeks), through alpaca-py's ``TradingClient`` and
    ``OptionHistoricalDataClient``.

    ``paper`` (default: ``GOLDTHREAD_ALPACA_PAPER``, else True) picks the paper or live trading URL
    unless ``base_url`` / ``GOLDTHREAD_ALPACA_URL`` overrides it. ``options_feed`` is ``opra`` or
    ``indicative`` (None lets Alpaca choose by subscription).
    """

    name: ClassVar[str] = "alpaca"

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        paper: bool | None = None,
        base_url: str | None = None,
        data_url: str | None = None,
        options_feed: str | None = None,
        policy: AlpacaRetryPolicy | None = None,
        rate_limiter: TokenBucket | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from alpaca.data.historical.option import OptionHistoricalDataClient
        from alpaca.trading.client import TradingClient

        env = os.environ if env is None else env
        key, secret = resolve_credentials(api_key, secret_key, env)
        if paper is None:
            paper = env.get(PAPER_ENV, "true").strip().lower() not in ("0", "false", "no", "live")
        self.paper = paper
        self.base_url = resolve_url(base_url, env, TRADING_URL_ENV)
        self.data_url = resolve_url(data_url, env, DATA_URL_ENV)
        if options_feed not in (None, "opra", "indicative"):
            raise ConfigError(f"options_feed {options_feed!r} must be 'opra' or 'indicative'")
        self.options_feed = options_feed
        self.policy = policy or AlpacaRetryPolicy()
        self._caller = AlpacaCaller(self.policy, rate_limiter or TokenBucket(), (key, secret))
        self._trading = TradingClient(key, secret, paper=paper, raw_data=True, url_override=self.base_url)
        self._options = OptionHistoricalDataClient(key, secret, raw_data=True, url_override=self.data_url)
        for client in (self._trading, self._options):
            harden_client(client, self.policy.timeout)

    def __repr__(self) -> str:
        return f"AlpacaBroker(paper={self.paper}, base_url={self.base_url!r}, data_url={self.data_url!r})"

    def get_orders(self, order_ids: Sequence[str]) -> dict[str, BrokerOrder]:
        """Orders by id, one ``GET /v2/orders/{id}`` each, keyed by the id as given.

        An id Alpaca does not know (404 with Alpaca's JSON error body) is absent; so is an id that is
        not a UUID, which no Alpaca order can have (no request is sent for it). A 404 without that body
        means the path does not exist (a wrong base URL) and raises ``BrokerRequestError`` rather than
        reporting every order as unknown. ``filled_avg_price`` is kept as Alpaca reports it:
        ``"0"`` becomes 0 and null stays None until the fill is processed.
        """
        result: dict[str, BrokerOrder] = {}
        for order_id in dict.fromkeys(order_ids):
            what = f"order {order_id}"
            try:
                uuid.UUID(order_id)
            except (ValueError, TypeError, AttributeError):
                log.warning("%s: not a UUID, so not an Alpaca order id; treated as unknown", what)
                continue
            try:
                raw = self._caller.call(functools.partial(self._trading.get_order_by_id, order_id), what)
            except AlpacaNotFoundError:
                continue
            result[order_id] = self._order(_as_dict(raw, what), what)
        return result

    @staticmethod
    def _order(raw: Mapping[str, Any], what: str) -> BrokerOrder:
        return build_model(
            BrokerOrder,
            {
                "order_id": raw.get("id"),
                "symbol": raw.get("symbol"),
                "side": raw.get("side"),
                "status": raw.get("status"),
                "filled_qty": raw.get("filled_qty") or "0",
                "filled_avg_price": raw.get("filled_avg_price"),
                "filled_at": raw.get("filled_at"),
            },
            what,
        )

    def get_account(self) -> BrokerAccount:
        """``GET /v2/account`` as ``BrokerAccount``; ``account_id`` is the account's id (else its number).

        Margin and market-value fields Alpaca leaves out (a cash account) read as 0; a missing equity,
        last equity, cash or buying power is a permanent error.
        """
        what = "account"
        raw = _as_dict(self._caller.call(self._trading.get_account, what), what)
        data: dict[str, Any] = {"account_id": raw.get("id") or raw.get("account_number")}
        for field in ("equity", "last_equity", "cash", "buying_power"):
            data[field] = raw.get(field)
        for field in ("initial_margin", "maintenance_margin", "long_market_value", "short_market_value"):
            data[field] = raw.get(field) or "0"
        return build_model(BrokerAccount, data, what)

    def get_option_positions(self) -> list[OptionPosition]:
        """Open ``us_option`` positions with each contract's Greeks from Alpaca's option snapshots.

        Snapshots are fetched in batches of up to 100 symbols. ``qty`` is signed (negative when the
        position is short). ``multiplier`` is 100 unless the position carries one. A contract whose
        snapshot has no Greeks yet (no quote) raises ``BrokerUnavailableError`` naming it: Greeks
        appear once the contract quotes, and a zero would silently understate portfolio risk.
        """
        raw_positions = _as_list(self._caller.call(self._trading.get_all_positions, "positions"), "positions")
        options = [p for p in raw_positions if isinstance(p, dict) and p.get("asset_class") == "us_option"]
        symbols = list(dict.fromkeys(str(p.get("symbol")) for p in options))
        snapshots = self._option_snapshots(symbols)
        positions: list[OptionPosition] = []
        for p in options:
            symbol = str(p.get("symbol"))
            what = f"option position {symbol}"
            greeks = (snapshots.get(symbol) or {}).get("greeks")
            if not isinstance(greeks, dict) or any(greeks.get(g) is None for g in ("delta", "gamma", "theta", "vega")):
                raise BrokerUnavailableError(f"{what}: Alpaca's snapshot has no Greeks for {symbol} yet")
            qty = abs(_decimal(p.get("qty"), what))
            if str(p.get("side", "long")).lower() == "short":
                qty = -qty
            data = {
                "symbol": symbol,
                "qty": qty,
                "multiplier": p.get("multiplier") or 100,
                **{g: greeks[g] for g in ("delta", "gamma", "theta", "vega")},
            }
            positions.append(build_model(OptionPosition, data, what))
        return positions

    def _option_snapshots(self, symbols: Sequence[str]) -> dict[str, Any]:
        from alpaca.data.requests import OptionSnapshotRequest

        snapshots: dict[str, Any] = {}
        for i in range(0, len(symbols), OPTION_SNAPSHOT_BATCH):
            batch = list(symbols[i : i + OPTION_SNAPSHOT_BATCH])
            request = OptionSnapshotRequest(symbol_or_symbols=batch, feed=self.options_feed)
            params = {**request.to_request_fields(), "limit": 1000}
            what = f"option snapshots for {','.join(batch)}"
            page = fetch_pages(self._caller, self._options.get, "/options/snapshots", params, "snapshots", what)
            snapshots.update(page)
        return snapshots

    def get_fee_activities(self, day: dt.date) -> list[FeeActivity]:
        """FEE and CFEE activities Alpaca posted for ``day`` (``GET /v2/account/activities``).

        TradingClient has no activities method, so this calls the endpoint through the client's own
        ``get`` (same auth, timeout and retry), ``activity_types=FEE,CFEE&date=day``, oldest first,
        following ``page_token`` (the last id of a full page). Activities of other types are ignored.
        Parsed into ``FeeActivity`` directly: alpaca-py's activity models require ``account_id``,
        which the Trading API omits.
        """
        what = f"fee activities for {day.isoformat()}"
        params: dict[str, Any] = {
            "activity_types": ",".join(FEE_TYPES),
            "date": day.isoformat(),
            "direction": "asc",
            "page_size": ACTIVITY_PAGE_SIZE,
        }
        activities: list[FeeActivity] = []
        seen: set[str] = set()
        while True:
            fetch = functools.partial(self._trading.get, "/account/activities", params)
            page = _as_list(self._caller.call(fetch, what), what)
            for raw in page:
                if not isinstance(raw, dict) or raw.get("activity_type") not in FEE_TYPES:
                    continue
                activities.append(self._fee(raw, what))
            if len(page) < ACTIVITY_PAGE_SIZE:
                return activities
            last = _as_dict(page[-1], what).get("id")
            if not last or last in seen:
                raise BrokerRequestError(f"{what}: cannot page on activity id {last!r}")
            seen.add(str(last))
            params = {**params, "page_token": last}

    @staticmethod
    def _fee(raw: Mapping[str, Any], what: str) -> FeeActivity:
        activity_id = raw.get("id")
        date = raw.get("date")
        if isinstance(date, str):
            date = date[:10]  # a timestamp in some payloads; the day is what matters
        return build_model(
            FeeActivity,
            {
                "activity_id": activity_id,
                "activity_type": raw.get("activity_type"),
                "date": date,
                "net_amount": raw.get("net_amount"),
                "description": raw.get("description") or "",
                "symbol": raw.get("symbol") or None,
                "qty": raw.get("qty"),
                "price": raw.get("price"),
                "status": raw.get("status") or "executed",
            },
            f"{what}: activity {activity_id}",
        )

    def get_portfolio_history(self, start: dt.date, end: dt.date) -> list[EquityPoint]:
        """The account's daily equity for the New York trading days ``start`` to ``end``
        (``GET /v2/account/portfolio/history``).

        Called through the client's own ``get`` rather than ``TradingClient.get_portfolio_history``: that
        method parses into alpaca-py's ``PortfolioHistory``, whose ``equity`` is a list of floats that
        refuses the nulls Alpaca sends for days without data, and whose floats would lose the cents' exact
        value; the raw JSON numbers are read here through their shortest repr into exact decimals.
        Query: ``timeframe=1D``, ``start`` and ``end`` as RFC 3339 (midnight New York of ``start``, of the
        day after ``end``), ``intraday_reporting=continuous`` (crypto moves the equity outside the
        session), ``pnl_reset=no_reset``. Points whose equity is null are left out, as are points outside
        the asked days. Arrays of different lengths or a missing array are a permanent error.
        """
        what = f"portfolio history {start.isoformat()}..{end.isoformat()}"
        params = {
            "timeframe": "1D",
            "start": new_york_midnight(start).isoformat().replace("+00:00", "Z"),
            "end": new_york_midnight(end + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            "intraday_reporting": "continuous",
            "pnl_reset": "no_reset",
        }
        from goldthread.adapters.alpaca_history import parse_portfolio_history

        fetch = functools.partial(self._trading.get, "/account/portfolio/history", params)
        return parse_portfolio_history(_as_dict(self._caller.call(fetch, what), what), start, end, what)

    def close(self) -> None:
        """Close the HTTP sessions of both clients."""
        for client in (self._trading, self._options):
            client._session.close()

