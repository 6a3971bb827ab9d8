"""Record marks: goldthread's own record of what it did with each bot record, kept in ``ledger_marks``.

The trading bot writes its documents as it likes; goldthread never writes on them and never needs them to
carry any field of its own. Each record goldthread has touched has one mark document
(``RecordMark``, id ``{collection}:{doc_id}``) holding:

* ``loading_run_id``: the first run that began writing the record's row where the warehouse bills its key
  check (BigQuery); a later attempt checks the warehouse before writing;
* ``archived_run_id`` / ``archived_at``: the run that archived it;
* ``dead_lettered_run_id``: the run whose item for it was dead-lettered;
* ``digest``: the content digest of the document as it was archived or dead-lettered.

Each mark field is set by a conditional claim (set where absent), so a redelivery never marks twice. A
record is *settled* when archived or dead-lettered; it is due again only when its document changes (its
digest differs: a correction, by the writer API or by the bot in place), which then clears the settled
marks so the record is archived again as a revision (or dead-lettered again with the new reason).

``observing()`` lets the subscriber learn the digest of every document a loop's build read, without
reading it twice: ``observe`` is called where documents are loaded (``LoopSpec.load_docs``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

from goldthread.models.hot import LEGACY_MARKS, RecordMark
from goldthread.ports.hot_store import HotStore, Merge, Where

MARKS = RecordMark.collection
DUE_AGAIN = "due_again"


class Mark(StrEnum):
    """The fields of a record mark that a claim sets, each at most once until the record changes."""

    LOADING = "loading_run_id"
    ARCHIVED = "archived_run_id"
    DEAD_LETTERED = "dead_lettered_run_id"


def mark_id(collection: str, doc_id: str) -> str:
    """The id of a record's mark: ``{collection}:{doc_id}`` (a collection name holds no colon)."""
    return f"{collection}:{doc_id}"


def digest_of(doc: Mapping[str, Any] | str) -> str:
    """A content digest of a hot document as the store returned it: JSON text as stored (SQLite), or a
    mapping serialised with sorted keys (Firestore). Only compared with digests taken from the same store.
    Legacy goldthread marks on a mapping are left out (they are not the bot's content)."""
    if isinstance(doc, str):
        text = doc
    else:
        text = json.dumps({k: v for k, v in doc.items() if k not in LEGACY_MARKS}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=16).hexdigest()


_OBSERVED: ContextVar[dict[tuple[str, str], str] | None] = ContextVar("goldthread_observed_digests", default=None)


@contextmanager
def observing() -> Iterator[dict[tuple[str, str], str]]:
    """Collect ``(collection, doc_id) -> digest`` of every document loaded by ``observe`` inside the block."""
    seen: dict[tuple[str, str], str] = {}
    token = _OBSERVED.set(seen)
    try:
        yield seen
    finally:
        _OBSERVED.reset(token)


def observed() -> dict[tuple[str, str], str]:
    """The digests observed so far in the current ``observing`` block (empty outside one)."""
    return dict(_OBSERVED.get() or {})


def observe(collection: str, docs: Mapping[str, Mapping[str, Any] | str]) -> None:
    """Record the digests of documents just loaded, if someone is observing (else nothing is computed)."""
    seen = _OBSERVED.get()
    if seen is not None:
        for doc_id, doc in docs.items():
            seen[(collection, doc_id)] = digest_of(doc)


def read_marks(hot: HotStore, collection: str, doc_ids: Sequence[str]) -> dict[str, RecordMark]:
    """The marks of the given records (records goldthread never marked are absent)."""
    if not doc_ids:
        return {}
    stored = hot.get_many(MARKS, [mark_id(collection, d) for d in dict.fromkeys(doc_ids)])
    out: dict[str, RecordMark] = {}
    for data in stored.values():
        mark = RecordMark.model_validate(data)
        out[mark.doc_id] = mark
    return out


def claim(
    hot: HotStore,
    collection: str,
    doc_ids: Sequence[str],
    mark: Mark,
    run_id: str,
    also: Mapping[str, Any] | None = None,
    digests: Mapping[str, str] | None = None,
) -> list[str]:
    """Set ``mark`` to ``run_id`` on each record whose mark field is unset (creating its mark document if
    needed); returns the record ids this call marked. ``digests`` (by record id) is stored with the mark."""
    if not doc_ids:
        return []
    keys = {mark_id(collection, d): d for d in dict.fromkeys(doc_ids)}
    create = {key: {"record_collection": collection, "doc_id": doc_id} for key, doc_id in keys.items()}
    each = {mark_id(collection, d): {"digest": digest} for d, digest in (digests or {}).items()} or None
    if mark is not Mark.LOADING:  # settled again: no longer due
        also = {**(also or {}), DUE_AGAIN: None}
    won = hot.claim(MARKS, list(keys), mark.value, run_id, also, each=each, create=create)
    return [keys[key] for key in won]


def archived(collection: str, doc_id: str, run_id: str, at: Any, digest: str | None) -> Merge:
    """The mark of a record whose row its run has just loaded, to be written with the item's outcome
    (``HotStore.record_outcomes``): archived by ``run_id``, with the digest of the document archived, no longer
    due. Made only when the outcome is newly counted, in the same atomic step, so counting and marking can
    never part (a crash leaves both or neither); the row is this run's, so it is set whatever the mark held."""
    return Merge(MARKS, mark_id(collection, doc_id), {
        "record_collection": collection, "doc_id": doc_id, Mark.ARCHIVED.value: run_id, "archived_at": at,
        "digest": digest, DUE_AGAIN: None,
    })


def clear_settled(hot: HotStore, collection: str, doc_ids: Sequence[str]) -> None:
    """Make records due again after their documents changed: the archived and dead-letter marks (and the
    digest) are cleared and ``due_again`` is set, so the next dispatch finds them whatever day their time
    falls on (``due_again_ids``); ``loading_run_id`` is kept, since a row may exist and must be checked for."""
    for doc_id in dict.fromkeys(doc_ids):
        try:
            hot.update(MARKS, mark_id(collection, doc_id), {
                Mark.ARCHIVED.value: None, "archived_at": None, Mark.DEAD_LETTERED.value: None, "digest": None,
                DUE_AGAIN: True,
            })
        except KeyError:
            continue  # never marked: nothing to clear


def due_again_ids(hot: HotStore, collection: str) -> list[str]:
    """Records whose settled marks were cleared (a correction) and that no run has settled since: an equality
    query on goldthread's own field, which every mark document carries once it was cleared."""
    where = [Where("record_collection", "==", collection), Where(DUE_AGAIN, "==", True)]
    return [str(data["doc_id"]) for _, data in hot.query(MARKS, where, fields=["doc_id"]) if data.get("doc_id")]


def refresh_digests(hot: HotStore, collection: str, doc_ids: Sequence[str]) -> None:
    """Record the current digest of documents goldthread itself just corrected in the hot store while
    correcting their archived rows too (the price patch), so the change is not taken for a bot's correction
    that would need archiving again."""
    docs = hot.get_many_unparsed(collection, list(dict.fromkeys(doc_ids)))
    for doc_id, doc in docs.items():
        try:
            hot.update(MARKS, mark_id(collection, doc_id), {"digest": digest_of(doc)})
        except KeyError:
            continue
