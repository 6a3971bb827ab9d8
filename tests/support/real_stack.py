"""The production Golden Thread, on this machine: every Cloud Function served by functions-framework,
fed by Pub/Sub emulator push subscriptions, against the Firestore emulator, bqemulator and a local
Alpaca server seeded from the simulator.

This is what Terraform deploys, wired by hand: per loop a topic and a push subscription (with the
dead-letter policy) to the loop's subscriber function, the dead-letter topic with a push subscription to
``dead_letter_sink``, and the HTTP functions (dispatch, patches, replay) called like the scheduler does.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from goldthread.adapters.sim_broker import SimulatedBroker
from goldthread.adapters.synthetic_market_data import SyntheticMarketData
from goldthread.config import Settings, load_settings
from goldthread.models.hot import JobMetadata, RunStatus
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context

from tests.fakes.alpaca_server import FakeAlpaca
from tests.support.emulators import ManagedProcess, start_function

SUBSCRIBERS = {
    "subscribe_trades": Loop.TRADES,
    "subscribe_rejected_signals": Loop.REJECTED_SIGNALS,
    "subscribe_expired_signals": Loop.EXPIRED_SIGNALS,
    "subscribe_accounts": Loop.ACCOUNTS,
}
HTTP_FUNCTIONS = ("dispatch", "patch_fees", "patch_prices", "replay")
FAKE_ACCOUNT_ID = "904837e3-3b76-47ec-b432-046db621571b"


def stack_env(
    project: str, dataset: str, prefix: str, alpaca_url: str, emulators: Mapping[str, str], keys: tuple[str, str]
) -> dict[str, str]:
    """The environment a deployed function gets (Terraform sets the same variables)."""
    return {
        **emulators,
        "GOOGLE_CLOUD_PROJECT": project,
        "GOLDTHREAD_HOT": "firestore",
        "GOLDTHREAD_BUS": "pubsub",
        "GOLDTHREAD_WAREHOUSE": "bigquery",
        "GOLDTHREAD_BROKER": "alpaca",
        "GOLDTHREAD_MARKET_DATA": "alpaca",
        "GOLDTHREAD_DATASET": dataset,
        "GOLDTHREAD_TOPIC_PREFIX": prefix,
        "GOLDTHREAD_GIT_HASH": "e2e",
        "GOLDTHREAD_ALPACA_URL": alpaca_url,
        "GOLDTHREAD_ALPACA_DATA_URL": alpaca_url,
        "APCA_API_KEY_ID": keys[0],
        "APCA_API_SECRET_KEY": keys[1],
        "GOLDTHREAD_LOG_LEVEL": "WARNING",
    }


@dataclass
class RealStack:
    """Running functions plus an in-process context on the same backends (to read results)."""

    settings: Settings
    env: dict[str, str]
    functions: dict[str, ManagedProcess] = field(default_factory=dict)

    def context(self) -> Context:
        """A context on the real adapters, configured exactly like the functions."""
        return Context(load_settings(self.env))

    def call(self, name: str, body: Mapping[str, Any], timeout: float = 300.0) -> dict[str, Any]:
        """POST a JSON body to an HTTP function, as Cloud Scheduler does; returns its JSON answer."""
        request = urllib.request.Request(
            self.functions[name].url + "/", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{name} answered {exc.code}: {exc.read()[:2000]!r}") from exc

    def wait_run(self, ctx: Context, run_id: str, timeout: float = 180.0) -> JobMetadata:
        """Poll ``job_metadata`` until the run has left RUNNING (every published item has an outcome)."""
        from goldthread.ledger.runs import get_run

        deadline = time.monotonic() + timeout
        while True:
            run = get_run(ctx, run_id)
            if run is not None and run.status is not RunStatus.RUNNING:
                return run
            if time.monotonic() > deadline:
                logs = {n: f.log_tail(15) for n, f in self.functions.items()}
                raise AssertionError(f"run {run_id} still RUNNING after {timeout}s: {run}; logs: {logs}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop every function process."""
        for proc in self.functions.values():
            proc.stop()


def start_real_stack(alpaca: FakeAlpaca, emulators: Mapping[str, str], sweep_every_days: int | None = None
                     ) -> RealStack:
    """Start every function and create the Pub/Sub topology pointing at them (``sweep_every_days`` overrides
    Firestore's weekly sweep schedule, ``GOLDTHREAD_SWEEP_EVERY_DAYS``)."""
    from goldthread.adapters.pubsub_bus import ensure_loop_topology, ensure_subscription

    tag = uuid.uuid4().hex[:8]
    project = "goldthread-e2e"
    env = stack_env(project, f"e2e_{tag}", f"e2e-{tag}", alpaca.url, emulators,
                    (alpaca.api_key, alpaca.secret_key))
    if sweep_every_days is not None:
        env["GOLDTHREAD_SWEEP_EVERY_DAYS"] = str(sweep_every_days)
    settings = load_settings(env)
    stack = RealStack(settings, env)
    names = [*SUBSCRIBERS, "dead_letter_sink", *HTTP_FUNCTIONS]

    try:
        for name in names:  # one at a time: free ports are picked by binding, so parallel starts could collide
            kind = "http" if name in HTTP_FUNCTIONS else "cloudevent"
            proc = start_function(name, signature_type=kind, env=env, timeout=120)
            stack.functions[name] = proc
            time.sleep(0.3)
            if not proc.alive():  # lost the port to another process: the answer came from someone else
                raise RuntimeError(f"function {name} exited after start: {proc.log_tail(10)}")
        push = {
            loop.value: f"{stack.functions[fn].url}/projects/{project}/topics/{settings.topic(loop)}"
            for fn, loop in SUBSCRIBERS.items()
        }
        ensure_loop_topology(settings, [loop.value for loop in Loop], push_endpoints=push)
        sink = stack.functions["dead_letter_sink"].url
        ensure_subscription(
            project, f"{settings.dead_letter_topic}-sink", settings.dead_letter_topic,
            push_endpoint=f"{sink}/projects/{project}/topics/{settings.dead_letter_topic}",
        )
    except Exception:
        stack.stop()
        raise
    return stack


def seed_alpaca(alpaca: FakeAlpaca, broker: SimulatedBroker, market: SyntheticMarketData,
                order_ids: list[str], days: list[dt.date], symbols: list[str],
                bars_from: dt.datetime, bars_to: dt.datetime) -> None:
    """Make the local Alpaca answer exactly what the simulator knows now: orders, account, option book,
    posted fee activities, the daily portfolio history and minute bars."""
    for order in broker.get_orders(order_ids).values():
        alpaca.add_order(
            order_id=order.order_id, symbol=order.symbol, side=order.side.value, qty=str(order.filled_qty),
            status=order.status, filled_qty=str(order.filled_qty),
            filled_avg_price=str(order.filled_avg_price) if order.filled_avg_price is not None else None,
            filled_at=order.filled_at, asset_class="crypto" if "/" in order.symbol else "us_equity",
        )
    account = broker.get_account()
    alpaca.set_account(**{
        k: str(getattr(account, k)) for k in ("equity", "last_equity", "cash", "buying_power", "initial_margin",
                                               "maintenance_margin", "long_market_value", "short_market_value")
    })
    for option in broker.get_option_positions():
        alpaca.add_position(option.symbol, str(option.qty), asset_class="us_option")
        alpaca.set_snapshot(option.symbol, delta=float(option.delta), gamma=float(option.gamma),
                            theta=float(option.theta), vega=float(option.vega))
    for day in days:
        for activity in broker.get_fee_activities(day):
            extra = {k: str(v) for k, v in (("symbol", activity.symbol), ("qty", activity.qty),
                                            ("price", activity.price)) if v is not None}
            alpaca.add_activity(activity.activity_type, activity.date, str(activity.net_amount),
                                activity_id=activity.activity_id, description=activity.description, **extra)
    history = broker.get_portfolio_history(days[0] - dt.timedelta(days=14), days[-1])  # Loop D's past days
    for point in history:
        alpaca.add_history_point(point.trading_day, float(point.equity))
    if history and history[0].base_value is not None:
        alpaca.set_history_base(float(history[0].base_value), history[0].base_value_asof)
    bars = market.get_bars(symbols, "1Min", bars_from, bars_to)
    for symbol, b in bars.items():
        alpaca.add_bars(symbol, [
            {"t": dt.datetime.fromtimestamp(int(t) / 1e9, dt.UTC).isoformat().replace("+00:00", "Z"),
             "o": float(o), "h": float(h), "l": float(lo), "c": float(c), "v": float(v), "n": 1, "vw": float(c)}
            for t, o, h, lo, c, v in zip(b.ts, b.open, b.high, b.low, b.close, b.volume, strict=True)
        ])


def normalise(value: Any) -> Any:
    """A warehouse value in a form equal across engines (exact decimals, UTC instants)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, float):
        return format(Decimal(repr(value)).normalize(), "f")
    return value
