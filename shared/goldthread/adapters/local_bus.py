"""Embedded bus: an in-process message bus with Pub/Sub's delivery semantics.

* Topics fan out to every subscription; a topic with no subscription drops the message (as Pub/Sub).
* Delivery is at-least-once: a handler that raises *nacks* the message, which is redelivered after an
  exponential backoff (``min_backoff * 2**(attempt-1)``, capped at ``max_backoff``).
* After ``max_delivery_attempts`` the message is forwarded to the subscription's dead-letter topic with
  the ``CloudPubSubDeadLetterSource*`` attributes real Pub/Sub adds.
* Handlers receive real CloudEvents shaped like ``google.cloud.pubsub.topic.v1.messagePublished``, the
  event a deployed Cloud Function gets, so function code runs unchanged. A ``message_handler`` receives
  the ``BusMessage`` batch itself, as a streaming-pull client does: the local runtime uses it to skip
  building and re-reading one CloudEvent envelope per message (the functions' tests cover that envelope).
* Message ids are decimal strings, as Pub/Sub's: a random 62-bit base per bus plus a counter, unique
  without the cost of a UUID per message.

Delivery happens when ``run_until_idle`` is called (the local runner calls it after each dispatch), which
keeps runs deterministic. A subscription may take batches (``batch_size > 1``) with a handler that
returns one outcome per event: this is how the local path archives a million records quickly while
each message keeps its own ack, retry and dead-letter fate.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from cloudevents.http import CloudEvent

from goldthread.ports.bus import Bus, BusMessage, event_from_message

EventHandler = Callable[[CloudEvent], None]
BatchHandler = Callable[[Sequence[CloudEvent]], Sequence[BaseException | None]]
MessageBatchHandler = Callable[[Sequence[BusMessage]], Sequence[BaseException | None]]


@dataclass
class Subscription:
    """A subscription with its retry and dead-letter policy."""

    name: str
    topic: str
    handler: BatchHandler | MessageBatchHandler
    max_delivery_attempts: int = 5
    dead_letter_topic: str | None = None
    min_backoff: float = 0.0
    max_backoff: float = 600.0
    batch_size: int = 1
    delivered: int = 0
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    takes_events: bool = True  # False: the handler takes ``BusMessage`` objects, not CloudEvents


class _Pending(NamedTuple):
    """A queued delivery; ordered (as a plain tuple, in C) by due time, then by the unique sequence."""

    not_before: float
    seq: int
    subscription: str
    message: BusMessage


class LocalBus(Bus):
    """The embedded bus (default). Thread-unsafe by design: one runner drives it."""

    name: ClassVar[str] = "local"

    def __init__(self, project: str = "goldthread-local", sleep: Callable[[float], None] = time.sleep) -> None:
        self.project = project
        self._sleep = sleep
        self._subscriptions: dict[str, Subscription] = {}
        self._by_topic: dict[str, list[str]] = {}
        self._queue: list[_Pending] = []
        self._seq = itertools.count()
        self._message_ids = itertools.count(random.getrandbits(62))
        self.published: dict[str, int] = {}

    # -- administration (what Terraform declares in production) ----------------------------------
    def subscribe(
        self,
        topic: str,
        subscription: str,
        handler: EventHandler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        message_handler: MessageBatchHandler | None = None,
        max_delivery_attempts: int = 5,
        dead_letter_topic: str | None = None,
        min_backoff: float = 0.0,
        max_backoff: float = 600.0,
        batch_size: int = 1,
    ) -> Subscription:
        """Attach a handler to ``topic``; exactly one of ``handler`` / ``batch_handler`` / ``message_handler``.

        ``handler`` takes one CloudEvent, ``batch_handler`` a batch of them; both return or raise as a
        Cloud Function does. ``message_handler`` takes a batch of ``BusMessage`` objects. Both batch
        forms return one outcome per message (None = ack, an exception = nack).
        """
        given = [h for h in (handler, batch_handler, message_handler) if h is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of handler, batch_handler or message_handler")
        chosen: BatchHandler | MessageBatchHandler
        if message_handler is not None:
            chosen = message_handler
        else:
            chosen = batch_handler if batch_handler is not None else _single(handler)  # type: ignore[arg-type]
        sub = Subscription(
            subscription, topic, chosen, max_delivery_attempts, dead_letter_topic,
            min_backoff, max_backoff, batch_size, takes_events=message_handler is None,
        )
        self._subscriptions[subscription] = sub
        self._by_topic.setdefault(topic, []).append(subscription)
        return sub

    def subscription(self, name: str) -> Subscription:
        """A subscription's policy and counters."""
        return self._subscriptions[name]

    # -- the port --------------------------------------------------------------------------------
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Accept one message and fan it out to the topic's subscriptions."""
        return self.publish_batch(topic, [(data, attributes)])[0]

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        """Accept many messages at once."""
        now_wall = dt.datetime.now(dt.UTC)
        now = time.monotonic()
        subs = self._by_topic.get(topic, [])
        ids = []
        queue, seq, message_ids = self._queue, self._seq, self._message_ids
        for data, attributes in messages:
            if not isinstance(data, bytes):
                raise TypeError("message data must be bytes")
            message_id = str(next(message_ids))
            ids.append(message_id)
            msg = BusMessage(data, {str(k): str(v) for k, v in attributes.items()}, message_id, now_wall, topic)
            for sub in subs:
                heapq.heappush(queue, _Pending(now, next(seq), sub, msg))
        self.published[topic] = self.published.get(topic, 0) + len(ids)
        return ids

    # -- delivery --------------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Messages waiting for delivery or redelivery."""
        return len(self._queue)

    def run_until_idle(self, max_seconds: float | None = None) -> int:
        """Deliver until no message is pending; returns the number of deliveries made.

        Waits out backoffs with real sleeps (keep ``min_backoff`` small locally). ``max_seconds``
        bounds the wait; messages still pending then stay queued.
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        deliveries = 0
        while self._queue:
            now = time.monotonic()
            if deadline is not None and now >= deadline:  # a message redelivered at once, forever, stops here too
                break
            head = self._queue[0]
            if head.not_before > now:
                if deadline is not None and head.not_before > deadline:
                    break
                self._sleep(head.not_before - now)
                continue
            batch = self._take_batch(head.subscription, now)
            deliveries += len(batch)
            self._deliver(self._subscriptions[head.subscription], batch)
        return deliveries

    def _take_batch(self, subscription: str, now: float) -> list[BusMessage]:
        size = self._subscriptions[subscription].batch_size
        batch: list[BusMessage] = []
        skipped: list[_Pending] = []
        while self._queue and len(batch) < size and self._queue[0].not_before <= now:
            pending = heapq.heappop(self._queue)
            (batch.append(pending.message) if pending.subscription == subscription else skipped.append(pending))
        for pending in skipped:
            heapq.heappush(self._queue, pending)
        return batch

    def _deliver(self, sub: Subscription, batch: list[BusMessage]) -> None:
        delivered: Sequence[Any] = (
            [event_from_message(m, self.project, sub.name) for m in batch] if sub.takes_events else batch
        )
        sub.delivered += len(batch)
        try:
            results: Sequence[BaseException | None] = sub.handler(delivered)
        except Exception as exc:  # the whole batch failed: every message is nacked
            results = [exc] * len(batch)
        if len(results) != len(batch):
            raise RuntimeError(f"handler of {sub.name} returned {len(results)} outcomes for {len(batch)} events")
        nacked_at = time.monotonic()  # one clock for the batch: its retries fall due together, as one batch again
        for message, outcome in zip(batch, results, strict=True):
            if outcome is None:
                sub.acked += 1
            else:
                sub.nacked += 1
                self._retry_or_dead_letter(sub, message, nacked_at)

    def _retry_or_dead_letter(self, sub: Subscription, message: BusMessage, nacked_at: float) -> None:
        attempt = message.delivery_attempt
        if attempt >= sub.max_delivery_attempts and sub.dead_letter_topic:
            sub.dead_lettered += 1
            attributes = {
                **message.attributes,
                "CloudPubSubDeadLetterSourceDeliveryCount": str(attempt),
                "CloudPubSubDeadLetterSourceSubscription": sub.name,
                "CloudPubSubDeadLetterSourceSubscriptionProject": self.project,
                "CloudPubSubDeadLetterSourceTopicPublishTime": message.publish_time.isoformat(),
            }
            self.publish(sub.dead_letter_topic, message.data, attributes)
            return
        backoff = min(sub.max_backoff, sub.min_backoff * (2 ** min(attempt - 1, 64)))  # no float overflow
        redelivery = BusMessage(
            message.data, message.attributes, message.message_id, message.publish_time, message.topic, attempt + 1
        )
        heapq.heappush(self._queue, _Pending(nacked_at + backoff, next(self._seq), sub.name, redelivery))

    def stats(self) -> dict[str, Any]:
        """Per-subscription delivery counters (for the demo summary and tests)."""
        return {
            name: {"delivered": s.delivered, "acked": s.acked, "nacked": s.nacked, "dead_lettered": s.dead_lettered}
            for name, s in self._subscriptions.items()
        }


def _single(handler: EventHandler) -> BatchHandler:
    def run(events: Sequence[CloudEvent]) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for event in events:
            try:
                handler(event)
                out.append(None)
            except Exception as exc:  # a raised handler is a nack, as in Cloud Functions
                out.append(exc)
        return out

    return run
