"""The embedded bus keeps Pub/Sub's semantics: fan-out, at-least-once with backoff, a maximum number
of delivery attempts then the dead-letter topic (with Pub/Sub's attributes), and real CloudEvents
shaped like ``google.cloud.pubsub.topic.v1.messagePublished`` that convert back to the same message.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from cloudevents.http import CloudEvent
from goldthread.adapters import local_bus
from goldthread.adapters.local_bus import LocalBus
from goldthread.errors import MalformedMessageError
from goldthread.ports.bus import PUBSUB_EVENT_TYPE, BusMessage, message_from_event


class Recorder:
    """A handler that records what it received and fails its first ``fail`` deliveries."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.events: list[CloudEvent] = []

    def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)
        if len(self.events) <= self.fail:
            raise RuntimeError(f"failure {len(self.events)}")

    @property
    def messages(self) -> list[BusMessage]:
        return [message_from_event(e) for e in self.events]


def test_event_is_a_pubsub_message_published_cloud_event() -> None:
    bus = LocalBus(project="proj")
    rec = Recorder()
    bus.subscribe("topic-a", "sub-a", rec)
    message_id = bus.publish("topic-a", b'{"x": 1}', {"run_id": "r1", "n": 7})  # type: ignore[dict-item]
    assert bus.run_until_idle() == 1
    (event,) = rec.events
    assert event["type"] == PUBSUB_EVENT_TYPE
    assert event["specversion"] == "1.0"
    assert event["source"] == "//pubsub.googleapis.com/projects/proj/topics/topic-a"
    assert event["id"] == message_id
    message = event.data["message"]
    assert base64.b64decode(message["data"]) == b'{"x": 1}'
    assert message["attributes"] == {"run_id": "r1", "n": "7"}  # attribute values are strings, as in Pub/Sub
    assert message["messageId"] == message_id
    assert message["publishTime"].endswith("Z")
    assert event.data["subscription"] == "projects/proj/subscriptions/sub-a"
    assert event.data["deliveryAttempt"] == 1

    back = message_from_event(event)
    assert (back.data, back.attributes, back.message_id, back.topic, back.delivery_attempt) == (
        b'{"x": 1}', {"run_id": "r1", "n": "7"}, message_id, "topic-a", 1
    )


def test_fan_out_to_every_subscription_and_drop_without_one() -> None:
    bus = LocalBus()
    a, b = Recorder(), Recorder()
    bus.subscribe("t", "sub-a", a)
    bus.subscribe("t", "sub-b", b)
    bus.publish("t", b"1", {})
    bus.publish("nobody-listens", b"2", {})
    assert bus.run_until_idle() == 2
    assert [m.data for m in a.messages] == [b"1"] and [m.data for m in b.messages] == [b"1"]
    assert bus.published == {"t": 1, "nobody-listens": 1}
    assert bus.backlog == 0


def test_nacked_message_is_redelivered_with_incremented_attempt() -> None:
    bus = LocalBus()
    rec = Recorder(fail=2)
    bus.subscribe("t", "s", rec, max_delivery_attempts=5, dead_letter_topic="dlq")
    dlq = Recorder()
    bus.subscribe("dlq", "dlq-sub", dlq)
    message_id = bus.publish("t", b"x", {"k": "v"})
    assert bus.run_until_idle() == 3
    assert [m.delivery_attempt for m in rec.messages] == [1, 2, 3]
    assert {m.message_id for m in rec.messages} == {message_id}  # same message, redelivered
    assert dlq.events == []
    assert bus.stats()["s"] == {"delivered": 3, "acked": 1, "nacked": 2, "dead_lettered": 0}


def test_after_max_attempts_the_message_goes_to_the_dead_letter_topic() -> None:
    bus = LocalBus(project="proj")
    rec = Recorder(fail=100)
    dlq = Recorder()
    bus.subscribe("t", "s", rec, max_delivery_attempts=5, dead_letter_topic="dlq")
    bus.subscribe("dlq", "dlq-sub", dlq)
    bus.publish("t", b"payload", {"run_id": "r1"})
    bus.run_until_idle()
    assert [m.delivery_attempt for m in rec.messages] == [1, 2, 3, 4, 5]
    (dead,) = dlq.messages
    assert dead.data == b"payload"
    assert dead.attributes["run_id"] == "r1"
    assert dead.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert dead.attributes["CloudPubSubDeadLetterSourceSubscription"] == "s"
    assert dead.attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] == "proj"
    assert "CloudPubSubDeadLetterSourceTopicPublishTime" in dead.attributes
    assert bus.stats()["s"] == {"delivered": 5, "acked": 0, "nacked": 5, "dead_lettered": 1}


def test_without_dead_letter_topic_a_failing_message_keeps_being_retried() -> None:
    bus = LocalBus()
    rec = Recorder(fail=7)
    bus.subscribe("t", "s", rec, max_delivery_attempts=5)
    bus.publish("t", b"x", {})
    bus.run_until_idle()
    assert [m.delivery_attempt for m in rec.messages] == [1, 2, 3, 4, 5, 6, 7, 8]


class FakeTime:
    """Stands in for the ``time`` module inside the bus: monotonic time moves only when it sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_is_exponential_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTime()
    monkeypatch.setattr(local_bus, "time", fake)
    bus = LocalBus(sleep=fake.sleep)
    rec = Recorder(fail=5)
    bus.subscribe("t", "s", rec, max_delivery_attempts=10, min_backoff=1.0, max_backoff=5.0)
    bus.publish("t", b"x", {})
    bus.run_until_idle()
    # redeliveries 2..6 wait 1 x 2**(attempt-1): 1, 2, 4, then capped at 5, 5
    assert fake.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert [m.delivery_attempt for m in rec.messages] == [1, 2, 3, 4, 5, 6]


def test_max_seconds_leaves_later_redeliveries_queued() -> None:
    bus = LocalBus(sleep=lambda s: pytest.fail("must not sleep past the deadline"))
    rec = Recorder(fail=1)
    bus.subscribe("t", "s", rec, min_backoff=60)
    bus.publish("t", b"x", {})
    assert bus.run_until_idle(max_seconds=0.01) == 1
    assert bus.backlog == 1 and len(rec.events) == 1


def test_batch_handler_gets_one_outcome_per_message() -> None:
    bus = LocalBus()
    seen: list[list[bytes]] = []

    def handler(events: Sequence[CloudEvent]) -> list[BaseException | None]:
        batch = [message_from_event(e) for e in events]
        seen.append([m.data for m in batch])
        return [ValueError("odd") if m.data == b"1" and m.delivery_attempt == 1 else None for m in batch]

    bus.subscribe("t", "s", batch_handler=handler, batch_size=3)
    bus.publish_batch("t", [(str(i).encode(), {}) for i in range(5)])
    bus.run_until_idle()
    assert seen == [[b"0", b"1", b"2"], [b"3", b"4", b"1"]]  # no backoff: the retry joins the next batch
    assert bus.stats()["s"]["acked"] == 5 and bus.stats()["s"]["nacked"] == 1


def test_a_batch_handler_that_raises_nacks_the_whole_batch() -> None:
    bus = LocalBus()
    calls: list[int] = []

    def handler(events: Sequence[CloudEvent]) -> list[BaseException | None]:
        calls.append(len(events))
        if len(calls) == 1:
            raise RuntimeError("down")
        return [None] * len(events)

    bus.subscribe("t", "s", batch_handler=handler, batch_size=10)
    bus.publish_batch("t", [(b"a", {}), (b"b", {})])
    bus.run_until_idle()
    assert calls == [2, 2]
    assert bus.stats()["s"] == {"delivered": 4, "acked": 2, "nacked": 2, "dead_lettered": 0}


def test_a_handler_returning_the_wrong_number_of_outcomes_is_a_bug() -> None:
    bus = LocalBus()
    bus.subscribe("t", "s", batch_handler=lambda events: [])
    bus.publish("t", b"x", {})
    with pytest.raises(RuntimeError, match="returned 0 outcomes for 1 events"):
        bus.run_until_idle()


def test_subscribe_needs_exactly_one_handler() -> None:
    bus = LocalBus()
    with pytest.raises(ValueError):
        bus.subscribe("t", "s")
    with pytest.raises(ValueError):
        bus.subscribe("t", "s", Recorder(), batch_handler=lambda events: [None] * len(events))
    with pytest.raises(ValueError):
        bus.subscribe("t", "s", batch_handler=lambda e: [None] * len(e), message_handler=lambda m: [None] * len(m))


def test_message_data_must_be_bytes() -> None:
    bus = LocalBus()
    with pytest.raises(TypeError):
        bus.publish("t", "text", {})  # type: ignore[arg-type]


def test_message_from_event_refuses_what_is_not_a_pubsub_envelope() -> None:
    not_pubsub = CloudEvent({"type": "x", "source": "y", "id": "e1"}, {"foo": "bar"})
    with pytest.raises(MalformedMessageError) as info:
        message_from_event(not_pubsub)
    assert info.value.errors[0]["loc"] == "data.message"
    bad_b64 = CloudEvent({"type": PUBSUB_EVENT_TYPE, "source": "y", "id": "e2"}, {"message": {"data": "***"}})
    with pytest.raises(MalformedMessageError) as info:
        message_from_event(bad_b64)
    assert info.value.errors[0]["loc"] == "data.message.data"


def test_a_message_handler_gets_the_messages_themselves_with_the_same_fate() -> None:
    bus = LocalBus()
    seen: list[list[tuple[bytes, int]]] = []

    def handler(messages: Sequence[BusMessage]) -> list[BaseException | None]:
        seen.append([(m.data, m.delivery_attempt) for m in messages])
        return [ValueError("odd") if m.data == b"1" and m.delivery_attempt == 1 else None for m in messages]

    bus.subscribe("t", "s", message_handler=handler, batch_size=3)
    ids = bus.publish_batch("t", [(str(i).encode(), {"k": "v"}) for i in range(5)])
    bus.run_until_idle()
    assert seen == [[(b"0", 1), (b"1", 1), (b"2", 1)], [(b"3", 1), (b"4", 1), (b"1", 2)]]
    assert bus.stats()["s"] == {"delivered": 6, "acked": 5, "nacked": 1, "dead_lettered": 0}
    assert len(set(ids)) == 5 and all(i.isdigit() for i in ids)  # Pub/Sub-style decimal ids, distinct


def test_message_ids_stay_distinct_across_buses() -> None:
    first, second = LocalBus(), LocalBus()
    ids = first.publish_batch("t", [(b"x", {})] * 1000) + second.publish_batch("t", [(b"x", {})] * 1000)
    assert len(set(ids)) == 2000
