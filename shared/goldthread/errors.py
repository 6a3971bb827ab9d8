"""The one exception tree of goldthread.

Every failure the pipeline can meet falls on one side of a single line:

* ``TransientError``: the world may heal (a broker 429, a store that is briefly down). The work item is
  *not* acknowledged, so the bus redelivers it with backoff until its maximum delivery attempts, after
  which the bus dead-letters it.
* ``PermanentError``: retrying can never help (a document that fails validation, a record that
  contradicts the strategy history). The item goes straight to the dead-letter topic with its reasons.

Adapters translate vendor exceptions into these at the boundary (``raise ... from exc``), so no loop
ever catches a Google, Alpaca or DuckDB exception type.
"""

from __future__ import annotations

from typing import Any


class GoldthreadError(Exception):
    """Root of every error goldthread raises on purpose."""


class ConfigError(GoldthreadError):
    """The configuration (environment variables, names) is missing or invalid."""


class TransientError(GoldthreadError):
    """A failure worth retrying: the bus will redeliver the item with backoff."""


class PermanentError(GoldthreadError):
    """A failure retrying cannot fix: the item is dead-lettered with ``errors``.

    ``errors`` is a list of field-level problems, each ``{"loc": "...", "msg": "...", "type": "..."}``,
    so a person reading the dead letter sees which field of which record failed and why.
    """

    reason_code = "PERMANENT"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = errors or [{"loc": "", "msg": message, "type": "permanent"}]


class RecordValidationError(PermanentError):
    """A record failed SchemaGuardian: the message names the record and every failing field."""

    reason_code = "VALIDATION"

    def __init__(self, kind: str, record_id: str, errors: list[dict[str, Any]]) -> None:
        self.kind = kind
        self.record_id = record_id
        details = "; ".join(f"{e['loc'] or '<record>'}: {e['msg']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{kind} {record_id!r} is invalid: {details}{more}", errors)


class MalformedMessageError(RecordValidationError):
    """A bus message whose body or attributes are not a valid work item."""

    reason_code = "MALFORMED"


class ScdConflictError(PermanentError):
    """A record names a strategy version that the ``dim_strategy`` history contradicts."""

    reason_code = "SCD_CONFLICT"


class RecordNotFoundError(PermanentError):
    """A work item names a hot document that does not exist (or is no longer eligible)."""

    reason_code = "NOT_FOUND"


class ConcurrentRunError(GoldthreadError):
    """Another dispatch of the same loop and day holds the lease; this one stands down."""


class StoreUnavailableError(TransientError):
    """A hot store, bus or warehouse could not be reached."""


class BrokerUnavailableError(TransientError):
    """The broker or market-data API timed out, rate-limited (429) or failed (5xx)."""


class BrokerRequestError(PermanentError):
    """The broker refused a request for good (404 unknown order, 4xx other than 429)."""

    reason_code = "BROKER_REJECTED"


class BrokerMismatchError(PermanentError):
    """A position contradicts its broker orders (symbol, side, filled quantity, status or fill times).

    Each error names the position field (``loc``), the bot's value (``bot``) and the broker's (``broker``),
    with ``type`` ``broker_mismatch``; every mismatching field is listed, not only the first.
    """

    reason_code = "BROKER_MISMATCH"


class OrderClaimedError(PermanentError):
    """A position names a broker order that already backs another position: one order, one position.

    Each error names the field (``entry_order_id`` / ``exit_order_id``), the order (``order_id``) and the
    position holding it (``claimed_by``), with ``type`` ``order_claimed``.
    """

    reason_code = "ORDER_CLAIMED"


class WarehouseWriteError(TransientError):
    """The warehouse refused a write in a way that may succeed later."""


class NotReadyError(GoldthreadError):
    """The data a run needs does not exist yet (a window not passed, fees not posted)."""


class FutureDayError(NotReadyError):
    """The day asked for has not begun (UTC): no run may record it, and the command line refuses it."""


class HopFailedError(GoldthreadError):
    """The Golden Thread canary found a broken or slow hop; ``hop`` names it."""

    def __init__(self, hop: str, message: str) -> None:
        super().__init__(f"hop {hop!r} failed: {message}")
        self.hop = hop


class RefusedError(GoldthreadError):
    """A command refused its arguments before attempting anything (an impossible date range, say)."""


class NotFoundError(GoldthreadError):
    """An id or name given on the command line names nothing goldthread knows."""
