"""The hot-store port: the live document store the trading bot writes (Firestore in production).

Documents are plain JSON-like dicts keyed by collection and id. The operations are the few that the
loops need and that both SQLite and Firestore can do atomically: filtered queries, conditional
"claim" updates (so a redelivered item cannot mark a record twice), idempotent outcome counters, and
leases (so two dispatches of the same loop and day cannot both run).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal

from goldthread.errors import ConfigError

Op = Literal["==", "<", "<=", ">", ">=", "in", "not-in"]

NOT_IN_LIMIT = 10
"""Most values a ``not-in`` filter may list (Firestore's limit, held by every store alike)."""



@dataclass(frozen=True)
class Where:
    """One filter of a query: ``field op value``; ``== None`` matches an explicit null.

    ``not-in`` (1 to ``NOT_IN_LIMIT`` values) matches a field that is present, not null and equal to none
    of the values, with Firestore's semantics: a number never equals a string. One ``in`` or ``not-in``
    per query."""

    field: str
    op: Op
    value: Any


def check_not_in(where: Where) -> list[Any]:
    """The values of a ``not-in`` filter, refused (``ConfigError``) if none or more than ``NOT_IN_LIMIT``,
    so a query that Firestore would reject fails the same way on every store."""
    values = list(where.value)
    if not 1 <= len(values) <= NOT_IN_LIMIT:
        raise ConfigError(f"a not-in filter on {where.field!r} takes 1 to {NOT_IN_LIMIT} values, not {len(values)}")
    return values


class Outcome(StrEnum):
    """The final outcome of a work item, each a counter of its run (``JobMetadata``): its row was written by
    this item, was already in the warehouse, or the item was dead-lettered."""

    LOADED = "loaded"
    DUPLICATES = "duplicates"
    DEAD_LETTERED = "dead_lettered"


OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True)
class RecordedOutcomes:
    """What ``record_outcomes`` did: the counts it added, and the run document after the change.

    ``complete`` False: the store wrote the outcomes without reading the run, and ``run`` holds only what the
    write itself returned, the run's outcome counters and ``published`` as the write left them."""

    added: dict[str, int]
    run: dict[str, Any] | None
    complete: bool = True


@dataclass(frozen=True)
class Merge:
    """Fields to merge into one document (created with them if absent) in the same atomic write as an item's
    outcome, and only if that outcome is newly recorded: the ledger mark of a record its item loaded."""

    collection: str
    doc_id: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Lease:
    """A lease as stored: its holder (a run id), when it expires unless renewed, its last heartbeat and the
    process that took it (``host`` empty when the taker could not name its host reliably)."""

    name: str
    holder: str
    expires_at: dt.datetime
    heartbeat_at: dt.datetime | None = None
    host: str = ""
    pid: int = 0


class HotStore(ABC):
    """Abstract hot store. Implementations: ``SqliteHotStore`` (embedded), ``FirestoreHotStore``."""

    name: ClassVar[str]

    @abstractmethod
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """One document, or None."""

    @abstractmethod
    def get_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Documents by id; ids that do not exist are absent from the result."""

    def get_many_unparsed(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Mapping[str, Any] | str]:
        """Documents by id as the store holds them, for a caller that validates them at once: JSON text
        where the store keeps text (SQLite), else a mapping. ``SchemaGuardian.validate`` takes either and
        parses text while validating it, in one pass, instead of building a dict first."""
        return dict(self.get_many(collection, doc_ids))

    @abstractmethod
    def put(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace a document."""

    @abstractmethod
    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into an existing document (``KeyError`` if it does not exist)."""

    @abstractmethod
    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        """Create a document only if absent; True if this call created it."""

    def create_many(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Create each document of ``docs`` that is absent (atomically per document) and return, for every id,
        the document the store now holds: this call's, or the one that was already there.

        The claim of a key by the first writer (Loop A's ``order_claims``): whoever reads back its own
        document holds the key. Stores override this to do it in a few round trips; this default makes one
        ``create`` (and, when taken, one ``get``) per document.
        """
        out: dict[str, dict[str, Any]] = {}
        for doc_id, data in docs.items():
            while doc_id not in out:  # a document deleted between the two calls is created again
                stored = dict(data) if self.create(collection, doc_id, data) else self.get(collection, doc_id)
                if stored is not None:
                    out[doc_id] = stored
        return out

    @abstractmethod
    def delete(self, collection: str, doc_id: str) -> None:
        """Remove a document if it exists."""

    @abstractmethod
    def query(
        self,
        collection: str,
        where: Sequence[Where] = (),
        fields: Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Documents matching every filter, paged with cursors; ``fields`` projects the result."""

    @abstractmethod
    def claim(
        self,
        collection: str,
        doc_ids: Sequence[str],
        field: str,
        value: Any,
        also: Mapping[str, Any] | None = None,
        *,
        each: Mapping[str, Mapping[str, Any]] | None = None,
        create: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Set ``field = value`` (and ``also``, and ``each[doc_id]``) on each document where ``field`` is null
        or absent.

        Atomic per document; returns the ids this call changed, so a redelivered item that finds its
        record already claimed changes nothing. A document that does not exist is left alone, unless
        ``create`` gives its initial fields: then it is created with them and claimed in the same step.
        """

    @abstractmethod
    def record_outcomes(
        self, run_id: str, outcomes: Mapping[str, str], merges: Mapping[str, Merge] | None = None,
        *, at: dt.datetime | None = None,
    ) -> RecordedOutcomes:
        """Record each item's final outcome in a run once, and add it to the run's counters.

        ``outcomes`` maps item id to ``loaded``, ``duplicates`` or ``dead_lettered``. An item already
        recorded is ignored (its first outcome stands). ``merges`` (by item id) are written in the same
        atomic step, each only if its item's outcome is recorded by this call. Returns the counts this call
        added and the run's document as the same transaction left it (its counters included), so nobody
        reads it again; for a run that does not exist nothing is recorded or merged and ``run`` is None. A
        store may write new items without reading the run and return only its counters (``complete``).
        ``at``: when this progress was made; where a new outcome is recorded, the run's ``heartbeat_at`` is
        set to it in the same write.
        """

    @abstractmethod
    def item_outcomes(self, run_id: str) -> dict[str, str]:
        """Every item outcome recorded for a run."""

    @abstractmethod
    def acquire_lease(
        self,
        name: str,
        holder: str,
        now: dt.datetime,
        ttl: dt.timedelta,
        *,
        host: str = "",
        pid: int = 0,
        take_over: str | None = None,
    ) -> str | None:
        """Take the lease ``name`` for ``holder`` unless another live holder has it.

        The lease is free when absent, expired (no heartbeat for ``ttl``), already ``holder``'s, or held by
        ``take_over`` (a holder the caller found dead: compare-and-swap, so two successors cannot both take
        it). ``host`` and ``pid`` record the taking process, so a successor on the same host can tell a dead
        holder. Returns None on success, or the id of the holder that keeps it.
        """

    @abstractmethod
    def renew_lease(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        """The heartbeat: extend the lease to ``now + ttl`` if ``holder`` still holds it (host and pid are
        kept); False if it was taken over or released."""

    @abstractmethod
    def read_lease(self, name: str) -> Lease | None:
        """Who holds the lease ``name`` (expired or not), or None if nobody does."""

    @abstractmethod
    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease back if ``holder`` still holds it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
