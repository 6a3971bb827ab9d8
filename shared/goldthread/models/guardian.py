"""SchemaGuardian: validate every record in flight, and say exactly what is wrong when it fails.

ETL, not ELT: a hot document or work item is validated against its Pydantic model before anything is
computed from it, and every warehouse row is validated again before it is written, so "garbage in"
never reaches the warehouse. A failure becomes a ``RecordValidationError`` naming the record, each
failing field and the reason: the text a person reads in the dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from goldthread.errors import RecordValidationError
from goldthread.models.work_items import errors_of

M = TypeVar("M", bound=BaseModel)


class SchemaGuardian:
    """Validates records against their models; one instance serves a whole run."""

    @staticmethod
    def validate(model: type[M], data: Mapping[str, Any] | Any, record_id: str) -> M:
        """Return ``data`` as a validated ``model`` or raise ``RecordValidationError`` naming its fields.

        ``data`` is a mapping or a document's JSON text (parsed and validated in one pass by pydantic-core;
        the same rules apply to both, ``test_guardian_reads_json_text_as_it_reads_mappings`` holds them alike).
        """
        if isinstance(data, (str, bytes)):
            try:
                return model.model_validate_json(data)
            except ValidationError as exc:
                errors = errors_of(exc)
                if not any(e["type"] == "json_invalid" for e in errors):
                    if any(e["type"] == "model_type" and not e["loc"] for e in errors):
                        errors = [{"loc": "", "msg": "record is not an object", "type": "dict_type"}]
                    raise RecordValidationError(model.__name__, record_id, errors) from exc
            try:  # text pydantic-core will not parse (a lone surrogate escape): read it as the stores do
                data = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise RecordValidationError(
                    model.__name__, record_id, [{"loc": "", "msg": "record is not valid JSON", "type": "json_invalid"}]
                ) from exc
        if not isinstance(data, Mapping):
            raise RecordValidationError(
                model.__name__, record_id, [{"loc": "", "msg": "record is not an object", "type": "dict_type"}]
            )
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RecordValidationError(model.__name__, record_id, errors_of(exc)) from exc

    @staticmethod
    def check_row(row: M) -> M:
        """Re-validate a computed warehouse row (computations must obey the same contract)."""
        try:
            return type(row).model_validate(row.model_dump())
        except ValidationError as exc:  # pragma: no cover - a bug in a loop's computation
            key = str(getattr(row, "row_id", "?"))
            raise RecordValidationError(type(row).__name__, key, errors_of(exc)) from exc
