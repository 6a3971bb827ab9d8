"""Every row tells the truth: strict inputs, bounded times, exact flags, a real git hash, a documented CAT rate.

Each bug of issue 13 (parts 6, 7, 9, 10) is pinned here, most of them written straight into the hot store as
a buggy bot writing Firestore would (``ctx.hot.put``), bypassing the writer API:

* a timestamp that overflows when converted to UTC (``9999-12-31T23:00:00-05:00``, ``0001-01-01T00:30:00+05:00``)
  or to nanoseconds (a year before 1677) crashed the dispatcher with a raw ``OverflowError`` (the run FAILED,
  and every later run of the loop too) or ended as ``MAX_ATTEMPTS`` with no field named. Times are now bounded
  to ``[1970, 2100)`` UTC and each such record is one dead letter, ``VALIDATION``, naming its field, while the
  day's valid records load and a second run succeeds;
* an expired signal created in year 1 made one run fetch ~300k days of bars; a Loop C signal living longer
  than ``GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS`` is now dead-lettered on ``expires_at`` and asks for no bars;
* ``is_missed_moonshot`` was false for a stored ``max_mfe_pct`` of exactly 10.000000000 against a threshold
  of 10 (float rounding decided the flag); it is now decided on the stored decimal;
* ``is_canary: "yes"`` was read as true, hiding a real trade from every mart; booleans are now strict;
* an item whose build raises an arithmetic or value error was retried to ``MAX_ATTEMPTS``; it is now a
  ``VALIDATION`` dead letter at once;
* ``job_metadata.git_hash`` was ``unknown`` for every run made from a git checkout.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import inspect
import json
import subprocess
import typing
from collections.abc import Iterator, Sequence
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from goldthread.adapters.synthetic_market_data import FileMarketData
from goldthread.analytics.fees import CAT_FEE_ENV, CAT_FEE_PER_SHARE, FeeSchedule, cat_fee_per_share
from goldthread.config import Settings, load_settings, resolve_git_hash
from goldthread.errors import ConfigError
from goldthread.ledger import runs
from goldthread.loops.base import parse_time
from goldthread.models import SchemaGuardian, SignalStatus
from goldthread.models import broker as broker_models
from goldthread.models import hot as hot_models
from goldthread.models import work_items as work_item_models
from goldthread.models.hot import RunStatus
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import REJECTED, SIGNALS
from pydantic import BaseModel, ValidationError

from tests.conftest import DS, NIGHT_AFTER, UTC, Clock, Factory, deliver, embedded_context, rows
from tests.support.recording import CountingMarketData

OVERFLOW_UP = "9999-12-31T23:00:00-05:00"  # 10000-01-01T04:00Z: astimezone(UTC) overflows
OVERFLOW_DOWN = "0001-01-01T00:30:00+05:00"  # 0000-12-31T19:30Z: astimezone(UTC) overflows
BEFORE_1677 = "1600-01-01T00:00:00Z"  # outside int64 nanoseconds
YEAR_ONE = "0001-01-01T00:00:00Z"
C_READY = dt.datetime(2024, 3, 7, 3, tzinfo=UTC)  # DS's 24 h look-ahead is over
B_READY = dt.datetime(2024, 3, 13, 3, tzinfo=UTC)  # DS's 7-day validity window is over


def letters(ctx: Context) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in rows(ctx, "dead_letters")}


def errors(letter: dict[str, Any]) -> list[dict[str, str]]:
    return json.loads(str(letter["errors_json"]))  # type: ignore[no-any-return]


def locs(letter: dict[str, Any]) -> list[str]:
    return [e["loc"] for e in errors(letter)]


def nacked(ctx: Context, loop: Loop) -> int:
    return int(ctx.bus.stats()[ctx.settings.subscription(loop)]["nacked"])  # type: ignore[attr-defined]


def assert_one_letter_each(ctx: Context, expected: dict[str, list[str]]) -> None:
    """Exactly these records are dead-lettered, once each, VALIDATION, naming these fields."""
    found = letters(ctx)
    assert len(rows(ctx, "dead_letters")) == len(expected)
    assert {doc_id: sorted(locs(found[doc_id])) for doc_id in found} == {k: sorted(v) for k, v in expected.items()}
    assert {d["reason_code"] for d in found.values()} == {"VALIDATION"}


def assert_second_run_is_clean(ctx: Context, loop: str) -> None:
    """The dead-lettered records are marked: the next run publishes nothing and does not fail."""
    again = run_loop(ctx, loop, DS)
    assert again.status is not RunStatus.FAILED and again.error is None
    assert again.published == 0


# --- strict booleans ---------------------------------------------------------------------------------------


def _models(module: Any) -> list[type[BaseModel]]:
    return [m for _, m in inspect.getmembers(module, inspect.isclass)
            if issubclass(m, BaseModel) and m.__module__ == module.__name__]


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or bool in typing.get_args(annotation)


BOOL_FIELDS = [(model, name) for module in (hot_models, broker_models, work_item_models) for model in _models(module)
               for name, field in model.model_fields.items() if _is_bool(field.annotation)]


def test_the_input_models_have_bool_fields_to_check() -> None:
    assert {(m.__name__, n) for m, n in BOOL_FIELDS} >= {("LiveSignal", "is_canary"), ("LivePosition", "is_canary")}


@pytest.mark.parametrize(("model", "name"), BOOL_FIELDS, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("value", ["yes", 1, "true", "True", 0, "no", "1"])
def test_every_bool_of_the_input_models_takes_only_true_or_false(model: type[BaseModel], name: str,
                                                                   value: Any) -> None:
    for data in ({name: value}, json.dumps({name: value})):  # a mapping (Firestore) and JSON text (SQLite)
        with pytest.raises(ValidationError) as caught:
            model.model_validate_json(data) if isinstance(data, str) else model.model_validate(data)
        assert [e["type"] for e in caught.value.errors() if e["loc"] == (name,)] == ["bool_type"]
    for ok in (True, False):
        problems = []
        try:
            model.model_validate({name: ok})
        except ValidationError as exc:
            problems = [e for e in exc.errors() if e["loc"] == (name,)]
        assert problems == []


def test_is_canary_yes_is_dead_lettered_and_the_real_trade_is_not_hidden(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-1")
    make.raw_position("pos-yes", good, is_canary="yes")
    make.raw_position("pos-one", good, is_canary=1)
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 3, 1, 2)
    assert [(r["position_id"], r["is_canary"]) for r in rows(ctx, "fact_trades")] == [("pos-1", False)]
    assert_one_letter_each(ctx, {"pos-yes": ["is_canary"], "pos-one": ["is_canary"]})
    assert nacked(ctx, Loop.TRADES) == 0
    assert_second_run_is_clean(ctx, "trades")


# --- bounded times -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "accepted"), [
    ("1970-01-01T00:00:00Z", True),
    ("1969-12-31T23:59:59.999999Z", False),
    ("2099-12-31T23:59:59.999999Z", True),
    ("2100-01-01T00:00:00Z", False),
    ("2099-12-31T23:00:00-05:00", False),  # 2100-01-01T04:00Z
    ("1970-01-01T04:00:00+05:00", False),  # 1969-12-31T23:00Z
    (OVERFLOW_UP, False), (OVERFLOW_DOWN, False), (BEFORE_1677, False), (YEAR_ONE, False),
])
def test_times_are_bounded_and_overflows_are_field_errors(text: str, accepted: bool) -> None:
    doc = {"strategy_id": "momo", "version": "1.0", "deployed_at": text}
    assert (parse_time(text) is not None) is accepted
    for data in (doc, json.dumps(doc)):
        try:
            SchemaGuardian.validate(hot_models.Strategy, data, "momo:1.0")
            outcome: Any = "ok"
        except Exception as exc:  # a RecordValidationError, never a raw OverflowError
            outcome = (type(exc).__name__, [e["loc"] for e in exc.errors])  # type: ignore[attr-defined]
        assert outcome == ("ok" if accepted else ("RecordValidationError", ["deployed_at"]))


def test_parse_time_reads_a_python_datetime_out_of_range_as_unreadable() -> None:
    far = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=5)))
    assert parse_time(far) is None
    assert parse_time(dt.datetime(1600, 1, 1, tzinfo=UTC)) is None
    assert parse_time(dt.datetime(2024, 3, 5, 10, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == dt.datetime(
        2024, 3, 5, 9, tzinfo=UTC)


@pytest.mark.parametrize(("field", "value"), [
    ("closed_at", OVERFLOW_UP), ("closed_at", OVERFLOW_DOWN), ("closed_at", BEFORE_1677),
    ("opened_at", OVERFLOW_UP), ("opened_at", OVERFLOW_DOWN), ("opened_at", BEFORE_1677),
])
def test_loop_a_dead_letters_an_overflowing_position_time_by_name(
    ctx: Context, make: Factory, field: str, value: str
) -> None:
    good = make.closed_trade("pos-1")
    make.raw_position("pos-bad", good, **{field: value})
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-1"]
    assert_one_letter_each(ctx, {"pos-bad": [field]})
    assert nacked(ctx, Loop.TRADES) == 0
    assert_second_run_is_clean(ctx, "trades")


@pytest.mark.parametrize("field", ["created_at", "expires_at"])
def test_loop_a_names_the_overflowing_time_of_a_positions_signal(ctx: Context, make: Factory, field: str) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    signal = make.signal_doc("sig-pos-2")
    assert signal is not None
    ctx.hot.put(SIGNALS, "sig-pos-2", {**signal, field: OVERFLOW_UP})
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 1, 1)
    assert_one_letter_each(ctx, {"pos-2": [f"signal.{field}"]})


@pytest.mark.parametrize(("field", "value"), [
    ("created_at", OVERFLOW_UP), ("created_at", OVERFLOW_DOWN), ("created_at", YEAR_ONE),
    ("expires_at", OVERFLOW_UP), ("expires_at", OVERFLOW_DOWN), ("expires_at", BEFORE_1677),
    ("rejected_at", OVERFLOW_UP),
])
def test_loop_b_dead_letters_an_overflowing_rejected_signal_time_by_name(
    ctx: Context, clock: Clock, make: Factory, field: str, value: str
) -> None:
    make.signal("r-good", created_at=dt.datetime(2024, 3, 5, 15, tzinfo=UTC))
    good = make.writer.reject_signal("r-good", "MAX_EXPOSURE", dt.datetime(2024, 3, 5, 15, tzinfo=UTC))
    base = {**good.model_dump(mode="json"), "signal_id": "r-bad"}
    ctx.hot.put(REJECTED, "r-bad", {**base, field: value})
    clock.set(B_READY)
    run = run_loop(ctx, "rejected_signals", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    assert [r["signal_id"] for r in rows(ctx, "fact_rejected_signals")] == ["r-good"]
    assert_one_letter_each(ctx, {"r-bad": [field]})
    assert nacked(ctx, Loop.REJECTED_SIGNALS) == 0
    assert_second_run_is_clean(ctx, "rejected_signals")


@pytest.fixture
def feed() -> CountingMarketData:
    return CountingMarketData()


@pytest.fixture
def ctx_c(tmp_path: Path, clock: Clock, settings: Settings, feed: CountingMarketData) -> Iterator[Context]:
    """The embedded context of ``conftest.ctx`` with a market-data feed that records its requests."""
    context = embedded_context(tmp_path, clock, settings, feed)
    yield context
    context.close()


def _expired_pair(ctx: Context, **bad: Any) -> None:
    """A valid EXPIRED signal ``c-good`` (AAPL, DS 10:00 to 14:00) and a copy ``c-bad`` with ``bad`` fields."""
    make = Factory(ctx)
    make.strategy()
    make.signal("c-good", created_at=dt.datetime(2024, 3, 5, 10, tzinfo=UTC), status=SignalStatus.EXPIRED)
    base = make.signal_doc("c-good")
    assert base is not None
    ctx.hot.put(SIGNALS, "c-bad", {**base, "signal_id": "c-bad", **bad})


def _asked_days(feed: CountingMarketData) -> set[dt.date]:
    days: set[dt.date] = set()
    for _, start, end in feed.requests:
        day = start.date()
        while dt.datetime.combine(day, dt.time(), UTC) < end:
            days.add(day)
            day += dt.timedelta(days=1)
    return days


@pytest.mark.parametrize(("field", "value"), [
    ("created_at", OVERFLOW_UP), ("created_at", OVERFLOW_DOWN), ("created_at", BEFORE_1677),
    ("expires_at", OVERFLOW_UP), ("expires_at", OVERFLOW_DOWN), ("expires_at", BEFORE_1677),
])
def test_loop_c_dead_letters_an_overflowing_signal_time_by_name(
    ctx_c: Context, clock: Clock, feed: CountingMarketData, field: str, value: str
) -> None:
    _expired_pair(ctx_c, **{field: value})
    clock.set(C_READY)
    run = run_loop(ctx_c, "expired_signals", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1, 1)
    assert [r["signal_id"] for r in rows(ctx_c, "fact_signals_expired")] == ["c-good"]
    assert_one_letter_each(ctx_c, {"c-bad": [field]})
    assert nacked(ctx_c, Loop.EXPIRED_SIGNALS) == 0
    assert _asked_days(feed) <= {DS, DS + dt.timedelta(days=1)}  # the good signal's life and look-ahead only
    assert_second_run_is_clean(ctx_c, "expired_signals")


def test_a_signal_created_in_year_one_asks_for_no_bars(ctx_c: Context, clock: Clock, feed: CountingMarketData) -> None:
    _expired_pair(ctx_c, created_at=YEAR_ONE)
    clock.set(C_READY)
    run = run_loop(ctx_c, "expired_signals", DS)
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 1, 1)
    assert_one_letter_each(ctx_c, {"c-bad": ["created_at"]})
    assert _asked_days(feed) <= {DS, DS + dt.timedelta(days=1)}
    assert run.details["bar_requests"] <= 1


@pytest.mark.parametrize(("created", "dead"), [
    (dt.datetime(2024, 1, 1, tzinfo=UTC), True),  # 64 days
    (dt.datetime(2024, 2, 3, 14, tzinfo=UTC), False),  # 31 days exactly: allowed
    (dt.datetime(2024, 2, 3, 13, 59, tzinfo=UTC), True),  # a minute more
])
def test_a_loop_c_signal_living_longer_than_the_setting_is_dead_lettered_on_expires_at(
    ctx_c: Context, clock: Clock, feed: CountingMarketData, created: dt.datetime, dead: bool
) -> None:
    assert ctx_c.settings.max_signal_lifetime == dt.timedelta(days=31)  # the default
    _expired_pair(ctx_c, created_at=created.isoformat())  # expires 2024-03-05 14:00
    clock.set(C_READY)
    run = run_loop(ctx_c, "expired_signals", DS)
    assert run.status is (RunStatus.PARTIAL if dead else RunStatus.SUCCEEDED)
    if dead:
        assert_one_letter_each(ctx_c, {"c-bad": ["expires_at"]})
        (error,) = errors(letters(ctx_c)["c-bad"])
        assert error["type"] == "lifetime_too_long" and "GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS" in error["msg"]
        assert min(_asked_days(feed)) == DS  # the dispatcher never asked bars for the long signal's life
    else:
        assert {r["signal_id"] for r in rows(ctx_c, "fact_signals_expired")} == {"c-good", "c-bad"}
        assert min(_asked_days(feed)) == created.date()


@pytest.mark.parametrize(("settings", "lifetime"), [({"GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS": "2"}, 2), ({}, 31)])
def test_the_signal_lifetime_is_a_setting(settings: dict[str, str], lifetime: int) -> None:
    assert load_settings({**settings, "GOLDTHREAD_GIT_HASH": "x"}).max_signal_lifetime == dt.timedelta(days=lifetime)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "abc", "100000"])
def test_a_bad_signal_lifetime_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"MAX_SIGNAL_LIFETIME_DAYS|not a number"):
        load_settings({"GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS": value, "GOLDTHREAD_GIT_HASH": "x"})


def test_loop_b_asks_for_its_validity_window_only(ctx_c: Context, clock: Clock, feed: CountingMarketData) -> None:
    make = Factory(ctx_c)
    make.strategy()
    make.signal("r-1", created_at=dt.datetime(2024, 3, 5, 15, tzinfo=UTC))
    good = make.writer.reject_signal("r-1", "MAX_EXPOSURE", dt.datetime(2024, 3, 5, 15, tzinfo=UTC))
    far = {**good.model_dump(mode="json"), "signal_id": "r-2", "expires_at": "2099-01-01T00:00:00Z"}
    ctx_c.hot.put(REJECTED, "r-2", far)  # a valid, absurdly long life: Loop B's window does not depend on it
    clock.set(B_READY)
    run = run_loop(ctx_c, "rejected_signals", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 2)
    assert _asked_days(feed) <= {DS + dt.timedelta(days=i) for i in range(8)}  # created_at + 7 days


def test_a_work_item_with_an_overflowing_published_at_is_malformed(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    item = WorkItem(run_id="trades-x", loop=Loop.TRADES, ds=DS, doc_id="pos-1", published_at=NIGHT_AFTER)
    data, attributes = item.to_message()
    body = json.loads(data)
    body["published_at"] = OVERFLOW_UP
    ctx.bus.publish(ctx.settings.topic(Loop.TRADES), json.dumps(body).encode(), attributes)
    deliver(ctx)
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["reason_code"], locs(letter)) == ("MALFORMED", ["published_at"])


# --- permanent problems are never MAX_ATTEMPTS -------------------------------------------------------------


@pytest.mark.parametrize("error", [OverflowError("date value out of range"), ValueError("year 0 is out of range"),
                                   ArithmeticError("too large")])
def test_an_item_whose_own_values_break_the_maths_is_dead_lettered_at_once(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    from goldthread.loops.trades import TradesLoop

    for name in ("pos-1", "pos-bad", "pos-2"):
        make.closed_trade(name)
    real = TradesLoop.build

    def breaks(self: TradesLoop, ctx: Context, items: Sequence[WorkItem]) -> Any:
        if any(item.doc_id == "pos-bad" for item in items):  # as a helper the loop calls would raise it
            raise error
        return real(self, ctx, items)

    monkeypatch.setattr(TradesLoop, "build", breaks)
    run = run_loop(ctx, "trades", DS)
    assert {r["position_id"] for r in rows(ctx, "fact_trades")} == {"pos-1", "pos-2"}
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["reason_code"]) == ("pos-bad", "VALIDATION")
    assert type(error).__name__ in errors(letter)[0]["msg"]
    assert nacked(ctx, Loop.TRADES) == 0  # dead-lettered at once, not retried to MAX_ATTEMPTS
    assert (run.status, run.loaded, run.dead_lettered, run.reconciled) == (RunStatus.PARTIAL, 2, 1, True)


# --- exact flags -------------------------------------------------------------------------------------------


@pytest.fixture
def bars_file(tmp_path: Path) -> Path:
    """1.05 -> 1.155 is exactly +10 %, which float arithmetic reads as 9.999999999999998 %; 1.154 is 9.90 %."""
    path = tmp_path / "bars.csv"
    path.write_text("symbol,ts,open,high,low,close,volume,timeframe\n"  # one bar each: its length is stated
                    "TEN,2024-03-05T10:00:00Z,1.05,1.155,1.05,1.1,100,1Min\n"
                    "NINE,2024-03-05T10:00:00Z,1.05,1.154,1.05,1.1,100,1Min\n")
    return path


@pytest.fixture
def ctx_file(tmp_path: Path, clock: Clock, settings: Settings, bars_file: Path) -> Iterator[Context]:
    context = embedded_context(tmp_path, clock, settings, FileMarketData(bars_file))
    yield context
    context.close()


def test_the_float_maths_really_falls_short_of_ten_percent() -> None:
    assert (1.155 - 1.05) / 1.05 * 100.0 < 10  # the trap the flag fell into
    assert (D("1.155") - D("1.05")) / D("1.05") * 100 == 10


def test_a_max_mfe_of_exactly_the_threshold_is_a_missed_moonshot(ctx_file: Context, clock: Clock) -> None:
    base = {"strategy_id": "momo", "strategy_version": "1.0", "asset_class": "equity", "side": "long",
            "signal_price": "1.05", "take_profit": "1.2", "stop_loss": "1", "created_at": "2024-03-05T10:00:00Z",
            "expires_at": "2024-03-05T14:00:00Z", "status": "EXPIRED",
            "archived_run_id": None, "dead_lettered_run_id": None}  # the bookkeeping every bot writes (guarantees)
    for symbol in ("TEN", "NINE"):  # straight into the hot store, as a bot writing Firestore would
        ctx_file.hot.put(SIGNALS, f"s-{symbol}", {**base, "signal_id": f"s-{symbol}", "symbol": symbol})
    clock.set(C_READY)
    run = run_loop(ctx_file, "expired_signals", DS)
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 2)
    found = {r["signal_id"]: r for r in rows(ctx_file, "fact_signals_expired")}
    ten, nine = found["s-TEN"], found["s-NINE"]
    assert (ten["max_mfe_pct"], ten["moonshot_threshold_pct"], ten["is_missed_moonshot"]) == (D(10), D(10), True)
    assert nine["max_mfe_pct"] == D("9.904761905")  # 0.104 / 1.05, rounded to 9 places
    assert nine["is_missed_moonshot"] is False


def test_every_stored_flag_agrees_with_its_stored_decimal(ctx_file: Context, clock: Clock) -> None:
    """The flag a mart reads and the number beside it never disagree (``max_mfe_pct >= threshold``)."""
    test_a_max_mfe_of_exactly_the_threshold_is_a_missed_moonshot(ctx_file, clock)
    for row in rows(ctx_file, "fact_signals_expired"):
        assert row["is_missed_moonshot"] is (row["max_mfe_pct"] >= row["moonshot_threshold_pct"])


# --- git hash ----------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_git_hash_is_the_commit_of_the_checkout_holding_the_package(tmp_path: Path) -> None:
    package = tmp_path / "repo" / "goldthread"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", "goldthread/__init__.py")
    _git(tmp_path / "repo", "commit", "-q", "-m", "first")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD")
    assert len(head) == 40
    assert resolve_git_hash(package) == head


def test_git_hash_ignores_a_checkout_that_does_not_track_the_package(tmp_path: Path) -> None:
    package = tmp_path / "repo" / "venv" / "goldthread"  # a virtualenv inside some other project's checkout
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "repo" / "README").write_text("other project")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", "README")
    _git(tmp_path / "repo", "commit", "-q", "-m", "first")
    assert resolve_git_hash(package) == f"goldthread-{importlib.metadata.version('goldthread')}"


def test_git_hash_outside_a_checkout_is_the_installed_version_or_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_git_hash(tmp_path) == f"goldthread-{importlib.metadata.version('goldthread')}"  # 0.1.0 now

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert resolve_git_hash.__wrapped__(tmp_path / "elsewhere") == "unknown"


def test_the_env_var_wins_and_an_unset_one_resolves_this_checkout() -> None:
    assert load_settings({"GOLDTHREAD_GIT_HASH": "abc123"}).git_hash == "abc123"
    import goldthread

    package = Path(goldthread.__file__).resolve().parent  # the suite runs from a checkout
    assert load_settings({}).git_hash == _git(package, "rev-parse", "HEAD")


def test_a_run_records_the_resolved_git_hash(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    ctx.settings = ctx.settings.with_(git_hash=load_settings({}).git_hash)
    run = run_loop(ctx, "trades", DS)
    stored = runs.get_run(ctx, run.run_id)
    assert stored is not None and stored.git_hash not in ("", "unknown")


# --- CAT fee rate ------------------------------------------------------------------------------------------


def test_the_cat_rate_is_the_published_one_unless_the_operator_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAT_FEE_ENV, raising=False)
    assert str(CAT_FEE_PER_SHARE) == "0.000035"  # CAT Fee 2024-1, FINRA Rule 6897
    assert FeeSchedule().cat_per_share == D("0.000035")
    monkeypatch.setenv(CAT_FEE_ENV, "0.000048")
    assert FeeSchedule().cat_per_share == D("0.000048")
    assert FeeSchedule(cat_per_share=D(0)).cat_per_share == 0  # an explicit schedule still wins


@pytest.mark.parametrize("value", ["abc", "-0.00001", "NaN", "Infinity", "1"])
def test_a_bad_cat_rate_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=CAT_FEE_ENV):
        cat_fee_per_share({CAT_FEE_ENV: value})
