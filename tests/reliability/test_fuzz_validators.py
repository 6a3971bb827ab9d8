"""Guarantee 3, the validators themselves: whatever they are given, SchemaGuardian, ``WorkItem.from_message``
and ``message_from_event`` either accept it or raise their own validation error, never anything else (an
exception of another type escapes the dead-letter routing and poisons a whole batch).

Hypothesis generates the inputs: arbitrary JSON-like values, valid documents with fields replaced by
arbitrary values (so the fuzzing gets past the first checks and reaches the cross-field rules and the
number readers: huge, tiny, non-finite, too precise), arbitrary bytes and text as message bodies with
arbitrary attributes, and Pub/Sub envelopes with every part replaced. A last property goes one step
further: documents that pass validation with extreme but valid numbers must build into a warehouse row
or a permanent error, never crash the loop's arithmetic.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from goldthread.errors import MalformedMessageError, PermanentError, RecordValidationError
from goldthread.models import (
    ALL_TABLES,
    JobMetadata,
    LivePosition,
    LiveSignal,
    RejectedSignal,
    SchemaGuardian,
    Strategy,
)
from goldthread.models.warehouse import FactRow
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.ports.bus import BusMessage, event_from_message, message_from_event
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import DS, NIGHT_AFTER, Factory
from tests.reliability.harness import bump

pytestmark = pytest.mark.slow

UTC = dt.UTC
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
NUMBERS = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e308", "-1e-400", "1E+40", "0.0000000001", "99999999999999999999999999999.999999999",
                     "NaN", "sNaN", "Infinity", "-0", "1_000", " 12 ", "１２", "0x1F", "1e19", "12345678901234567890"]),
    st.floats(min_value=1e15, max_value=1e300),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40),
                    st.datetimes(timezones=st.none() | st.just(UTC)), st.dates())
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12),
                                                                                           inner, max_size=4),
                       max_leaves=12)
HOT_MODELS = (LivePosition, LiveSignal, RejectedSignal, Strategy, JobMetadata)
NOW = dt.datetime(2024, 3, 5, 15, 0, tzinfo=UTC)
VALID: dict[type, dict[str, Any]] = {
    LiveSignal: {"signal_id": "s1", "strategy_id": "momo", "strategy_version": "1.0", "symbol": "AAPL",
                 "asset_class": "equity", "side": "long", "signal_price": "100", "take_profit": "105",
                 "stop_loss": "97", "created_at": NOW.isoformat(),
                 "expires_at": (NOW + dt.timedelta(hours=4)).isoformat(), "status": "ACTIVE"},
    LivePosition: {"position_id": "p1", "signal_id": "s1", "strategy_id": "momo", "strategy_version": "1.0",
                   "symbol": "AAPL", "asset_class": "equity", "side": "long", "qty": "3", "entry_order_id": "o1",
                   "exit_order_id": "o2", "entry_filled_avg_price": "100.5", "exit_filled_avg_price": "101",
                   "opened_at": NOW.isoformat(), "closed_at": (NOW + dt.timedelta(hours=2)).isoformat(),
                   "status": "CLOSED", "est_fee_usd": "0.5"},
    Strategy: {"strategy_id": "momo", "version": "1.0", "params": {"a": 1}, "deployed_at": NOW.isoformat()},
    JobMetadata: {"run_id": "r1", "loop": "trades", "ds": "2024-03-05", "git_hash": "abc", "status": "RUNNING",
                  "started_at": NOW.isoformat(), "heartbeat_at": NOW.isoformat()},
}
VALID[RejectedSignal] = {**VALID[LiveSignal], "status": "REJECTED", "rejection_reason": "MAX_EXPOSURE",
                         "rejected_at": NOW.isoformat()}


TIMES = st.one_of(st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat()),
                  st.datetimes(timezones=st.just(UTC)), st.text(max_size=30), NUMBERS)


def mutated(model: type) -> st.SearchStrategy[dict[str, Any]]:
    """A valid document of ``model`` with one to three fields replaced (or removed, or added); numbers get
    numbers and times get times most of the time, so the fuzzing reaches the readers behind the types."""
    base = VALID[model]
    fields = [*sorted(base), "surprise"]

    def value_for(name: str) -> st.SearchStrategy[Any]:
        tailored = TIMES if name.endswith("_at") else NUMBERS if isinstance(base.get(name), str) and base[
            name].replace(".", "").isdigit() else st.text(max_size=40)
        return st.one_of(tailored, tailored, JSONISH, st.just(...))

    change = st.sampled_from(fields).flatmap(lambda name: st.tuples(st.just(name), value_for(name)))
    return st.lists(change, min_size=1, max_size=3).map(
        lambda changes: {k: v for k, v in {**base, **dict(changes)}.items() if v is not ...}
    )


@FUZZ
@given(model=st.sampled_from(HOT_MODELS), data=st.data())
def test_schema_guardian_raises_only_validation_errors(model: type, data: st.DataObject) -> None:
    document = data.draw(st.one_of(mutated(model), JSONISH) if model in VALID else JSONISH)
    try:
        SchemaGuardian.validate(model, document, "fuzz")
    except RecordValidationError as exc:
        assert exc.errors and all({"loc", "msg", "type"} <= set(e) for e in exc.errors)
    bump("fuzz", schema_guardian_inputs=1)


def _outcome(model: type, document: Any) -> Any:
    """The validated model, or the sorted fields the refusal names. The error *type* is left out on
    purpose: pydantic-core's JSON parser reads an integer beyond 64 bits as a big int, which its datetime
    validator reports as ``datetime_type`` where the same Python int gives ``datetime_parsing``; both
    refuse the same field, with a reason, and that is the promise."""
    try:
        return SchemaGuardian.validate(model, document, "fuzz")
    except RecordValidationError as exc:
        assert all(e["msg"] for e in exc.errors)
        return sorted(e["loc"] for e in exc.errors)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_a_time_beyond_64_bits_is_refused_by_name_from_text_and_mapping(value: int) -> None:
    """Found by the fuzzing in CI: an integer time wider than 64 bits. Both readings refuse it and name
    ``closed_at``; the loaded row count cannot depend on which path read the document."""
    from goldthread.adapters.jsonish import dumps, loads

    text = dumps({**VALID[LivePosition], "closed_at": value})
    assert _outcome(LivePosition, text) == _outcome(LivePosition, loads(text)) == ["closed_at"]


@FUZZ
@given(model=st.sampled_from(HOT_MODELS), data=st.data())
def test_guardian_reads_json_text_as_it_reads_mappings(model: type, data: st.DataObject) -> None:
    """The SQLite store hands SchemaGuardian a document's JSON text (parsed while validated); the same
    document parsed first must be accepted or refused alike, with the same fields named."""
    from goldthread.adapters.jsonish import dumps, loads

    document = data.draw(st.one_of(mutated(model), JSONISH) if model in VALID else JSONISH)
    if not isinstance(document, dict):
        document = {"value": document}
    try:
        text = dumps(document)  # what the store keeps
    except ValueError:  # a naive datetime: the store refuses to keep it at all
        assume(False)
    assert _outcome(model, text) == _outcome(model, loads(text))
    bump("fuzz", schema_guardian_inputs=1)


@FUZZ
@given(model=st.sampled_from(ALL_TABLES), changes=st.dictionaries(st.text(max_size=20), JSONISH, max_size=4))
def test_warehouse_rows_raise_only_validation_errors(model: type, changes: dict[str, Any]) -> None:
    with contextlib.suppress(RecordValidationError):
        SchemaGuardian.validate(model, changes, "fuzz")
    bump("fuzz", schema_guardian_inputs=1)


GOOD_ITEM = WorkItem(run_id="r1", loop=Loop.TRADES, ds=DS, doc_id="p1", published_at=NIGHT_AFTER)
ATTRIBUTES = st.dictionaries(st.sampled_from(["run_id", "loop", "ds", "doc_id", "schema_version", "x"]) | st.text(),
                             st.text(max_size=30), max_size=6)


def item_bodies() -> st.SearchStrategy[bytes]:
    good = GOOD_ITEM.model_dump(mode="json")
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        JSONISH.map(lambda v: json.dumps(v, default=str).encode()),
        st.dictionaries(st.sampled_from([*sorted(good), "extra"]), JSONISH, max_size=7).map(
            lambda d: json.dumps({**good, **d}, default=str).encode()),
        st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, len(json.dumps(good))).map(lambda n: json.dumps(good).encode()[:n]),
    )


@FUZZ
@given(body=item_bodies(), attributes=st.none() | ATTRIBUTES)
def test_work_item_from_message_raises_only_malformed_message(body: bytes, attributes: dict[str, str] | None) -> None:
    try:
        item = WorkItem.from_message(body, attributes)
    except MalformedMessageError as exc:
        assert exc.errors and exc.reason_code == "MALFORMED"
    else:
        assert item.to_message()[1].items() >= {k: v for k, v in (attributes or {}).items()
                                                if k in ("run_id", "loop", "doc_id")}.items()
    bump("fuzz", work_item_inputs=1)


def envelopes() -> st.SearchStrategy[Any]:
    good = event_from_message(BusMessage(b"{}", {"a": "b"}, "m1", NIGHT_AFTER, "t"), "p", "s")
    message = dict(good.data["message"])
    parts = st.fixed_dictionaries({}, optional={
        "data": JSONISH | st.binary(max_size=50) | st.text(max_size=50).map(
            lambda t: base64.b64encode(t.encode()).decode()),
        "attributes": JSONISH, "messageId": JSONISH, "publishTime": JSONISH | st.text(max_size=40),
        "message_id": JSONISH,
    })
    return st.one_of(
        SCALARS, JSONISH,
        parts.map(lambda m: CloudEvent(dict(good._attributes), {"message": {**message, **m}, "subscription": "s"})),
        st.tuples(parts, JSONISH).map(lambda p: CloudEvent(dict(good._attributes), {"message": p[0],
                                                                                       "deliveryAttempt": p[1]})),
        JSONISH.map(lambda d: CloudEvent(dict(good._attributes), d)),
        st.text(max_size=300).map(lambda t: CloudEvent(dict(good._attributes), t)),
    )


@FUZZ
@given(event=envelopes())
def test_message_from_event_raises_only_malformed_message(event: Any) -> None:
    try:
        message = message_from_event(event)
    except MalformedMessageError:
        pass
    else:
        assert isinstance(message.data, bytes) and isinstance(message.delivery_attempt, int)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.attributes.items())
    bump("fuzz", envelope_inputs=1)


def test_message_from_event_survives_deeply_nested_text() -> None:
    good = event_from_message(BusMessage(b"{}", {}, "m1", NIGHT_AFTER, "t"), "p", "s")
    with pytest.raises(MalformedMessageError):
        message_from_event(CloudEvent(dict(good._attributes), "[" * 100_000 + "]" * 100_000))


EXTREME = st.one_of(st.decimals(min_value=Decimal("1e-9"), max_value=Decimal("9" * 29), places=9),
                    st.sampled_from([Decimal("1e-9"), Decimal("99999999999999999999999999999"), Decimal("1e20")]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(qty=EXTREME, entry=EXTREME, exit_=EXTREME, fee=EXTREME, multiplier=EXTREME)
def test_valid_extreme_positions_build_a_row_or_a_permanent_error(
    ctx: Context, make: Factory, qty: Decimal, entry: Decimal, exit_: Decimal, fee: Decimal, multiplier: Decimal
) -> None:
    """Numbers the models accept (up to 38 digits, 9 places) must not break the loop's arithmetic."""
    from goldthread.loops import get_loop

    if ctx.hot.get("live_positions", "pos-x") is None:
        make.closed_trade("pos-x")
        get_loop("trades").prepare(ctx, DS, [])  # dim_strategy, so the row is built to the end
    doc = {**make.position_doc("pos-x"), "qty": str(qty), "entry_filled_avg_price": str(entry),
           "exit_filled_avg_price": str(exit_), "est_fee_usd": str(fee), "multiplier": str(multiplier)}
    try:
        SchemaGuardian.validate(LivePosition, doc, "pos-x")
    except RecordValidationError:
        assume(False)
    ctx.hot.put("live_positions", "pos-x", doc)
    item = WorkItem(run_id="r1", loop=Loop.TRADES, ds=DS, doc_id="pos-x", published_at=NIGHT_AFTER)
    outcome = get_loop("trades").build(ctx, [item])[item.item_id]
    assert isinstance(outcome, FactRow | PermanentError), outcome
    bump("fuzz", extreme_positions=1)
