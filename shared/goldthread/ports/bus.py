"""The bus port: Pub/Sub-style topics carrying work items, and the CloudEvent they arrive as.

A subscriber function receives exactly what a deployed Cloud Function gets from a Pub/Sub trigger:
a CloudEvent of type ``google.cloud.pubsub.topic.v1.messagePublished`` whose data is
``{"message": {"data": <base64>, "attributes": {...}, "messageId": ..., "publishTime": ...},
"subscription": ...}``. ``message_from_event`` and ``event_from_message`` convert both ways, so the
local bus and the cloud share one code path.
"""

from __future__ import annotations

import base64
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from cloudevents.http import CloudEvent

from goldthread.errors import MalformedMessageError

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class BusMessage:
    """A message as a subscriber sees it."""

    data: bytes
    attributes: dict[str, str]
    message_id: str
    publish_time: dt.datetime
    topic: str = ""
    delivery_attempt: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Bus(ABC):
    """Publishes messages to named topics. Implementations: ``LocalBus``, ``PubSubBus``."""

    name: ClassVar[str]

    @abstractmethod
    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish one message; returns its id once the bus has accepted it."""

    def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        """Publish many messages; returns their ids, all accepted, in order."""
        return [self.publish(topic, data, attrs) for data, attrs in messages]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release connections."""


class DeliveryCount(Protocol):
    """What an in-process subscription tells about itself: how many messages it has delivered."""

    delivered: int


@runtime_checkable
class InProcessBus(Protocol):
    """A bus whose subscribers run in this process (the local bus), checked by shape, not by class.

    A caller drains it (``run_until_idle``) instead of waiting for another process to deliver, and can count
    a subscription's deliveries. Code above the adapters (the canary) asks this instead of importing the
    concrete local bus, so the Pub/Sub stack never loads it."""

    def run_until_idle(self, max_seconds: float | None = None) -> int:
        """Deliver until nothing is pending or ``max_seconds`` pass; returns the deliveries made."""
        ...

    def subscription(self, name: str) -> DeliveryCount:
        """The subscription called ``name`` (``KeyError`` if there is none)."""
        ...


def event_from_message(message: BusMessage, project: str, subscription: str) -> CloudEvent:
    """Build the CloudEvent a Pub/Sub-triggered Cloud Function receives for ``message``."""
    publish_time = message.publish_time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    attributes = {
        "id": message.message_id,
        "source": f"//pubsub.googleapis.com/projects/{project}/topics/{message.topic}",
        "type": PUBSUB_EVENT_TYPE,
        "specversion": "1.0",
        "time": publish_time,
    }
    data = {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "publishTime": publish_time,
        },
        "subscription": f"projects/{project}/subscriptions/{subscription}",
        "deliveryAttempt": message.delivery_attempt,
    }
    return CloudEvent(attributes, data)


def message_from_event(event: Any) -> BusMessage:
    """Read a Pub/Sub CloudEvent back into a ``BusMessage``; malformed envelopes are permanent errors."""
    data = event.data if hasattr(event, "data") else None
    if isinstance(data, (bytes, str)):
        import json

        try:
            data = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse: not an envelope
            data = None
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise MalformedMessageError(
            "cloud event", str(_event_attr(event, "id")), [
                {"loc": "data.message", "msg": "not a Pub/Sub messagePublished event", "type": "envelope"}
            ]
        )
    try:
        body = base64.b64decode(message.get("data") or b"", validate=True)
    except (ValueError, TypeError) as exc:
        raise MalformedMessageError(
            "cloud event", str(_event_attr(event, "id")),
            [{"loc": "data.message.data", "msg": "message data is not base64", "type": "base64"}],
        ) from exc
    raw_attrs = message.get("attributes") or {}
    attrs = {str(k): str(v) for k, v in raw_attrs.items()} if isinstance(raw_attrs, dict) else {}
    source = str(_event_attr(event, "source") or "")
    topic = source.rsplit("/topics/", 1)[-1] if "/topics/" in source else ""
    publish = message.get("publishTime") or _event_attr(event, "time")
    try:
        publish_time = dt.datetime.fromisoformat(str(publish).replace("Z", "+00:00"))
    except ValueError:
        publish_time = dt.datetime.now(dt.UTC)
    attempt = data.get("deliveryAttempt") if isinstance(data, dict) else None
    return BusMessage(
        data=body,
        attributes=attrs,
        message_id=str(message.get("messageId") or message.get("message_id") or _event_attr(event, "id")),
        publish_time=publish_time,
        topic=topic,
        delivery_attempt=int(attempt) if isinstance(attempt, int) else 1,
    )


def _event_attr(event: Any, name: str) -> Any:
    try:
        return event[name]
    except (KeyError, TypeError):
        return None
