"""Firestore hot store: the production adapter of the ``HotStore`` port (``GOLDTHREAD_HOT=firestore``).

Documents are stored natively, with two conversions that keep the port's promises:

* ``Decimal`` is stored as its string (Firestore has no decimal type and its numbers are doubles, so a
  string is the only exact form). It reads back as that string, which SchemaGuardian's ``Money`` type
  parses exactly. Range filters on a Decimal are refused (strings compare as text, not as numbers).
* Datetimes are native Firestore timestamps (microsecond precision) and read back as aware UTC
  ``datetime``; a naive datetime is refused, as the embedded store refuses it. Enums are stored by
  value, ``date`` as ISO text.

Queries page with cursors (``start_after``) ordered by the inequality fields, if any (Firestore requires
them first in the ordering), then by document id (``__name__``), so a page boundary never skips or
repeats a document. Equality + range queries need the composite indexes in ``FIRESTORE_INDEXES``.

The atomic operations: ``claim`` (a transaction; a redelivered item finds the field already set and changes
nothing; a first claim creates its documents in one batch), ``record_outcomes`` (an item document under
``job_metadata/{run_id}/items`` is created in the same atomic write that moves the run's counters, so a
redelivery cannot count twice: a blind batch first, a transaction when that is refused) and leases
(collection ``leases``). Values and errors are converted in ``firestore_values``.

The SDK is imported lazily; every vendor error is translated at this boundary: unavailable, deadline,
429/5xx and aborted become ``StoreUnavailableError`` (the bus retries), missing credentials, permissions
and invalid requests (including a missing index) become ``ConfigError``, anything else ``PermanentError``.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from goldthread.adapters.firestore_values import (
    already_exists,
    check_id,
    from_firestore,
    lookup,
    refused,
    sort_key,
    to_firestore,
    vendor_errors,
)
from goldthread.errors import ConfigError, GoldthreadError
from goldthread.ports.hot_store import OUTCOMES, HotStore, Lease, Merge, RecordedOutcomes, Where, check_not_in

T = TypeVar("T")

LEASES_COLLECTION = "leases"
ITEMS_SUBCOLLECTION = "items"
_RANGE_OPS = frozenset({"<", "<=", ">", ">="})
_IN_LIMIT = 30  # Firestore's maximum number of values in one ``in`` filter
_TX_CHUNK = 200  # documents read and written per transaction (well under the 500-write limit)


def _index(collection: str, *fields: str) -> dict[str, Any]:
    return {
        "collectionGroup": collection,
        "queryScope": "COLLECTION",
        "fields": [{"fieldPath": f, "order": "ASCENDING"} for f in fields],
    }


FIRESTORE_INDEXES: list[dict[str, Any]] = [
    # Price patch: CLOSED positions whose exit price is missing or zero.
    _index("live_positions", "status", "exit_filled_avg_price"),
    # Runs of one job and day (``goldthread runs``, the dashboard's run sync).
    _index("job_metadata", "loop", "ds"),
]
"""Composite indexes of the queries goldthread runs (``firestore.indexes.json`` is generated from this).

A dispatch reads the records of its day with a range on one field (the loop's time field: ``closed_at``,
``created_at``, ``expires_at``), twice (a timestamp range and an ISO-text range, see
``goldthread.loops.base.time_ranges``), with a projection and cursor paging by document id: automatic
single-field indexes serve it, and it reads about one document per record of the day. A sweep reads the
whole collection (no filter). Documents read by id (the ledger's marks among them) are ``__name__ in`` queries,
served by the id's own index. The fee patch's time-range queries use one
field each too. The emulator does not enforce indexes; production answers a missing one with
FAILED_PRECONDITION (``ConfigError``).
"""


# -- the adapter ---------------------------------------------------------------------------------


class FirestoreHotStore(HotStore):
    """Hot store on Cloud Firestore (or its emulator when ``FIRESTORE_EMULATOR_HOST`` is set).

    ``project`` and ``database`` select the Firestore database; ``client`` injects a ready
    ``google.cloud.firestore.Client`` (tests, or a caller that shares one). ``timeout`` bounds each
    request and ``retry_deadline`` the SDK's retries of transient errors, after which the call fails
    with ``StoreUnavailableError`` (so a Cloud Function gives the item back to Pub/Sub instead of
    hanging until its own timeout).
    """

    name: ClassVar[str] = "firestore"

    def __init__(
        self,
        project: str,
        database: str = "(default)",
        client: Any | None = None,
        *,
        timeout: float = 60.0,
        retry_deadline: float = 60.0,
    ) -> None:
        self.project = project
        self.database = database
        with vendor_errors("connect"):
            from google.api_core import exceptions as gexc
            from google.api_core import retry as retries

            if client is None:
                from google.cloud import firestore

                client = firestore.Client(project=project, database=database)
            retry = retries.Retry(
                predicate=retries.if_exception_type(
                    gexc.DeadlineExceeded, gexc.InternalServerError, gexc.ResourceExhausted, gexc.ServiceUnavailable
                ),
                initial=0.1,
                maximum=10.0,
                multiplier=1.3,
                deadline=retry_deadline,
            )
        self._client = client
        self._rt: dict[str, Any] = {"retry": retry, "timeout": timeout}
        self._bound_transactions(timeout, retry)

    def _bound_transactions(self, timeout: float, retry: Any) -> None:
        """Bound the calls a transaction makes by itself like every other request.

        The SDK's ``Transaction`` begins, commits and rolls back with the API defaults (a 60 s timeout and
        retries), so a store that stops answering held a transaction for a minute and then surfaced as a
        ``ValueError`` from the rollback of a transaction that never began. The client's GAPIC stub is created
        once and cached; its three methods get this store's timeout and retry policy (a caller's own wins)."""
        api = getattr(self._client, "_firestore_api", None)
        for name in ("begin_transaction", "commit", "rollback"):
            method = getattr(api, name, None)
            if method is not None and not isinstance(method, functools.partial):
                setattr(api, name, functools.partial(method, timeout=timeout, retry=retry))

    @property
    def client(self) -> Any:
        """The underlying ``google.cloud.firestore.Client``."""
        return self._client

    def _ref(self, collection: str, doc_id: str) -> Any:
        return self._client.collection(collection).document(check_id(doc_id))

    def _transactional(self, fn: Callable[[Any], T], action: str) -> T:
        """Run ``fn(transaction)`` in a Firestore transaction, retried on contention by the SDK."""
        from google.cloud import firestore

        with vendor_errors(action):
            try:
                return firestore.transactional(fn)(self._client.transaction())  # type: ignore[no-any-return]
            except ValueError as exc:  # the SDK rolling back a transaction that never began masks why it did not
                if exc.__context__ is not None and not isinstance(exc.__context__, ValueError):
                    raise exc.__context__ from exc
                raise

    # -- documents -------------------------------------------------------------------------------
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """One document, or None."""
        with vendor_errors("get"):
            snap = self._ref(collection, doc_id).get(**self._rt)
        return from_firestore(snap.to_dict()) if snap.exists else None

    def get_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Documents by id; absent ids are left out.

        Read with queries on the document id (``__name__ in``, 30 ids each) rather than ``get_all``: Firestore
        bills a batch get one read per id asked, found or not, and a query one read per document returned (at
        least one per query). The ids asked for are often absent (the ledger marks of a day's records on its
        first run), so this costs one read per 30 absent ids instead of 30, and the same for those found.
        """
        from google.cloud.firestore_v1.base_query import FieldFilter
        from google.cloud.firestore_v1.field_path import FieldPath

        out: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(doc_ids))
        col = self._client.collection(collection)
        for i in range(0, len(ids), _IN_LIMIT):
            refs = [self._ref(collection, d) for d in ids[i : i + _IN_LIMIT]]
            q = col.where(filter=FieldFilter(FieldPath.document_id(), "in", refs))
            with vendor_errors("get_many"):
                for snap in q.stream(**self._rt):
                    out[snap.id] = from_firestore(snap.to_dict())
        return out

    def put(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace a document."""
        with vendor_errors("put"):
            self._ref(collection, doc_id).set(to_firestore(dict(data)), **self._rt)

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Merge top-level ``fields`` into an existing document (``KeyError`` if it does not exist)."""
        from google.api_core import exceptions as gexc
        from google.cloud.firestore_v1.field_path import FieldPath

        data = {FieldPath(k).to_api_repr(): to_firestore(v) for k, v in fields.items()}
        with vendor_errors("update"):
            try:
                self._ref(collection, doc_id).update(data, **self._rt)
            except gexc.NotFound as exc:
                raise KeyError(f"{collection}/{doc_id} does not exist") from exc

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        """Create only if absent (Firestore's ``create`` precondition); True if this call created it."""
        from google.api_core import exceptions as gexc

        with vendor_errors("create"):
            try:
                self._ref(collection, doc_id).create(to_firestore(dict(data)), **self._rt)
            except gexc.AlreadyExists:
                return False
        return True

    def _create_all(self, refs: Sequence[Any], data: Mapping[str, Mapping[str, Any]], action: str) -> bool:
        """Create every document of ``refs`` (``data`` by id) in one atomic batch, reading nothing; False (and
        nothing written) when one of them exists already: the caller then takes the transaction's way.

        The common case of a first claim or a first order claim costs its writes only, not a read each."""
        from google.api_core import exceptions as gexc

        batch = self._client.batch()
        for ref in refs:
            batch.create(ref, to_firestore(dict(data[ref.id])))
        try:
            with vendor_errors(action):
                batch.commit(**self._rt)
        except (gexc.AlreadyExists, gexc.Conflict):
            return False
        except GoldthreadError as exc:
            if already_exists(exc):
                return False
            raise
        return True

    def create_many(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Create the absent documents and return every stored one. Each chunk is first created in one batch,
        reading nothing; if any of its documents exists, the chunk is read in a transaction instead and only
        the absent documents are created, so a concurrent creator of the same id makes the SDK retry the
        transaction, which then reads the other's document."""
        ids = list(docs)
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), _TX_CHUNK):
            refs = [self._ref(collection, d) for d in ids[i : i + _TX_CHUNK]]
            if self._create_all(refs, docs, "create_many"):
                out.update({ref.id: dict(docs[ref.id]) for ref in refs})
                continue

            def _create(tx: Any, refs: list[Any] = refs) -> dict[str, dict[str, Any]]:
                got: dict[str, dict[str, Any]] = {}
                for snap in self._client.get_all(refs, transaction=tx, **self._rt):
                    if snap.exists:
                        got[snap.id] = from_firestore(snap.to_dict() or {})
                for ref in refs:
                    if ref.id not in got:
                        tx.create(ref, to_firestore(dict(docs[ref.id])))
                        got[ref.id] = dict(docs[ref.id])
                return got

            out.update(self._transactional(_create, "create_many"))
        return out

    def delete(self, collection: str, doc_id: str) -> None:
        """Remove a document if it exists."""
        with vendor_errors("delete"):
            self._ref(collection, doc_id).delete(**self._rt)

    # -- queries ---------------------------------------------------------------------------------
    def query(
        self,
        collection: str,
        where: Sequence[Where] = (),
        fields: Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Documents matching every filter, fetched ``page_size`` at a time with ``start_after`` cursors.

        An ``in`` filter longer than Firestore's 30-value limit runs as several queries merged in
        order; documents come ordered by the range fields (if any) and then by id.
        """
        if page_size < 1:
            raise ValueError("page_size must be positive")
        # Firestore orders an inequality's field first (not-in is one), so the cursor pages in that order too
        range_fields = sorted({w.field for w in where if w.op in _RANGE_OPS or w.op == "not-in"})
        for w in where:
            if w.op in _RANGE_OPS and isinstance(w.value, Decimal):
                raise ConfigError(f"range filter on decimal field {w.field!r}: decimals are stored as text")
            if w.op == "not-in":
                check_not_in(w)
        in_filters = [w for w in where if w.op == "in"]
        if len(in_filters) + sum(w.op == "not-in" for w in where) > 1:
            raise ConfigError("Firestore allows one 'in' or 'not-in' filter per query")
        if in_filters and not list(in_filters[0].value):
            return
        variants: list[list[Where]] = [list(where)]
        if in_filters and len(list(in_filters[0].value)) > _IN_LIMIT:
            values = list(dict.fromkeys(in_filters[0].value))
            rest = [w for w in where if w.op != "in"]
            variants = [
                [*rest, Where(in_filters[0].field, "in", values[i : i + _IN_LIMIT])]
                for i in range(0, len(values), _IN_LIMIT)
            ]
        streams = [self._paged(collection, v, fields, range_fields, page_size) for v in variants]
        if len(streams) == 1:
            for _key, doc_id, doc in streams[0]:
                yield doc_id, doc
            return
        for _key, doc_id, doc in heapq.merge(*streams, key=lambda item: item[0]):
            yield doc_id, doc

    def _paged(
        self,
        collection: str,
        where: Sequence[Where],
        fields: Sequence[str] | None,
        range_fields: Sequence[str],
        page_size: int,
    ) -> Iterator[tuple[tuple[Any, ...], str, dict[str, Any]]]:
        """One Firestore query, paged; yields (sort key, id, document) in the query's order."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        q = self._client.collection(collection)
        for w in where:
            value = [to_firestore(v) for v in w.value] if w.op in ("in", "not-in") else to_firestore(w.value)
            q = q.where(filter=FieldFilter(w.field, w.op, value))
        if fields is not None:
            q = q.select(sorted({*fields, *range_fields}))
        for f in range_fields:
            q = q.order_by(f)
        q = q.order_by("__name__").limit(page_size)
        last = None
        while True:
            page_query = q.start_after(last) if last is not None else q
            with vendor_errors("query"):
                snaps = list(page_query.stream(**self._rt))
            for snap in snaps:
                data = from_firestore(snap.to_dict() or {})
                key = (*(sort_key(lookup(data, f)) for f in range_fields), snap.id)
                doc = {f: lookup(data, f) for f in fields} if fields is not None else data
                yield key, snap.id, doc
            if len(snaps) < page_size:
                return
            last = snaps[-1]

    # -- atomic operations -----------------------------------------------------------------------
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
        """Set ``field = value`` (and ``also``, ``each[id]``) where ``field`` is null or absent, in transactions;
        an absent document named in ``create`` is created with those fields and claimed in the same write.

        Each chunk of documents is read and written in one transaction, so a concurrent or redelivered
        claim of the same document either sees the field set (and skips it) or is retried by the SDK.
        """
        from google.cloud.firestore_v1.field_path import FieldPath

        common = {field: value, **(also or {})}
        ids = list(dict.fromkeys(doc_ids))
        changed: list[str] = []

        def fields_of(doc_id: str) -> dict[str, Any]:
            return {**common, **dict((each or {}).get(doc_id) or {})}

        for i in range(0, len(ids), _TX_CHUNK):
            refs = [self._ref(collection, d) for d in ids[i : i + _TX_CHUNK]]
            if create and all(ref.id in create for ref in refs):  # first claims create their documents: no read
                initial = {ref.id: {**dict(create[ref.id]), **fields_of(ref.id)} for ref in refs}
                if self._create_all(refs, initial, "claim"):
                    changed.extend(ref.id for ref in refs)
                    continue

            def _claim(tx: Any, refs: list[Any] = refs) -> list[str]:
                got = []
                for snap in self._client.get_all(refs, transaction=tx, **self._rt):
                    if snap.exists and lookup(snap.to_dict() or {}, field) is None:
                        updates = {FieldPath(k).to_api_repr(): to_firestore(v) for k, v in fields_of(snap.id).items()}
                        tx.update(snap.reference, updates)
                        got.append(snap.id)
                    elif not snap.exists and create and snap.id in create:
                        tx.create(snap.reference, to_firestore({**dict(create[snap.id]), **fields_of(snap.id)}))
                        got.append(snap.id)
                return got

            won = set(self._transactional(_claim, "claim"))
            changed.extend(d for d in ids[i : i + _TX_CHUNK] if d in won)
        return changed

    def record_outcomes(
        self, run_id: str, outcomes: Mapping[str, str], merges: Mapping[str, Merge] | None = None,
        *, at: dt.datetime | None = None,
    ) -> RecordedOutcomes:
        """Create ``job_metadata/{run_id}/items/{item}`` once per item, add to the run's counters and make the
        ``merges`` of the items it records, atomically per chunk; a new outcome sets the run's ``heartbeat_at``
        to ``at`` in the same write.

        A first delivery's items are not recorded yet, so each chunk is first written blind, reading nothing:
        one batch creates the item documents, makes the merges and adds to the run's counters with server-side
        increments, which return the counters (and ``published``) as the write left them (``complete`` False).
        Firestore refuses the whole batch if an item document exists or the run does not, and the chunk is
        then done the careful way: a transaction reads the run and the item documents, records only the absent
        items and returns the whole run. Either way a redelivered message is never counted twice.
        """
        for outcome in outcomes.values():
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}")
        run_ref = self._ref("job_metadata", run_id)
        items = list(outcomes.items())
        for item, _ in items:
            check_id(item)
        merges = merges or {}
        added = dict.fromkeys(OUTCOMES, 0)
        run: dict[str, Any] | None = None
        complete = True

        def _write(tx: Any, fresh: Sequence[tuple[str, str]], refs: Mapping[str, Any]) -> dict[str, int]:
            counts = dict.fromkeys(OUTCOMES, 0)
            now = dt.datetime.now(dt.UTC)
            for item, outcome in fresh:
                tx.create(refs[item], {"outcome": str(outcome), "recorded_at": now})
                counts[outcome] += 1
                if item in merges:
                    merge = merges[item]
                    tx.set(self._ref(merge.collection, merge.doc_id), to_firestore(dict(merge.fields)), merge=True)
            return counts

        for i in range(0, len(items), _TX_CHUNK):
            chunk = items[i : i + _TX_CHUNK]
            refs = {item: run_ref.collection(ITEMS_SUBCOLLECTION).document(item) for item, _ in chunk}

            def _careful(tx: Any, chunk: list[tuple[str, str]] = chunk, refs: dict[str, Any] = refs
                         ) -> tuple[dict[str, int], dict[str, Any] | None]:
                snaps = {s.reference.path: s for s in self._client.get_all([run_ref, *refs.values()], transaction=tx,
                                                                             **self._rt)}
                stored = snaps[run_ref.path]
                if not stored.exists:
                    return dict.fromkeys(OUTCOMES, 0), None
                counts = _write(tx, [(item, o) for item, o in chunk if not snaps[refs[item].path].exists], refs)
                data = from_firestore(stored.to_dict() or {})
                if any(counts.values()):
                    totals: dict[str, Any] = {k: int(data.get(k) or 0) + n for k, n in counts.items()}
                    if at is not None:
                        totals["heartbeat_at"] = at
                    tx.update(run_ref, to_firestore(totals))
                    data.update(totals)
                return counts, data

            try:
                counts, run = self._blind(run_ref, chunk, refs, _write, at)
                complete = False
            except GoldthreadError as exc:
                if not refused(exc):
                    raise
                counts, run = self._transactional(_careful, "record_outcomes")
                complete = True
            if run is None:
                break
            for k, n in counts.items():
                added[k] += n
        return RecordedOutcomes(added, run, complete)

    def _blind(self, run_ref: Any, chunk: Sequence[tuple[str, str]], refs: Mapping[str, Any],
               write: Callable[[Any, Sequence[tuple[str, str]], Mapping[str, Any]], dict[str, int]],
               at: dt.datetime | None) -> tuple[dict[str, int], dict[str, Any]]:
        """``record_outcomes``' first try: one batch, no read. The run's counters move by ``Increment`` and
        ``published`` by ``Increment(0)``, so the write returns all four as it left them (the SDK sends the
        transforms sorted by field path, and Firestore answers their results in the order sent)."""
        from google.cloud import firestore

        batch = self._client.batch()
        counts = write(batch, chunk, refs)
        fields = sorted([*OUTCOMES, "published"])
        update: dict[str, Any] = {f: firestore.Increment(counts.get(f, 0)) for f in fields}
        if at is not None:
            update["heartbeat_at"] = to_firestore(at)
        batch.update(run_ref, update)
        with vendor_errors("record_outcomes"):
            results = batch.commit(**self._rt)
        values = [int(v.integer_value) for v in results[-1].transform_results]
        return counts, dict(zip(fields, values, strict=True))

    def item_outcomes(self, run_id: str) -> dict[str, str]:
        """Every item outcome recorded for a run, from its ``items`` subcollection."""
        items = self._ref("job_metadata", run_id).collection(ITEMS_SUBCOLLECTION)
        with vendor_errors("item_outcomes"):
            return {snap.id: str((snap.to_dict() or {}).get("outcome")) for snap in items.stream(**self._rt)}

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
        """Take ``leases/{name}`` for ``holder`` in a transaction unless another live holder has it (see the
        port: an expired lease, or one held by ``take_over``, is taken)."""
        ref = self._ref(LEASES_COLLECTION, name)
        now_utc = to_firestore(now)

        def _acquire(tx: Any) -> str | None:
            snap = next(iter(self._client.get_all([ref], transaction=tx, **self._rt)))
            if snap.exists:
                data = from_firestore(snap.to_dict() or {})
                expires = data.get("expires_at")
                if data.get("holder") not in (holder, take_over) and isinstance(expires, dt.datetime) \
                        and expires > now_utc:
                    return str(data.get("holder"))
            tx.set(ref, {"holder": holder, "acquired_at": now_utc, "heartbeat_at": now_utc,
                         "expires_at": now_utc + ttl, "host": host, "pid": int(pid)})
            return None

        return self._transactional(_acquire, "acquire_lease")

    def renew_lease(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        """Move ``leases/{name}``'s heartbeat and expiry in a transaction if ``holder`` still holds it."""
        ref = self._ref(LEASES_COLLECTION, name)
        now_utc = to_firestore(now)

        def _renew(tx: Any) -> bool:
            snap = next(iter(self._client.get_all([ref], transaction=tx, **self._rt)))
            if not snap.exists or (snap.to_dict() or {}).get("holder") != holder:
                return False
            tx.update(ref, {"heartbeat_at": now_utc, "expires_at": now_utc + ttl})
            return True

        return self._transactional(_renew, "renew_lease")

    def read_lease(self, name: str) -> Lease | None:
        """``leases/{name}`` as a ``Lease``, or None."""
        data = self.get(LEASES_COLLECTION, name)
        if data is None or not isinstance(data.get("expires_at"), dt.datetime):
            return None
        heartbeat = data.get("heartbeat_at")
        return Lease(
            name=name, holder=str(data.get("holder", "")), expires_at=data["expires_at"],
            heartbeat_at=heartbeat if isinstance(heartbeat, dt.datetime) else None,
            host=str(data.get("host") or ""), pid=int(data.get("pid") or 0),
        )

    def release_lease(self, name: str, holder: str) -> None:
        """Delete ``leases/{name}`` in a transaction if ``holder`` still holds it."""
        ref = self._ref(LEASES_COLLECTION, name)

        def _release(tx: Any) -> None:
            snap = next(iter(self._client.get_all([ref], transaction=tx, **self._rt)))
            if snap.exists and (snap.to_dict() or {}).get("holder") == holder:
                tx.delete(ref)

        self._transactional(_release, "release_lease")

    def close(self) -> None:
        """Close the client's channels."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
