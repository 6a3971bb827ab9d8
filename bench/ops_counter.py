"""Count the billable operations the Google clients perform, in whichever process installs the hooks.

Counted at the client library's lowest public layer, so the figures do not depend on how goldthread's
adapters use it:

* Firestore: every document answered by ``BatchGetDocuments`` (found or missing: both are billed as a
  read), every document a ``RunQuery`` returns (at least one read per query), every ``Write`` in a
  ``Commit`` (a transaction's or a batch's);
* BigQuery: rows and billable bytes of ``insertAll`` streaming (each row at least 1 KB, as billed),
  query jobs (each bills at least 10 MB per table it reads), load jobs (free);
* Pub/Sub: messages published and their bytes as billed (body, attributes, 20 bytes of timestamp and
  the message id).

``snapshot()`` returns the counters; ``write(path)`` saves them as JSON (the function workers do that
after each invocation so the benchmark can read them).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COUNTS: Counter[str] = Counter()
_LOCK = threading.Lock()
_INSTALLED: list[bool] = []
MESSAGE_ID_BYTES = 16  # Pub/Sub message ids are 16-ish digit strings


def add(key: str, amount: float = 1) -> None:
    """Add to a counter (thread-safe)."""
    with _LOCK:
        COUNTS[key] += amount  # type: ignore[assignment]


def snapshot() -> dict[str, float]:
    """A copy of every counter."""
    with _LOCK:
        return dict(COUNTS)


def reset() -> None:
    """Zero every counter."""
    with _LOCK:
        COUNTS.clear()


def write(path: Path | str) -> None:
    """Save the counters as JSON, atomically (write then rename)."""
    data = json.dumps(snapshot())
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    Path(tmp).write_text(data)
    os.replace(tmp, path)


def _writes_of(request: Any) -> int:
    writes = request.get("writes") if isinstance(request, dict) else getattr(request, "writes", None)
    return len(writes or [])


def install() -> None:
    """Patch the Firestore, BigQuery and Pub/Sub client classes to count (idempotent)."""
    if _INSTALLED:
        return
    _INSTALLED.append(True)
    _install_firestore()
    _install_bigquery()
    _install_pubsub()


def _install_firestore() -> None:
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    batch_get, run_query = FirestoreClient.batch_get_documents, FirestoreClient.run_query
    commit = FirestoreClient.commit

    def counted_batch_get(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        def stream() -> Iterator[Any]:
            for response in batch_get(self, *args, **kwargs):
                if response.found or response.missing:
                    add("firestore_reads")
                yield response

        return stream()

    def counted_run_query(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        def stream() -> Iterator[Any]:
            returned = 0
            try:
                for response in run_query(self, *args, **kwargs):
                    if response.document and response.document.name:
                        returned += 1
                    yield response
            finally:
                add("firestore_reads", max(1, returned))
                add("firestore_queries")

        return stream()

    def counted_commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = kwargs.get("request", args[0] if args else None)
        result = commit(self, *args, **kwargs)
        add("firestore_writes", _writes_of(request))
        add("firestore_commits")
        return result

    FirestoreClient.batch_get_documents = counted_batch_get  # type: ignore[method-assign]
    FirestoreClient.run_query = counted_run_query  # type: ignore[method-assign]
    FirestoreClient.commit = counted_commit  # type: ignore[method-assign]


def _install_bigquery() -> None:
    from google.cloud import bigquery

    insert, query = bigquery.Client.insert_rows_json, bigquery.Client.query

    def counted_insert(self: Any, table: Any, json_rows: Any, *args: Any, **kwargs: Any) -> Any:
        rows = list(json_rows)
        result = insert(self, table, rows, *args, **kwargs)
        add("bigquery_streamed_rows", len(rows))
        add("bigquery_streamed_bytes", sum(len(json.dumps(r, default=str).encode()) for r in rows))
        add("bigquery_streamed_billable_bytes", sum(max(1024, len(json.dumps(r, default=str).encode())) for r in rows))
        add("bigquery_insert_calls")
        return result

    def counted_query(self: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
        add("bigquery_query_jobs")
        return query(self, sql, *args, **kwargs)

    bigquery.Client.insert_rows_json = counted_insert  # type: ignore[method-assign]
    bigquery.Client.query = counted_query  # type: ignore[method-assign]


def _install_pubsub() -> None:
    from google.cloud.pubsub_v1 import PublisherClient

    publish = PublisherClient.publish

    def counted_publish(self: Any, topic: Any, data: bytes, *args: Any, **attrs: Any) -> Any:
        size = len(data) + sum(len(str(k)) + len(str(v)) for k, v in attrs.items()) + 20 + MESSAGE_ID_BYTES
        add("pubsub_published")
        add("pubsub_published_bytes", size)
        return publish(self, topic, data, *args, **attrs)

    PublisherClient.publish = counted_publish  # type: ignore[method-assign]
