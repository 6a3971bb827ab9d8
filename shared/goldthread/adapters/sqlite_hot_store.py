"""Embedded hot store: one SQLite file (WAL) holding JSON documents per collection.

It mirrors what the loops need from Firestore: documents by id, filtered and projected queries with
cursor paging, atomic conditional "claims", idempotent run counters and leases. Several processes may
share the file (WAL mode, a busy timeout); every multi-step change runs in one ``BEGIN IMMEDIATE``
transaction so a crash leaves either all of it or none.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from goldthread.adapters.jsonish import dumps, encode_value, loads
from goldthread.errors import StoreUnavailableError
from goldthread.ports.hot_store import OUTCOMES as _OUTCOMES
from goldthread.ports.hot_store import HotStore, Lease, Merge, RecordedOutcomes, Where, check_not_in

_OPS = {"==": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_status ON docs (collection, json_extract(data, '$.status'));
CREATE TABLE IF NOT EXISTS run_items (
    run_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (run_id, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""
_LEASE_COLUMNS = {"heartbeat_at": "TEXT", "host": "TEXT NOT NULL DEFAULT ''", "pid": "INTEGER NOT NULL DEFAULT 0"}
"""Lease columns added after the first release: a file created before them gains them when opened."""


def _not_in(field: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """A ``not-in`` filter as SQL with Firestore's semantics: the field is present and not null (both
    extract as SQL NULL when they are not) and equals none of ``values`` *of the same JSON type*, so a
    boolean is not the number 1 and the number 1 is not the text "1" (SQLite alone would say both are)."""
    expr = _path_expr(field)  # validated first: the field reaches the SQL text
    kind = f"json_type(data, '$.{field}')"
    equal, params = [], []
    for value in values:
        if isinstance(value, bool):
            equal.append(f"{kind} = '{'true' if value else 'false'}'")
        elif isinstance(value, int | float):
            equal.append(f"({kind} IN ('integer', 'real') AND {expr} = ?)")
            params.append(value)
        else:
            equal.append(f"({kind} = 'text' AND {expr} = ?)")
            params.append(encode_value(value))
    return f"({expr} IS NOT NULL AND NOT ({' OR '.join(equal)}))", params


def _path_expr(field: str) -> str:
    if not all(part.isidentifier() for part in field.split(".")):
        raise ValueError(f"unsafe field path {field!r}")
    return f"json_extract(data, '$.{field}')"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _open_read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened read-only: shared (``mode=ro``) when SQLite may create its ``-shm`` beside it, else
    ``immutable`` (a directory it cannot write; the WAL was checkpointed when the last writer closed)."""
    for query in ("mode=ro", "mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
            return db
        except sqlite3.Error as exc:
            error = exc
    raise StoreUnavailableError(f"cannot open hot store {path} read-only: {error}")


class SqliteHotStore(HotStore):
    """The embedded hot store (default). ``path`` is the SQLite file, created on first use.

    ``read_only`` opens it for reading only and creates nothing: a missing file reads as an empty store, and a
    WAL file in a directory the process cannot write (no ``-shm`` to create) is opened ``immutable``.
    """

    name: ClassVar[str] = "sqlite"

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        if read_only and str(path) != ":memory:" and self.path.exists():
            self._db = _open_read_only(self.path)
            return
        if str(path) != ":memory:" and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only:
            path = ":memory:"  # nothing stored yet: an empty store, and no file created
        try:
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_lease_columns()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open hot store {path}: {exc}") from exc

    def _add_lease_columns(self) -> None:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(leases)").fetchall()}
        for column, kind in _LEASE_COLUMNS.items():
            if column not in have:
                try:
                    self._db.execute(f"ALTER TABLE leases ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise

    # -- helpers ---------------------------------------------------------------------------------
    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreUnavailableError(f"hot store: {exc}") from exc

    def _transaction(self) -> _Tx:
        return _Tx(self)

    # -- documents -------------------------------------------------------------------------------
    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """One document, or None."""
        rows = self._run("SELECT data FROM docs WHERE collection=? AND id=?", (collection, doc_id))
        return loads(rows[0][0]) if rows else None

    def get_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Documents by id, parsed."""
        return {doc_id: loads(text) for doc_id, text in self._texts(collection, doc_ids).items()}

    def get_many_unparsed(self, collection: str, doc_ids: Sequence[str]) -> dict[str, Mapping[str, Any] | str]:
        """Documents by id as their stored JSON text (see the port)."""
        return dict(self._texts(collection, doc_ids))

    def _texts(self, collection: str, doc_ids: Sequence[str]) -> dict[str, str]:
        """Stored JSON text by id, in chunks of 500 to stay under SQLite's parameter limit."""
        out: dict[str, str] = {}
        ids = list(dict.fromkeys(doc_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, data FROM docs WHERE collection=? AND id IN ({marks})"
            out.update(self._run(sql, (collection, *chunk)))  # type: ignore[arg-type]
        return out

    def put(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace a document."""
        self._run(
            "INSERT OR REPLACE INTO docs (collection, id, data, updated_at) VALUES (?,?,?,?)",
            (collection, doc_id, dumps(dict(data)), _now()),
        )

    def put_many(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> None:
        """Create or replace many documents in one transaction (bulk loads, benchmarks)."""
        now = _now()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO docs (collection, id, data, updated_at) VALUES (?,?,?,?)",
                [(collection, k, dumps(dict(v)), now) for k, v in docs.items()],
            )

    def update(self, collection: str, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Merge top-level ``fields`` into an existing document."""
        with self._transaction() as db:
            row = db.execute("SELECT data FROM docs WHERE collection=? AND id=?", (collection, doc_id)).fetchone()
            if row is None:
                raise KeyError(f"{collection}/{doc_id} does not exist")
            doc = loads(row[0])
            doc.update(fields)
            db.execute(
                "UPDATE docs SET data=?, updated_at=? WHERE collection=? AND id=?",
                (dumps(doc), _now(), collection, doc_id),
            )

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> bool:
        """Create only if absent."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO docs (collection, id, data, updated_at) VALUES (?,?,?,?)",
                (collection, doc_id, dumps(dict(data)), _now()),
            )
            return cur.rowcount == 1

    def create_many(self, collection: str, docs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Create the absent documents and read every one back, in one transaction."""
        now = _now()
        ids = list(docs)
        out: dict[str, dict[str, Any]] = {}
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO docs (collection, id, data, updated_at) VALUES (?,?,?,?)",
                [(collection, k, dumps(dict(v)), now) for k, v in docs.items()],
            )
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for doc_id, text in db.execute(
                    f"SELECT id, data FROM docs WHERE collection=? AND id IN ({marks})", (collection, *chunk)
                ).fetchall():
                    out[doc_id] = loads(text)
        return out

    def delete(self, collection: str, doc_id: str) -> None:
        """Remove a document if it exists."""
        self._run("DELETE FROM docs WHERE collection=? AND id=?", (collection, doc_id))

    def query(
        self,
        collection: str,
        where: Sequence[Where] = (),
        fields: Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Matching documents ordered by id, fetched a page at a time with an id cursor."""
        clauses, params = ["collection = ?"], [collection]
        for w in where:
            expr = _path_expr(w.field)
            if w.op == "==" and w.value is None:
                clauses.append(f"json_type(data, '$.{w.field}') = 'null'")
            elif w.op == "in":
                values = [encode_value(v) for v in w.value]
                clauses.append(f"{expr} IN ({','.join('?' * len(values))})" if values else "0")
                params.extend(values)
            elif w.op == "not-in":
                clause, values = _not_in(w.field, check_not_in(w))
                clauses.append(clause)
                params.extend(values)
            else:
                clauses.append(f"{expr} {_OPS[w.op]} ?")
                params.append(encode_value(w.value))
        cursor = ""
        if fields is None:
            selected = "data"
        else:  # a projection is read in SQL, as JSON text per field, instead of parsing whole documents
            names = list(fields)
            for name in names:
                _path_expr(name)  # validated: it reaches the SQL text
            paths = [f"data -> '$.{name}'" for name in names]
            selected = f"json_array({', '.join(paths)})" if names else "'[]'"
        sql = f"SELECT id, {selected} FROM docs WHERE {' AND '.join(clauses)} AND id > ? ORDER BY id LIMIT ?"
        while True:
            rows = self._run(sql, (*params, cursor, page_size))
            for doc_id, data in rows:
                if fields is None:
                    yield doc_id, loads(data)
                else:
                    yield doc_id, dict(zip(names, loads(data), strict=True))
            if len(rows) < page_size:
                return
            cursor = rows[-1][0]

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
        """Set ``field`` (and ``also``, ``each[id]``) where it is null or absent, atomically; return the ids
        changed. ``create`` gives the initial fields of documents to create first when absent."""
        updates = {field: value, **(also or {})}
        for name in [*updates, *(k for extra in (each or {}).values() for k in extra)]:
            _path_expr(name)  # every field name reaches the SQL text: each is validated, not only ``field``
        setters = ", ".join(f"'$.{k}', json(?)" for k in updates)
        encoded = [dumps(encode_value(v)) for v in updates.values()]
        changed: list[str] = []
        with self._transaction() as db:
            if create:
                now = _now()
                db.executemany(
                    "INSERT OR IGNORE INTO docs (collection, id, data, updated_at) VALUES (?,?,?,?)",
                    [(collection, d, dumps(dict(create[d])), now) for d in doc_ids if d in create],
                )
            if each:
                for doc_id in doc_ids:
                    extra = dict(each.get(doc_id) or {})
                    sets = ", ".join([setters, *(f"'$.{k}', json(?)" for k in extra)])
                    rows = db.execute(
                        f"UPDATE docs SET data = json_set(data, {sets}), updated_at = ? WHERE collection = ? "
                        f"AND id = ? AND json_extract(data, '$.{field}') IS NULL RETURNING id",
                        (*encoded, *(dumps(encode_value(v)) for v in extra.values()), _now(), collection, doc_id),
                    ).fetchall()
                    changed.extend(r[0] for r in rows)
                return changed
            for i in range(0, len(doc_ids), 400):
                chunk = list(doc_ids[i : i + 400])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"UPDATE docs SET data = json_set(data, {setters}), updated_at = ? "
                    f"WHERE collection = ? AND id IN ({marks}) AND json_extract(data, '$.{field}') IS NULL "
                    "RETURNING id",
                    (*encoded, _now(), collection, *chunk),
                ).fetchall()
                changed.extend(r[0] for r in rows)
        return changed

    # -- runs and leases -------------------------------------------------------------------------
    def record_outcomes(
        self, run_id: str, outcomes: Mapping[str, str], merges: Mapping[str, Merge] | None = None,
        *, at: dt.datetime | None = None,
    ) -> RecordedOutcomes:
        """Insert each item's outcome once; add the new ones to the run document's counters (and set its
        heartbeat to ``at``); merge the ``merges`` of the items newly recorded; return both, all in one
        transaction."""
        added = dict.fromkeys(_OUTCOMES, 0)
        unknown = set(outcomes.values()).difference(_OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcome {sorted(unknown)[0]!r}")
        with self._transaction() as db:
            run = "SELECT data FROM docs WHERE collection = 'job_metadata' AND id = ?"
            if db.execute(run, (run_id,)).fetchone() is None:
                return RecordedOutcomes(added, None)
            wanted = {item: merge for item, merge in (merges or {}).items() if item in outcomes}
            if wanted:  # the items recorded before keep their first outcome: their merges are not made again
                known: set[str] = set()
                items = list(wanted)
                for i in range(0, len(items), 400):
                    values = items[i : i + 400]
                    known.update(r[0] for r in db.execute(
                        "SELECT item_id FROM run_items WHERE run_id = ? "
                        f"AND item_id IN ({','.join('?' * len(values))})", (run_id, *values)))
                _merge_docs(db, [merge for item, merge in wanted.items() if item not in known])
            for outcome in _OUTCOMES:  # one statement per outcome; rowcount counts only the rows inserted
                cur = db.executemany(
                    "INSERT OR IGNORE INTO run_items (run_id, item_id, outcome) VALUES (?,?,?)",
                    [(run_id, item_id, outcome) for item_id, kind in outcomes.items() if kind == outcome],
                )
                added[outcome] += max(cur.rowcount, 0)
            if any(added.values()):
                sets = ", ".join([*(f"'$.{k}', COALESCE(json_extract(data, '$.{k}'), 0) + ?" for k in _OUTCOMES),
                                  *(["'$.heartbeat_at', ?"] if at is not None else [])])
                db.execute(
                    f"UPDATE docs SET data = json_set(data, {sets}), updated_at = ? "
                    "WHERE collection = 'job_metadata' AND id = ?",
                    (*(added[k] for k in _OUTCOMES), *([encode_value(at)] if at is not None else []), _now(), run_id),
                )
            (data,) = db.execute(run, (run_id,)).fetchone()
        return RecordedOutcomes(added, loads(data))

    def item_outcomes(self, run_id: str) -> dict[str, str]:
        """Every item outcome of a run."""
        return dict(self._run("SELECT item_id, outcome FROM run_items WHERE run_id=?", (run_id,)))  # type: ignore[arg-type]

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
        """Take the lease unless a live holder keeps it (see the port); returns that holder, or None."""
        with self._transaction() as db:
            row = db.execute("SELECT holder, expires_at FROM leases WHERE name=?", (name,)).fetchone()
            if row and row[0] not in (holder, take_over) and row[1] > encode_value(now):
                return str(row[0])
            db.execute(
                "INSERT OR REPLACE INTO leases (name, holder, expires_at, heartbeat_at, host, pid) "
                "VALUES (?,?,?,?,?,?)",
                (name, holder, encode_value(now + ttl), encode_value(now), host, int(pid)),
            )
        return None

    def renew_lease(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        """Extend the lease if ``holder`` still holds it."""
        return bool(self._run(
            "UPDATE leases SET expires_at=?, heartbeat_at=? WHERE name=? AND holder=? RETURNING name",
            (encode_value(now + ttl), encode_value(now), name, holder),
        ))

    def read_lease(self, name: str) -> Lease | None:
        """The stored lease, or None."""
        rows = self._run("SELECT holder, expires_at, heartbeat_at, host, pid FROM leases WHERE name=?", (name,))
        if not rows:
            return None
        holder, expires, heartbeat, host, pid = rows[0]
        return Lease(
            name=name, holder=str(holder), expires_at=dt.datetime.fromisoformat(expires),
            heartbeat_at=dt.datetime.fromisoformat(heartbeat) if heartbeat else None,
            host=host or "", pid=int(pid or 0),
        )

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease back if still held by ``holder``."""
        self._run("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) under the store's lock."""

    def __init__(self, store: SqliteHotStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self.store._lock.release()
            raise StoreUnavailableError(f"hot store busy: {exc}") from exc
        return self.store._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreUnavailableError(f"hot store: {exc}") from exc


def _merge_docs(db: sqlite3.Connection, merges: Sequence[Merge]) -> None:
    """Merge each ``Merge``'s fields into its document, creating the document with them if absent."""
    now = _now()
    for merge in merges:
        for name in merge.fields:
            _path_expr(name)  # every field name reaches the SQL text
        db.execute("INSERT OR IGNORE INTO docs (collection, id, data, updated_at) VALUES (?,?,?,?)",
                   (merge.collection, merge.doc_id, "{}", now))
        sets = ", ".join(f"'$.{k}', json(?)" for k in merge.fields)
        db.execute(f"UPDATE docs SET data = json_set(data, {sets}), updated_at = ? WHERE collection = ? AND id = ?",
                   (*(dumps(encode_value(v)) for v in merge.fields.values()), now, merge.collection, merge.doc_id))
