"""Dead letters and hot documents a person can act on: show a letter with its record as it is now, discard it,
read or fix the hot document.

Everything goes through the ports (``HotStore``, ``Warehouse``) and the writer API, so it works the same on
SQLite and DuckDB as on Firestore and BigQuery. A fix is written by ``HotWriter.save_document``: validated by
SchemaGuardian first (an invalid document is refused with every field's error, nothing written), its archive and
dead-letter marks cleared so the next dispatch (or ``replay``) picks it up.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from goldthread.console.output import field_errors, letter_record
from goldthread.errors import GoldthreadError, NotFoundError, RecordValidationError, RefusedError
from goldthread.ledger import marks
from goldthread.models import SchemaGuardian
from goldthread.models.hot import HotDocument, JobMetadata
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import collection_of, discard_dead_letter, get_dead_letter, list_dead_letters
from goldthread.writer import MODELS, HotWriter

OPERATOR_ENV = "GOLDTHREAD_OPERATOR"
"""Who a discard is recorded as; unset, the operating-system user."""

READABLE: dict[str, type[HotDocument] | type[JobMetadata]] = {**MODELS, "job_metadata": JobMetadata}
"""Collections ``hot get`` reads (and validates against); ``hot put`` writes only the writer API's (``MODELS``)."""


def operator() -> str:
    """The person acting: ``GOLDTHREAD_OPERATOR``, else the operating-system user, else ``unknown``."""
    name = os.environ.get(OPERATOR_ENV, "").strip()
    if name:
        return name[:256]
    try:
        return getpass.getuser()[:256]
    except (KeyError, OSError):
        return "unknown"


@dataclass
class LetterView:
    """One dead letter with everything needed to act on it."""

    letter: dict[str, Any]
    payload: Any
    errors: list[dict[str, Any]]
    collection: str | None
    document: dict[str, Any] | None
    validates_now: bool | None
    """Whether the hot document passes SchemaGuardian now (None: the loop has no hot document, or it is gone)."""
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, Any] = field(default_factory=dict)
    """goldthread's ledger marks of the record now (``ledger.marks``): archived, dead-lettered, loading."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``dead-letters show --json`` (README "JSON output")."""
        return {"dead_letter": self.letter, "payload": self.payload, "errors": self.errors,
                "collection": self.collection, "hot_document": self.document,
                "validates_now": self.validates_now, "validation_errors": self.validation_errors,
                "marks": self.marks}


def check_ids(ctx: Context, ids: Sequence[str] | None) -> None:
    """``NotFoundError`` naming every given id that is neither a dead letter's id nor a dead-lettered record's
    (``dead-letters list --id``, ``replay --id``: an unknown id is an answer, not an empty list)."""
    if not ids:
        return
    letters = list_dead_letters(ctx, ids=ids, include_replayed=True)
    known = {str(v) for d in letters for v in (d["row_id"], d["doc_id"])}
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFoundError(f"not found: no dead letter with id or record {', '.join(map(repr, missing))}")


def validate_document(collection: str, doc_id: str, data: Any) -> list[dict[str, Any]]:
    """SchemaGuardian's field errors for ``data`` as a document of ``collection`` (empty: it validates)."""
    try:
        SchemaGuardian.validate(READABLE[collection], data, doc_id)
    except RecordValidationError as exc:
        return list(exc.errors)
    return []


def show_dead_letter(ctx: Context, dead_letter_id: str) -> LetterView:
    """The letter, its payload and field errors, its hot document as it is now and whether that validates now."""
    letter = get_dead_letter(ctx, dead_letter_id)
    if letter is None:
        raise NotFoundError(f"not found: no dead letter {dead_letter_id!r} (ids: goldthread dead-letters list)")
    try:
        payload: Any = json.loads(letter["payload"])
    except ValueError:
        payload = letter["payload"]
    collection = collection_of(letter["loop"])
    document = ctx.hot.get(collection, letter["doc_id"]) if collection else None
    errors: list[dict[str, Any]] = []
    validates: bool | None = None
    if collection in READABLE and document is not None:
        errors = validate_document(collection, letter["doc_id"], document)
        validates = not errors
    held = marks.read_marks(ctx.hot, collection, [letter["doc_id"]]).get(letter["doc_id"]) if collection else None
    mark_fields = ("archived_run_id", "archived_at", "dead_lettered_run_id", "loading_run_id")
    return LetterView(letter_record(letter, ctx.now()), payload, field_errors(letter), collection, document,
                      validates, errors, {k: getattr(held, k) if held else None for k in mark_fields})


def discard(ctx: Context, dead_letter_id: str, reason: str) -> dict[str, Any]:
    """Close a letter as won't-fix, recorded as ``operator()`` (see ``pipeline.dead_letters.discard_dead_letter``)."""
    try:
        letter = discard_dead_letter(ctx, dead_letter_id, reason, operator())
    except KeyError:
        raise NotFoundError(f"not found: no dead letter {dead_letter_id!r} (ids: dead-letters list)") from None
    except ValueError as exc:
        raise RefusedError(str(exc)) from None
    return letter_record(letter, ctx.now())


def _collection(name: str, allowed: dict[str, Any]) -> str:
    if name not in allowed:
        raise RefusedError(f"unknown collection {name!r}; choose one of: {', '.join(sorted(allowed))}")
    return name


def hot_get(ctx: Context, collection: str, doc_id: str) -> dict[str, Any]:
    """The JSON shape of ``hot get``: the document as stored, and whether it validates now."""
    document = ctx.hot.get(_collection(collection, READABLE), doc_id)
    if document is None:
        raise NotFoundError(f"not found: no document {doc_id!r} in {collection}")
    errors = validate_document(collection, doc_id, document)
    return {"collection": collection, "id": doc_id, "document": document, "validates": not errors,
            "validation_errors": errors}


class InvalidDocument(GoldthreadError):
    """``hot put`` refused a document: ``errors`` are SchemaGuardian's field errors ({loc, msg, type})."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def hot_put(ctx: Context, collection: str, doc_id: str, text: str) -> dict[str, Any]:
    """Validate a document (JSON text) with its collection's model and write it through the writer API.

    Raises ``InvalidDocument`` with the field errors (nothing written) when it does not validate or carries
    another id; returns what ``hot get`` would print afterwards.
    """
    _collection(collection, MODELS)
    try:
        json.loads(text)
    except ValueError as exc:
        errors = [{"loc": "", "msg": f"not valid JSON: {exc}", "type": "json_invalid"}]
        raise InvalidDocument(f"{collection}/{doc_id} is not valid JSON", errors) from None
    try:
        HotWriter(ctx.hot).save_document(collection, doc_id, text)
    except RecordValidationError as exc:
        raise InvalidDocument(str(exc), list(exc.errors)) from None
    except ValueError as exc:
        raise InvalidDocument(str(exc), [{"loc": "", "msg": str(exc), "type": "id_mismatch"}]) from None
    return hot_get(ctx, collection, doc_id)

