"""The audit trail every patch leaves: one ``patch_audit`` row per changed value.

Audit keys are derived from what changed (table, record, column, old and new value), so writing the
audit before the change and repeating a crashed patch never duplicates a row, and a patch that changes
nothing writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from goldthread.models.warehouse import PatchAudit, row_id_for


def text_of(value: Any) -> str | None:
    """A value as audit text (decimals normalised, so 1.50 and 1.5 are the same value)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def changed_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Columns whose value differs, as ``{column: (old, new)}``."""
    return {k: (old.get(k), v) for k, v in new.items() if text_of(old.get(k)) != text_of(v)}


def audit_rows(
    patch: str, run_id: str, table: str, key: str, changes: Mapping[str, tuple[Any, Any]], now: dt.datetime
) -> list[PatchAudit]:
    """One audit row per changed column."""
    return [
        PatchAudit(
            row_id=row_id_for("patch_audit", patch, table, key, column, str(text_of(old)), str(text_of(new))),
            ds=now.date(), patch_run_id=run_id, patch=patch, table_name=table, record_key=key,
            column_name=column, old_value=text_of(old), new_value=text_of(new), changed_at=now,
        )
        for column, (old, new) in changes.items()
    ]


def flatten(groups: Iterable[list[PatchAudit]]) -> list[PatchAudit]:
    """Concatenate audit row lists."""
    return [row for group in groups for row in group]
