"""Pub/Sub bus: the production adapter of the ``Bus`` port (``GOLDTHREAD_BUS=pubsub``).

``PubSubBus`` publishes with the SDK's ``PublisherClient`` (batching on, message ordering off: work
items are independent and idempotent, so ordering would only cost throughput). ``publish`` resolves the
future, so an id is returned only once Pub/Sub has durably accepted the message. With
``PUBSUB_EMULATOR_HOST`` set the SDK talks to the emulator by itself.

Besides the port, this module holds the small admin helpers that tests and local setups use to build
the topology Terraform builds in production (topics, pull or push subscriptions with a dead-letter
policy and a retry policy), and the pull/ack helpers the dead-letter replay uses: replay pulls from the
dead-letter subscription, republishes, and acks only after the republish returned an id, so a crash in
between redelivers the dead letter rather than losing it.

The SDK is imported lazily and vendor errors are translated at this boundary: unavailable, deadline,
429/5xx and aborted become ``StoreUnavailableError``; a missing topic, credentials or permission become
``ConfigError``; anything else ``PermanentError``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, ClassVar

from goldthread.adapters.google_errors import translate, translated
from goldthread.errors import ConfigError, GoldthreadError, StoreUnavailableError
from goldthread.ports.bus import Bus, BusMessage


@contextmanager
def vendor_errors(action: str) -> Iterator[None]:
    """Translate Google API errors raised inside the block into goldthread's error tree."""
    with translated(action, translate_error):
        yield


def translate_error(exc: BaseException, action: str) -> GoldthreadError:
    """Map one vendor exception to ``StoreUnavailableError``, ``ConfigError`` or ``PermanentError``.

    A missing topic or subscription (NotFound) is configuration: Terraform (or the test setup) owns them.
    """
    from google.api_core import exceptions as gexc

    message = f"pubsub {action}: {type(exc).__name__}: {exc}"
    if isinstance(exc, gexc.NotFound):
        return ConfigError(message)
    return translate(exc, message, StoreUnavailableError)


def _sdk() -> Any:
    """``google.cloud.pubsub_v1``, imported on first use (only this adapter needs the SDK)."""
    import importlib

    return importlib.import_module("google.cloud.pubsub_v1")


def topic_path(project: str, topic: str) -> str:
    """``projects/{project}/topics/{topic}``; a full path is returned unchanged."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    """``projects/{project}/subscriptions/{subscription}``; a full path is returned unchanged."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


@dataclass(frozen=True)
class PulledMessage:
    """A message pulled from a subscription, with the ``ack_id`` needed to acknowledge it."""

    ack_id: str
    message: BusMessage


class PubSubBus(Bus):
    """Bus on Google Cloud Pub/Sub (or its emulator when ``PUBSUB_EMULATOR_HOST`` is set).

    ``max_messages``/``max_latency``/``max_bytes`` are the publisher's batching settings; ``timeout``
    bounds how long ``publish`` waits for Pub/Sub to accept a message. ``publisher``/``subscriber``
    inject ready SDK clients.
    """

    name: ClassVar[str] = "pubsub"

    def __init__(
        self,
        project: str,
        *,
        max_messages: int = 100,
        max_latency: float = 0.05,
        max_bytes: int = 1_000_000,
        timeout: float = 60.0,
        publisher: Any | None = None,
        subscriber: Any | None = None,
    ) -> None:
        self.project = project
        self.timeout = timeout
        if publisher is None:
            with vendor_errors("connect"):
                pubsub_v1 = _sdk()
                publisher = pubsub_v1.PublisherClient(
                    batch_settings=pubsub_v1.types.BatchSettings(
                        max_bytes=max_bytes, max_latency=max_latency, max_messages=max_messages
                    ),
                    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=False),
                )
        self._publisher = publisher
        self._subscriber = subscriber

    @property
    def publisher(self) -> Any:
        """The underlying ``pubsub_v1.PublisherClient``."""
        return self._publisher

    @property
    def subscriber(self) -> Any:
        """A ``pubsub_v1.SubscriberClient``, created on first use (pull and ack only)."""
        if self._subscriber is None:
            with vendor_errors("connect"):
                pubsub_v1 = _sdk()
                self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def topic_path(self, topic: str) -> str:
        """Full path of a topic of this project."""
        return topic_path(self.project, topic)

    def subscription_path(self, subscription: str) -> str:
        """Full path of a subscription of this project."""
        return subscription_path(self.project, subscription)

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish one message and wait until Pub/Sub accepted it; returns the message id."""
        return self.publish_batch(topic, [(data, attributes)])[0]

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        """Publish many messages (batched by the SDK) and wait for every id, in order.

        If any message is refused, the error is raised; messages that were accepted stay published,
        which is safe because every consumer is idempotent on the work item's key.
        """
        path = self.topic_path(topic)
        with vendor_errors(f"publish to {topic}"):
            futures = [
                self._publisher.publish(path, bytes(data), **{str(k): str(v) for k, v in attrs.items()})
                for data, attrs in messages
            ]
            return [str(f.result(timeout=self.timeout)) for f in futures]

    def pull(self, subscription: str, max_messages: int = 100, timeout: float = 10.0) -> list[PulledMessage]:
        """Pull up to ``max_messages`` from a pull subscription (synchronously); [] when none arrive.

        The messages stay unacknowledged until ``ack``; if never acked they are redelivered after the
        subscription's ack deadline.
        """
        from google.api_core import exceptions as gexc

        path = self.subscription_path(subscription)
        with vendor_errors(f"pull from {subscription}"):
            try:
                response = self.subscriber.pull(
                    request={"subscription": path, "max_messages": max_messages}, timeout=timeout, retry=None
                )
            except gexc.DeadlineExceeded:
                return []
        topic = ""
        out = []
        for received in response.received_messages:
            msg = received.message
            publish_time = msg.publish_time
            if isinstance(publish_time, dt.datetime):
                publish_time = publish_time.astimezone(dt.UTC) if publish_time.tzinfo else publish_time.replace(
                    tzinfo=dt.UTC
                )
            else:  # pragma: no cover - the SDK always gives a datetime
                publish_time = dt.datetime.now(dt.UTC)
            out.append(
                PulledMessage(
                    ack_id=received.ack_id,
                    message=BusMessage(
                        data=bytes(msg.data),
                        attributes=dict(msg.attributes),
                        message_id=str(msg.message_id),
                        publish_time=publish_time,
                        topic=topic,
                        delivery_attempt=int(received.delivery_attempt or 1),
                        extra={"subscription": path},
                    ),
                )
            )
        return out

    def pull_dead_letters(
        self, subscription: str, max_messages: int = 100, timeout: float = 10.0
    ) -> list[PulledMessage]:
        """Pull dead letters for replay from the dead-letter topic's subscription.

        Each keeps its original data and attributes plus Pub/Sub's ``CloudPubSubDeadLetterSource*``
        attributes. Ack each one with ``ack`` only after its republish returned an id.
        """
        return self.pull(subscription, max_messages=max_messages, timeout=timeout)

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Acknowledge pulled messages so they are not delivered again."""
        if not ack_ids:
            return
        with vendor_errors(f"ack on {subscription}"):
            self.subscriber.acknowledge(
                request={"subscription": self.subscription_path(subscription), "ack_ids": list(ack_ids)}
            )

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Hand pulled messages back at once (ack deadline 0), e.g. when their republish failed."""
        if not ack_ids:
            return
        with vendor_errors(f"nack on {subscription}"):
            self.subscriber.modify_ack_deadline(
                request={
                    "subscription": self.subscription_path(subscription),
                    "ack_ids": list(ack_ids),
                    "ack_deadline_seconds": 0,
                }
            )

    def close(self) -> None:
        """Flush pending batches and release the clients."""
        with vendor_errors("close"):
            stop = getattr(self._publisher, "stop", None)
            if callable(stop):
                stop()
            if self._subscriber is not None:
                self._subscriber.close()


# -- admin helpers (tests and local setups; Terraform owns production) ------------------------------


def ensure_topic(project: str, topic: str, publisher: Any | None = None) -> str:
    """Create a topic if it does not exist; returns its path."""
    from google.api_core import exceptions as gexc

    path = topic_path(project, topic)
    with vendor_errors(f"create topic {topic}"):
        if publisher is None:
            pubsub_v1 = _sdk()
            publisher = pubsub_v1.PublisherClient()
        with suppress(gexc.AlreadyExists):
            publisher.create_topic(request={"name": path})
    return path


def ensure_subscription(
    project: str,
    subscription: str,
    topic: str,
    *,
    push_endpoint: str | None = None,
    ack_deadline_seconds: int = 60,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
    min_backoff: dt.timedelta = dt.timedelta(seconds=10),
    max_backoff: dt.timedelta = dt.timedelta(seconds=600),
    subscriber: Any | None = None,
) -> str:
    """Create a subscription if it does not exist; returns its path.

    A pull subscription unless ``push_endpoint`` is given (then Pub/Sub POSTs each message there, as
    to a Cloud Function). ``dead_letter_topic`` adds a dead-letter policy: after
    ``max_delivery_attempts`` (5 to 100) a message moves there. The retry policy backs off
    exponentially between ``min_backoff`` and ``max_backoff``. In production the Pub/Sub service
    agent also needs publish rights on the dead-letter topic and subscribe rights here (Terraform).
    """
    from google.api_core import exceptions as gexc
    from google.protobuf import duration_pb2

    if not 5 <= max_delivery_attempts <= 100:
        raise ConfigError("max_delivery_attempts must be between 5 and 100")
    request: dict[str, Any] = {
        "name": subscription_path(project, subscription),
        "topic": topic_path(project, topic),
        "ack_deadline_seconds": ack_deadline_seconds,
        "retry_policy": {
            "minimum_backoff": duration_pb2.Duration(seconds=int(min_backoff.total_seconds())),
            "maximum_backoff": duration_pb2.Duration(seconds=int(max_backoff.total_seconds())),
        },
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    if dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": topic_path(project, dead_letter_topic),
            "max_delivery_attempts": max_delivery_attempts,
        }
    with vendor_errors(f"create subscription {subscription}"):
        if subscriber is None:
            pubsub_v1 = _sdk()
            subscriber = pubsub_v1.SubscriberClient()
        with suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request=request)
    return str(request["name"])


def delete_subscription(project: str, subscription: str, subscriber: Any | None = None) -> None:
    """Delete a subscription if it exists."""
    from google.api_core import exceptions as gexc

    with vendor_errors(f"delete subscription {subscription}"):
        if subscriber is None:
            pubsub_v1 = _sdk()
            subscriber = pubsub_v1.SubscriberClient()
        with suppress(gexc.NotFound):
            subscriber.delete_subscription(request={"subscription": subscription_path(project, subscription)})


def delete_topic(project: str, topic: str, publisher: Any | None = None) -> None:
    """Delete a topic if it exists."""
    from google.api_core import exceptions as gexc

    with vendor_errors(f"delete topic {topic}"):
        if publisher is None:
            pubsub_v1 = _sdk()
            publisher = pubsub_v1.PublisherClient()
        with suppress(gexc.NotFound):
            publisher.delete_topic(request={"topic": topic_path(project, topic)})


def ensure_loop_topology(
    settings: Any,
    loops: Sequence[str],
    push_endpoints: Mapping[str, str] | None = None,
    dead_letter_subscription: str | None = None,
) -> dict[str, str]:
    """Create what Terraform creates, for local runs: per loop a topic and a subscription with the
    dead-letter policy (``settings.max_delivery_attempts``), the dead-letter topic, and a pull
    subscription on it for replay (default ``{dead_letter_topic}-sub``).

    ``settings`` is a ``goldthread.config.Settings``; ``push_endpoints`` maps a loop to the URL of its
    subscriber function (absent: a pull subscription). Returns subscription name -> topic name.
    """
    project = settings.project
    ensure_topic(project, settings.dead_letter_topic)
    dl_sub = dead_letter_subscription or f"{settings.dead_letter_topic}-sub"
    ensure_subscription(project, dl_sub, settings.dead_letter_topic)
    created = {dl_sub: settings.dead_letter_topic}
    for loop in loops:
        topic = settings.topic(loop)
        ensure_topic(project, topic)
        sub = settings.subscription(loop)
        ensure_subscription(
            project,
            sub,
            topic,
            push_endpoint=(push_endpoints or {}).get(str(loop)),
            dead_letter_topic=settings.dead_letter_topic,
            max_delivery_attempts=settings.max_delivery_attempts,
        )
        created[sub] = topic
    return created
