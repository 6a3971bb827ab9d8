"""The ``Bus`` contract, written once and run against every bus (``LocalBus`` and ``PubSubBus``).

The ``bus_harness`` fixture hides only how a test subscribes and receives (a handler on the local bus,
a pull subscription on the Pub/Sub emulator); what is published and what arrives is the contract.
"""

from __future__ import annotations

import uuid
from typing import Any


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def test_publish_returns_the_id_the_subscriber_sees(bus_harness: Any) -> None:
    topic = bus_harness.make_topic(_name("work"))
    sub = bus_harness.subscribe(topic, _name("work-sub"))
    message_id = bus_harness.bus.publish(topic, b'{"doc_id": "p1"}', {"run_id": "r1", "loop": "trades"})
    assert isinstance(message_id, str) and message_id
    [message] = bus_harness.receive(sub, 1)
    assert message.message_id == message_id
    assert message.data == b'{"doc_id": "p1"}'
    assert message.attributes == {"run_id": "r1", "loop": "trades"}
    assert message.delivery_attempt == 1
    assert message.publish_time.utcoffset() is not None


def test_publish_batch_returns_every_id_in_order(bus_harness: Any) -> None:
    topic = bus_harness.make_topic(_name("work"))
    sub = bus_harness.subscribe(topic, _name("work-sub"))
    batch = [(f"item-{i}".encode(), {"n": str(i), "run_id": "r2"}) for i in range(25)]
    ids = bus_harness.bus.publish_batch(topic, batch)
    assert len(ids) == 25 and len(set(ids)) == 25 and all(isinstance(i, str) and i for i in ids)
    received = {m.message_id: m for m in bus_harness.receive(sub, 25)}
    assert sorted(received) == sorted(ids)
    for message_id, (data, attributes) in zip(ids, batch, strict=True):
        assert received[message_id].data == data
        assert received[message_id].attributes == attributes


def test_every_subscription_of_a_topic_gets_the_message(bus_harness: Any) -> None:
    topic = bus_harness.make_topic(_name("work"))
    first = bus_harness.subscribe(topic, _name("first"))
    second = bus_harness.subscribe(topic, _name("second"))
    message_id = bus_harness.bus.publish(topic, b"x", {"k": "v"})
    assert [m.message_id for m in bus_harness.receive(first, 1)] == [message_id]
    assert [m.message_id for m in bus_harness.receive(second, 1)] == [message_id]


def test_refused_message_is_dead_lettered_after_max_attempts_with_its_attributes(bus_harness: Any) -> None:
    topic = bus_harness.make_topic(_name("work"))
    dead_topic = bus_harness.make_topic(_name("dead"))
    dead_sub = bus_harness.subscribe(dead_topic, _name("dead-sub"))
    failing = _name("work-sub")
    attempts = bus_harness.dead_letter(topic, dead_topic, failing, 5)
    bus_harness.bus.publish(topic, b'{"doc_id": "bad"}', {"run_id": "r3"})
    [letter] = bus_harness.drive(dead_sub)
    assert attempts == [1, 2, 3, 4, 5]
    assert letter.data == b'{"doc_id": "bad"}'
    assert letter.attributes["run_id"] == "r3"
    assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert letter.attributes["CloudPubSubDeadLetterSourceSubscription"] == failing
