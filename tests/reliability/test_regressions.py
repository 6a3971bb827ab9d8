"""Bugs the reliability tests found, each pinned by the smallest case that showed it.

* A record dead-lettered by two overlapping runs has two dead letters; replaying both published the
  record twice under one replay run, which counted one outcome and stayed RUNNING (found by the stateful
  test). Replay now publishes each record once and marks both dead letters replayed.
* During a broker outage, a batch's invalid records were retried with the batch and ended as
  ``MAX_ATTEMPTS`` without their field-level reasons (stateful test). Every check that needs no broker call
  now comes first; only the records waiting for the broker are retried.
* A hot document whose id cannot be a work item (a space, non-ASCII, over 128 characters) made the
  dispatcher raise a raw ``ValidationError``: the run FAILED, and with it every other record of the loop,
  every day (bad-input corpus). It is now dead-lettered by the dispatcher with the reason.
* A document whose own id field names another record (``position_id`` of a copied document) was counted
  as loaded while its content never reached the warehouse (rows are keyed by the record id). It is now a
  validation error on that field.
* A position whose status is neither OPEN nor CLOSED (``"closed"``) was never selected by Loop A, so never
  archived nor dead-lettered. Loop A now publishes it, and it is dead-lettered with the reason.
* A ``live_signals`` document of no known status (``"expired"``, a number, null) was never selected by
  Loop C (its queries filter on status), so never archived nor dead-lettered. Loop C now also asks for
  signals of no known status (``not-in``, and ``== null``), which reads only those, and they are
  dead-lettered with the reason.
* A work item naming a document that does not exist was dead-lettered with an empty field location; it
  now names ``doc_id``.
* A message body nested deeply enough (``[[[[...``) made the JSON parser raise ``RecursionError``, which no
  one caught: the whole batch was nacked until every message in it was dead-lettered ``MAX_ATTEMPTS``, and
  the dead-letter sink, parsing it again, failed forever (the local run never ended). It is now MALFORMED.
* A float of 1e19 or more in a money or quantity field (Firestore keeps numbers as doubles) raised
  ``decimal.InvalidOperation`` out of SchemaGuardian instead of a validation error (fuzzing); and values the
  models accept (up to 38 digits) overflowed Loop A's P&L arithmetic the same way. Both are now validation
  errors, and the record is dead-lettered.
* Any other failure raised while building a batch failed every item of the batch (on the local path, where
  subscribers take batches): one order the broker refuses (a 4xx) sent the whole batch to ``MAX_ATTEMPTS``
  without its reason. The batch is now built item by item when that happens: the refused item is
  dead-lettered with the broker's reason, an unexpected exception is retried for its item alone, and the
  others load (a transient failure of the whole batch still retries the batch).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from goldthread.errors import BrokerUnavailableError
from goldthread.ledger import runs
from goldthread.models import LivePosition, SchemaGuardian, SignalStatus
from goldthread.models.hot import RunStatus
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop
from goldthread.pipeline.replay import replay
from goldthread.writer import HotWriter

from tests.conftest import DS, NIGHT_AFTER, Clock, Factory, PinnedBroker, deliver, rows


def letters(ctx: Context) -> dict[str, dict[str, object]]:
    return {d["doc_id"]: d for d in rows(ctx, "dead_letters")}


def locs(letter: dict[str, object]) -> list[str]:
    return [e["loc"] for e in json.loads(str(letter["errors_json"]))]


def test_a_record_dead_lettered_by_two_overlapping_runs_is_replayed_once(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-1")
    make.raw_position("pos-bad", good, qty="-1")
    first, second = dispatch(ctx, "trades", DS), dispatch(ctx, "trades", DS)  # the first still in flight
    deliver(ctx)
    assert len([d for d in rows(ctx, "dead_letters") if d["doc_id"] == "pos-bad"]) == 2
    fixed = {**make.position_doc("pos-bad"), "qty": "3", "dead_lettered_run_id": None}  # the qty filled
    HotWriter(ctx.hot).save_position(SchemaGuardian.validate(LivePosition, fixed, "pos-bad"))
    report = replay(ctx)
    assert len(report.would_pass) == 2 and report.run is not None and report.run.published == 1
    deliver(ctx)
    done = runs.get_run(ctx, report.run.run_id)
    assert done is not None and (done.status, done.loaded, done.published) == (RunStatus.SUCCEEDED, 1, 1)
    assert len(rows(ctx, "dead_letter_replays")) == 2 and replay(ctx).would_pass == []
    for run in (first, second):
        final = runs.get_run(ctx, run.run_id)
        assert final is not None and final.reconciled


def test_invalid_records_keep_their_reasons_while_the_broker_is_down(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-good")
    make.raw_position("pos-bad-qty", good, qty="0")
    make.raw_position("pos-bad-version", good, strategy_version="9.9")
    broker = ctx.broker
    assert isinstance(broker, PinnedBroker)
    broker.fail_next = [BrokerUnavailableError("503") for _ in range(ctx.settings.max_delivery_attempts)]
    run = run_loop(ctx, "trades", DS)
    found = letters(ctx)
    assert found["pos-bad-qty"]["reason_code"] == "VALIDATION" and locs(found["pos-bad-qty"]) == ["qty"]
    assert found["pos-bad-version"]["reason_code"] == "SCD_CONFLICT"
    assert found["pos-good"]["reason_code"] == "MAX_ATTEMPTS"  # the only one that needed the broker
    assert broker.calls["get_orders"] == ctx.settings.max_delivery_attempts
    assert (run.status, run.published, run.dead_lettered) == (RunStatus.PARTIAL, 3, 3)


def test_a_document_id_that_cannot_be_a_work_item_is_dead_lettered_not_fatal(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-1")
    for bad_id in ("pos 2 with spaces", "pösition", "x" * 200):
        make.raw_position(bad_id, good)
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 4, 1, 3)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-1"]
    found = letters(ctx)
    assert set(found) == {"pos 2 with spaces", "pösition", "x" * 128}
    assert all(d["reason_code"] == "MALFORMED" and locs(d) == ["doc_id"] for d in found.values())
    assert replay(ctx, dry_run=True).not_replayable  # rewrite the record under a valid id instead
    again = run_loop(ctx, "trades", DS)  # marked: not dead-lettered again every day
    assert (again.published, len(rows(ctx, "dead_letters"))) == (0, 3)


def test_a_document_naming_another_record_is_refused(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    copy = make.position_doc("pos-1")
    ctx.hot.put("live_positions", "pos-2", {**copy, "qty": "999"})  # a copy-paste bug in the bot
    run = run_loop(ctx, "trades", DS)
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["reason_code"], locs(letter)) == ("pos-2", "VALIDATION", ["position_id"])
    assert (run.loaded, run.dead_lettered) == (1, 1)


def test_a_position_with_an_unknown_status_is_dead_lettered(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-1")
    make.raw_position("pos-lower", good, status="closed")
    make.raw_position("pos-number", good, status=3)
    make.raw_position("pos-open", good, status="OPEN", closed_at=None, exit_order_id=None)
    run = run_loop(ctx, "trades", DS)
    found = letters(ctx)
    assert set(found) == {"pos-lower", "pos-number"}  # a valid OPEN position simply waits
    assert all(locs(d) == ["status"] for d in found.values())
    assert (run.loaded, run.dead_lettered) == (1, 2)


def test_a_signal_with_an_unknown_status_is_dead_lettered_by_loop_c(
    ctx: Context, clock: Clock, make: Factory
) -> None:
    make.signal("sig-expired", status=SignalStatus.EXPIRED)
    make.signal("sig-executed", status=SignalStatus.EXECUTED)
    base = make.signal_doc("sig-expired")
    assert base is not None
    for doc_id, status in {"sig-lower": "expired", "sig-number": 3, "sig-null": None}.items():
        ctx.hot.put("live_signals", doc_id, {**base, "signal_id": doc_id, "status": status})
    clock.set(dt.datetime(2024, 3, 7, 3, tzinfo=dt.UTC))  # DS's look-ahead is over
    run = run_loop(ctx, "expired_signals", DS)
    found = letters(ctx)
    assert set(found) == {"sig-lower", "sig-number", "sig-null"}  # the executed signal is not Loop C's
    assert all(d["reason_code"] == "VALIDATION" and locs(d) == ["status"] for d in found.values())
    assert (run.published, run.loaded, run.dead_lettered) == (4, 1, 3)
    assert [r["signal_id"] for r in rows(ctx, "fact_signals_expired")] == ["sig-expired"]
    again = run_loop(ctx, "expired_signals", DS)  # marked: not dead-lettered again every day
    assert (again.published, len(rows(ctx, "dead_letters"))) == (0, 3)


def test_an_item_for_a_missing_document_names_doc_id(ctx: Context, make: Factory) -> None:
    data, attributes = WorkItem(
        run_id="trades-x", loop=Loop.TRADES, ds=DS, doc_id="pos-ghost", published_at=NIGHT_AFTER
    ).to_message()
    ctx.bus.publish(ctx.settings.topic(Loop.TRADES), data, attributes)
    deliver(ctx)
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["reason_code"], locs(letter)) == ("NOT_FOUND", ["doc_id"])


def test_a_deeply_nested_body_is_malformed_not_a_poison_pill(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    ctx.bus.publish(ctx.settings.topic(Loop.TRADES), b"[" * 100_000 + b"]" * 100_000, {"doc_id": "poison"})
    run = run_loop(ctx, "trades", DS)  # the poison is in the same batch as the two good items
    assert (run.status, run.loaded) == (RunStatus.SUCCEEDED, 2)
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["reason_code"], locs(letter)) == ("MALFORMED", ["data"])
    assert ctx.bus.stats()[ctx.settings.subscription(Loop.TRADES)]["nacked"] == 0  # type: ignore[attr-defined]


def test_numbers_too_large_for_nine_places_are_validation_errors(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-good")
    make.raw_position("pos-float", good, qty=1e300)
    # the broker filled that many, so only the computed P&L is out of range
    make.closed_trade("pos-huge", qty=Decimal("99999999999999999999999999999"), multiplier=Decimal("1e20"))
    run = run_loop(ctx, "trades", DS)
    found = letters(ctx)
    assert locs(found["pos-float"]) == ["qty"] and found["pos-float"]["reason_code"] == "VALIDATION"
    assert found["pos-huge"]["reason_code"] == "VALIDATION"  # valid inputs, a P&L beyond 38 digits
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 1, 2)
    assert ctx.bus.stats()[ctx.settings.subscription(Loop.TRADES)]["nacked"] == 0  # type: ignore[attr-defined]


def test_an_unexpected_failure_of_one_item_does_not_fail_its_batch(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goldthread.loops.trades import TradesLoop

    for name in ("pos-1", "pos-bug", "pos-2"):
        make.closed_trade(name)
    real = TradesLoop._row

    def buggy(self: TradesLoop, item: WorkItem, *args: Any) -> Any:
        if item.doc_id == "pos-bug":
            raise KeyError("a bug in a loop")
        return real(self, item, *args)

    monkeypatch.setattr(TradesLoop, "_row", buggy)
    run = run_loop(ctx, "trades", DS)
    assert {r["position_id"] for r in rows(ctx, "fact_trades")} == {"pos-1", "pos-2"}
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["reason_code"]) == ("pos-bug", "MAX_ATTEMPTS")
    stats = ctx.bus.stats()[ctx.settings.subscription(Loop.TRADES)]  # type: ignore[attr-defined]
    assert stats["nacked"] == ctx.settings.max_delivery_attempts  # pos-bug alone, never its neighbours
    assert (run.loaded, run.dead_lettered, run.reconciled) == (2, 1, True)


def test_one_order_the_broker_refuses_does_not_sink_its_batch(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goldthread.errors import BrokerRequestError

    for name in ("pos-1", "pos-refused", "pos-2"):
        make.closed_trade(name)
    broker = ctx.broker
    real = broker.get_orders

    def refuse(order_ids: Any) -> Any:
        if "pos-refused-entry" in order_ids:
            raise BrokerRequestError("order pos-refused-entry: Alpaca refused the request (HTTP 403)")
        return real(order_ids)

    monkeypatch.setattr(broker, "get_orders", refuse)
    run = run_loop(ctx, "trades", DS)
    assert {r["position_id"] for r in rows(ctx, "fact_trades")} == {"pos-1", "pos-2"}
    (letter,) = rows(ctx, "dead_letters")
    assert (letter["doc_id"], letter["reason_code"]) == ("pos-refused", "BROKER_REJECTED")
    assert "403" in letter["error_message"]
    assert ctx.bus.stats()[ctx.settings.subscription(Loop.TRADES)]["nacked"] == 0  # type: ignore[attr-defined]
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 2, 1)
