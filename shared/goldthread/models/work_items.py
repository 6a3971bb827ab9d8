"""The Pub/Sub message of each loop: a small JSON body plus string attributes, validated on both ends.

The body is the source of truth; the attributes duplicate the routing fields so that subscriptions can
filter and people can read a message in the console without decoding it. A message whose attributes
disagree with its body is malformed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from goldthread.errors import MalformedMessageError
from goldthread.models.types import Identifier, UtcDatetime

WORK_ITEM_SCHEMA_VERSION = "1"


class Loop(StrEnum):
    """The four archival loops; the value is the name used on the command line and in topic names."""

    TRADES = "trades"  # Loop A
    REJECTED_SIGNALS = "rejected_signals"  # Loop B
    EXPIRED_SIGNALS = "expired_signals"  # Loop C
    ACCOUNTS = "accounts"  # Loop D


PER_DAY_LOOPS = frozenset({Loop.ACCOUNTS})
"""Loops whose record is a (document, day) pair: the account snapshot of each day is its own record."""


def item_id_of(loop: Loop, doc_id: str, ds: dt.date) -> str:
    """The id under which a run counts the item of ``doc_id`` (see ``WorkItem.item_id``)."""
    if loop in PER_DAY_LOOPS:
        return f"{loop.value}:{doc_id}@{ds.isoformat()}"
    return f"{loop.value}:{doc_id}"


class WorkItem(BaseModel):
    """One record to archive: which run, loop and day it belongs to, and which document it names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: Identifier
    loop: Loop
    ds: dt.date
    doc_id: Identifier = Field(description="Id of the hot document (or account) to archive.")
    schema_version: str = Field(default=WORK_ITEM_SCHEMA_VERSION, pattern=r"^[0-9]+$")
    published_at: UtcDatetime

    @property
    def item_id(self) -> str:
        """Stable id of the record this item archives (used for idempotent counting within a run).

        A hot record is one record whatever day a run publishes it for; an account snapshot (Loop D) is
        a record per account *and day*, so two days of one account are two items, in a replay run too.
        """
        return item_id_of(self.loop, self.doc_id, self.ds)

    def to_message(self) -> tuple[bytes, dict[str, str]]:
        """Encode as a Pub/Sub message body and attributes."""
        return self.model_dump_json().encode(), self.attributes()

    def attributes(self) -> dict[str, str]:
        """The Pub/Sub attributes of this item's message (the routing fields, duplicated from the body)."""
        return {
            "run_id": self.run_id,
            "loop": self.loop.value,
            "ds": self.ds.isoformat(),
            "doc_id": self.doc_id,
            "schema_version": self.schema_version,
        }

    @classmethod
    def encoder(
        cls, run_id: str, loop: Loop, ds: dt.date, published_at: dt.datetime
    ) -> Callable[[str], tuple[bytes, dict[str, str]]]:
        """A function encoding the message of each ``doc_id`` of one run, as ``to_message`` would.

        The dispatcher publishes a million items differing only by ``doc_id``: the other fields are
        validated once here, each id is checked as an ``Identifier`` (``ValidationError`` if it is not
        one), and the body is the model's own JSON with the id put in place (an ``Identifier`` needs no
        JSON escaping). ``test_fast_paths`` holds the two to the same bytes and the same refusals.
        """
        marker = "0"
        template = cls(run_id=run_id, loop=loop, ds=ds, doc_id=marker, published_at=published_at)
        head, tail = template.model_dump_json().split(f'"doc_id":"{marker}"')
        prefix, suffix = f'{head}"doc_id":"'.encode(), f'"{tail}'.encode()
        shared = template.attributes()
        check = _IDENTIFIER.validate_python

        def encode(doc_id: str) -> tuple[bytes, dict[str, str]]:
            check(doc_id)
            return prefix + doc_id.encode() + suffix, {**shared, "doc_id": doc_id}

        return encode

    @classmethod
    def from_message(cls, data: bytes, attributes: dict[str, str] | None) -> WorkItem:
        """Decode and validate a message; raise ``MalformedMessageError`` naming every bad field."""
        attributes = dict(attributes or {})
        try:  # the usual case, parsed and validated in one pass; any failure takes the path that explains it
            return cls._check_attributes(cls.model_validate_json(data), attributes)
        except ValidationError:
            pass
        record_id = attributes.get("doc_id") or "<unknown>"
        try:
            payload: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # nesting too deep to parse
            raise MalformedMessageError(
                "work item", str(record_id), [{"loc": "data", "msg": f"body is not JSON: {exc}", "type": "json"}]
            ) from exc
        if not isinstance(payload, dict):
            raise MalformedMessageError(
                "work item", str(record_id), [{"loc": "data", "msg": "body is not a JSON object", "type": "json"}]
            )
        record_id = str(payload.get("doc_id") or record_id)[:128]
        try:
            item = cls.model_validate(payload)
        except ValidationError as exc:
            raise MalformedMessageError("work item", record_id, errors_of(exc)) from exc
        return cls._check_attributes(item, attributes)

    @staticmethod
    def _check_attributes(item: WorkItem, attributes: dict[str, str]) -> WorkItem:
        """``item`` if the attributes agree with its body, else ``MalformedMessageError`` naming each one."""
        expected = item.attributes()
        if attributes == expected:  # the usual message
            return item
        mismatched = [
            {"loc": f"attributes.{k}", "msg": f"attribute {attributes.get(k)!r} != body {v!r}", "type": "mismatch"}
            for k, v in expected.items()
            if k in attributes and attributes[k] != v
        ]
        missing = [
            {"loc": f"attributes.{k}", "msg": "attribute is missing", "type": "missing"}
            for k in ("run_id", "loop", "doc_id")
            if k not in attributes
        ]
        if mismatched or missing:
            raise MalformedMessageError("work item", item.doc_id, mismatched + missing)
        return item


_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def errors_of(exc: ValidationError) -> list[dict[str, str]]:
    """Flatten a Pydantic error into ``{loc, msg, type}`` dicts safe to store and show.

    The offending *input* is deliberately left out: it may be huge or hold a secret, and the field
    name plus reason is what a person needs to fix the record.
    """
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append({"loc": loc, "msg": str(err.get("msg", ""))[:300], "type": str(err.get("type", ""))})
    return out
