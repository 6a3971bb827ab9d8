"""Failures end in the dead letters, with reasons, and come back through replay once fixed.

* a transient failure (the broker answering 429) is retried by the bus and succeeds while attempts
  remain; after the maximum attempts the bus dead-letters it and the sink records it as MAX_ATTEMPTS;
* a bad record goes straight to the dead letters with field-level reasons (not retried) while the
  rest of the run loads; a message that is not even a work item is recorded as MALFORMED;
* ``replay --dry-run`` reports what would pass and what still fails without writing anything; a real
  replay after the fix loads the record under a new ``replay`` run, and a dead letter is replayed once.
Every run's counts reconcile.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from goldthread.errors import BrokerUnavailableError
from goldthread.ledger import runs
from goldthread.models import JobMetadata, LivePosition, Loop, SchemaGuardian
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import REASON_ATTRIBUTE, SOURCE_TOPIC_ATTRIBUTE, list_dead_letters
from goldthread.pipeline.local_runtime import run_loop
from goldthread.pipeline.replay import replay
from goldthread.ports.bus import message_from_event
from goldthread.writer import HotWriter

from tests.conftest import DS, UTC, Factory, PinnedBroker, deliver, rows

DS_START_OF_DAY = dt.datetime.combine(DS, dt.time(), UTC)


def broker(ctx: Context) -> PinnedBroker:
    b = ctx.broker
    assert isinstance(b, PinnedBroker)
    return b


def final(ctx: Context, run: JobMetadata) -> JobMetadata:
    got = runs.get_run(ctx, run.run_id)
    assert got is not None
    return got


def assert_reconciled(run: JobMetadata) -> None:
    assert run.published == run.loaded + run.duplicates + run.dead_lettered, run


def trades_subscription(ctx: Context) -> Any:
    return ctx.bus.subscription(ctx.settings.subscription(Loop.TRADES))  # type: ignore[attr-defined]


def error_locs(letter: dict[str, Any]) -> list[str]:
    return [e["loc"] for e in json.loads(letter["errors_json"])]


# -- transient failures ------------------------------------------------------------------------------


def test_transient_failure_is_retried_and_succeeds_before_the_limit(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    make.closed_trade("pos-2")
    attempts = ctx.settings.max_delivery_attempts
    broker(ctx).fail_next = [BrokerUnavailableError("429 too many requests")] * (attempts - 1)
    run = run_loop(ctx, "trades", DS)
    assert broker(ctx).calls["get_orders"] == attempts  # one call per delivery of the batch
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.SUCCEEDED, 2, 0)
    sub = trades_subscription(ctx)
    assert (sub.nacked, sub.dead_lettered) == (2 * (attempts - 1), 0)
    assert rows(ctx, "dead_letters") == []
    assert len(rows(ctx, "fact_trades")) == 2
    assert_reconciled(run)


def test_transient_failure_is_dead_lettered_after_the_maximum_attempts(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-1")
    attempts = ctx.settings.max_delivery_attempts
    broker(ctx).fail_next = [BrokerUnavailableError("503 from the broker")] * attempts
    run = run_loop(ctx, "trades", DS)

    assert broker(ctx).calls["get_orders"] == attempts
    assert broker(ctx).fail_next == []
    assert trades_subscription(ctx).dead_lettered == 1
    assert rows(ctx, "fact_trades") == []
    (letter,) = rows(ctx, "dead_letters")
    assert letter["reason_code"] == "MAX_ATTEMPTS"
    assert letter["delivery_attempts"] == attempts
    assert (letter["loop"], letter["doc_id"], letter["item_ds"]) == ("trades", "pos-1", DS)
    assert letter["run_id"] == run.run_id
    assert letter["topic"] == ctx.settings.subscription(Loop.TRADES)
    assert f"delivery failed {attempts} times" in letter["error_message"]
    assert "CloudPubSubDeadLetterSource" not in letter["attributes_json"]  # the original attributes only
    assert json.loads(letter["payload"])["doc_id"] == "pos-1"
    assert make.mark("pos-1")["dead_lettered_run_id"] == run.run_id
    assert make.mark("pos-1")["archived_run_id"] is None
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 1, 0, 1)
    assert_reconciled(run)

    # the broker is back: the dead letter now passes and replay loads it
    report = replay(ctx, reason="MAX_ATTEMPTS")
    assert [w["doc_id"] for w in report.would_pass] == ["pos-1"] and report.run is not None
    deliver(ctx)
    replayed = final(ctx, report.run)
    assert (replayed.status, replayed.loaded) == (RunStatus.SUCCEEDED, 1)
    (row,) = rows(ctx, "fact_trades")
    assert row["run_id"] == replayed.run_id


# -- permanent failures ------------------------------------------------------------------------------


def test_bad_items_are_dead_lettered_with_reasons_while_the_rest_loads(ctx: Context, make: Factory) -> None:
    inspected: list[CloudEvent] = []
    ctx.bus.subscribe(ctx.settings.dead_letter_topic, "inspector", inspected.append)  # type: ignore[attr-defined]
    good = [make.closed_trade(f"pos-good-{i}") for i in range(3)]
    make.raw_position("pos-negative-qty", good[0], qty="-5")
    make.raw_position("pos-time-travel", good[1], closed_at="2024-03-05T14:00:00+00:00")  # before opened_at
    make.raw_position("pos-two-faults", good[2], est_fee_usd="NaN", side="sideways", surprise=1)

    run = run_loop(ctx, "trades", DS)

    assert (run.status, run.published, run.loaded, run.duplicates, run.dead_lettered) == (
        RunStatus.PARTIAL, 6, 3, 0, 3
    )
    assert_reconciled(run)
    assert {r["position_id"] for r in rows(ctx, "fact_trades")} == {f"pos-good-{i}" for i in range(3)}
    sub = trades_subscription(ctx)
    assert (sub.delivered, sub.nacked) == (6, 0)  # permanent: never retried
    letters = {d["doc_id"]: d for d in rows(ctx, "dead_letters")}
    assert set(letters) == {"pos-negative-qty", "pos-time-travel", "pos-two-faults"}
    assert {d["reason_code"] for d in letters.values()} == {"VALIDATION"}
    assert error_locs(letters["pos-negative-qty"]) == ["qty"]
    assert "greater than 0" in letters["pos-negative-qty"]["error_message"]
    assert "closed_at must not be before opened_at" in letters["pos-time-travel"]["error_message"]
    assert sorted(error_locs(letters["pos-two-faults"])) == ["est_fee_usd", "side", "surprise"]
    assert all(d["run_id"] == run.run_id and d["delivery_attempts"] == 1 for d in letters.values())
    for doc_id in letters:
        assert make.mark(doc_id)["dead_lettered_run_id"] == run.run_id

    # the originals also went to the dead-letter topic, tagged with the reason and their source topic
    published = [message_from_event(e) for e in inspected]
    assert sorted(json.loads(m.data)["doc_id"] for m in published) == sorted(letters)
    assert {m.attributes[REASON_ATTRIBUTE] for m in published} == {"VALIDATION"}
    assert {m.attributes[SOURCE_TOPIC_ATTRIBUTE] for m in published} == {ctx.settings.topic(Loop.TRADES)}


def test_a_message_that_is_not_a_work_item_is_recorded_as_malformed(ctx: Context) -> None:
    topic = ctx.settings.topic(Loop.TRADES)
    ctx.bus.publish(topic, b"{oops", {"doc_id": "pos-x", "loop": "trades"})
    ctx.bus.publish(topic, b'{"doc_id": "pos-y"}', {"doc_id": "pos-y"})
    deliver(ctx)
    letters = {d["doc_id"]: d for d in rows(ctx, "dead_letters")}
    assert set(letters) == {"pos-x", "pos-y"}
    assert {d["reason_code"] for d in letters.values()} == {"MALFORMED"}
    assert error_locs(letters["pos-x"]) == ["data"]
    assert sorted(error_locs(letters["pos-y"])) == ["ds", "loop", "published_at", "run_id"]
    assert letters["pos-y"]["run_id"] == "" and letters["pos-y"]["item_ds"] is None
    assert trades_subscription(ctx).nacked == 0


def test_dead_letters_can_be_filtered(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-good")
    make.raw_position("pos-bad-qty", good, qty="0")
    make.raw_position("pos-bad-version", good, strategy_version="0.9")
    run_loop(ctx, "trades", DS)
    assert {d["doc_id"] for d in list_dead_letters(ctx)} == {"pos-bad-qty", "pos-bad-version"}
    assert [d["doc_id"] for d in list_dead_letters(ctx, reason="SCD_CONFLICT")] == ["pos-bad-version"]
    assert [d["doc_id"] for d in list_dead_letters(ctx, reason="VALIDATION")] == ["pos-bad-qty"]
    assert list_dead_letters(ctx, loop="accounts") == []
    by_doc = list_dead_letters(ctx, ids=["pos-bad-qty"])
    assert [d["doc_id"] for d in list_dead_letters(ctx, ids=[by_doc[0]["row_id"]])] == ["pos-bad-qty"]
    with pytest.raises(ValueError):
        list_dead_letters(ctx, loop="no-such-loop")


# -- replay ------------------------------------------------------------------------------------------


def test_replay_after_a_fix_loads_the_record_under_a_new_run(ctx: Context, make: Factory) -> None:
    good = make.closed_trade("pos-good")
    broken = make.raw_position("pos-to-fix", make.closed_trade("pos-to-fix"), qty="-3")
    make.raw_position("pos-still-bad", good, qty="-1")
    first = run_loop(ctx, "trades", DS)
    assert (first.status, first.loaded, first.dead_lettered) == (RunStatus.PARTIAL, 1, 2)

    # dry run before the fix: both still fail, with their reasons, and nothing is written
    report = replay(ctx, dry_run=True)
    assert report.would_pass == [] and report.run is None
    assert {f["doc_id"] for f in report.still_failing} == {"pos-to-fix", "pos-still-bad"}
    assert all("qty" in f["why"] for f in report.still_failing)

    # the bot fixes the document through the writer, which clears the dead-letter mark
    fixed = SchemaGuardian.validate(LivePosition, {**broken, "qty": "3", "dead_lettered_run_id": None}, "pos-to-fix")
    HotWriter(ctx.hot).save_position(fixed)
    assert make.mark("pos-to-fix")["dead_lettered_run_id"] is None

    published_before = dict(ctx.bus.published)  # type: ignore[attr-defined]
    report = replay(ctx, dry_run=True)
    assert [w["doc_id"] for w in report.would_pass] == ["pos-to-fix"]
    assert [f["doc_id"] for f in report.still_failing] == ["pos-still-bad"]
    assert report.run is None
    assert ctx.bus.published == published_before  # type: ignore[attr-defined]
    assert runs.list_runs(ctx, "replay") == [] and rows(ctx, "dead_letter_replays") == []
    assert len(rows(ctx, "fact_trades")) == 1

    report = replay(ctx)
    assert report.run is not None and report.run.loop == "replay" and report.run.published == 1
    deliver(ctx)
    replayed = final(ctx, report.run)
    assert (replayed.status, replayed.published, replayed.loaded, replayed.dead_lettered) == (
        RunStatus.SUCCEEDED, 1, 1, 0
    )
    assert_reconciled(replayed)
    (row,) = rows(ctx, "fact_trades", "position_id = 'pos-to-fix'")
    assert row["run_id"] == replayed.run_id and row["qty"] == 3
    assert make.mark("pos-to-fix")["archived_run_id"] == replayed.run_id
    assert good.position_id in {r["position_id"] for r in rows(ctx, "fact_trades")}

    # the replayed dead letter is marked and not offered again; the unfixed one still is
    (record,) = rows(ctx, "dead_letter_replays")
    assert record["replay_run_id"] == replayed.run_id and record["doc_id"] == "pos-to-fix"
    assert record["original_run_id"] == first.run_id
    assert [d["doc_id"] for d in list_dead_letters(ctx)] == ["pos-still-bad"]
    shown = {d["doc_id"]: d for d in list_dead_letters(ctx, include_replayed=True)}
    assert shown["pos-to-fix"]["replay_run_id"] == replayed.run_id
    again = replay(ctx)
    assert again.run is None and again.would_pass == []
    assert final(ctx, first).status is RunStatus.PARTIAL  # the original run's history is kept


def test_replay_reports_malformed_dead_letters_as_not_replayable(ctx: Context) -> None:
    ctx.bus.publish(ctx.settings.topic(Loop.TRADES), b"not json", {"doc_id": "pos-x"})
    deliver(ctx)
    report = replay(ctx, dry_run=True)
    assert [n["doc_id"] for n in report.not_replayable] == ["pos-x"]
    assert report.would_pass == [] and report.still_failing == []


def test_replay_can_be_limited_to_ids(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-base")
    for name in ("pos-a", "pos-b"):
        make.raw_position(name, base, qty="-1")
    run_loop(ctx, "trades", DS)
    for name in ("pos-a", "pos-b"):
        fixed = SchemaGuardian.validate(
            LivePosition, {**make.position_doc(name), "qty": "3", "dead_lettered_run_id": None}, name
        )
        HotWriter(ctx.hot).save_position(fixed)
    report = replay(ctx, ids=["pos-b"])
    assert [w["doc_id"] for w in report.would_pass] == ["pos-b"]
    deliver(ctx)
    assert {r["position_id"] for r in rows(ctx, "fact_trades")} == {"pos-base", "pos-b"}
    assert [d["doc_id"] for d in list_dead_letters(ctx)] == ["pos-a"]


def test_replay_after_registering_a_missing_strategy_version(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-v2", version="2.0")  # the bot ran 2.0 but never registered it
    first = run_loop(ctx, "trades", DS)
    (letter,) = rows(ctx, "dead_letters")
    assert (first.status, letter["reason_code"]) == (RunStatus.PARTIAL, "SCD_CONFLICT")
    assert [f["doc_id"] for f in replay(ctx, dry_run=True).still_failing] == ["pos-v2"]

    make.strategy("momo", "2.0", deployed_at=DS_START_OF_DAY)  # the fix: the version's deployment is recorded
    report = replay(ctx, dry_run=True)
    assert [w["doc_id"] for w in report.would_pass] == ["pos-v2"] and report.run is None
    assert rows(ctx, "fact_trades") == []
    report = replay(ctx)
    deliver(ctx)
    assert report.run is not None and final(ctx, report.run).status is RunStatus.SUCCEEDED
    (row,) = rows(ctx, "fact_trades")
    assert row["strategy_sk"] == "momo:2.0" and row["run_id"] == report.run.run_id
