"""The writer API a trading bot calls to put its live state into the hot store.

Every write is validated by SchemaGuardian first, so a bot using this API cannot create garbage. The
documents carry only the bot's own fields: goldthread's bookkeeping lives in its ledger
(``goldthread.ledger.marks``). Saving a corrected position clears its archive or dead-letter mark there, so
the next dispatch picks it up again.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import Enum
from typing import Any

from goldthread.ledger import marks
from goldthread.models import LivePosition, LiveSignal, RejectedSignal, SchemaGuardian, Strategy
from goldthread.models.hot import HotDocument, PositionStatus, SignalStatus
from goldthread.ports.hot_store import HotStore

SIGNALS, REJECTED, POSITIONS, STRATEGIES = (
    LiveSignal.collection, RejectedSignal.collection, LivePosition.collection, Strategy.collection
)
MODELS: dict[str, type[HotDocument]] = {model.collection: model for model in (LiveSignal, RejectedSignal, LivePosition,
                                                                              Strategy)}
"""The model of each collection the writer API writes (what ``save_document`` validates against)."""


def document_id(collection: str, model: HotDocument) -> str:
    """The id a validated document is stored under in ``collection`` (a strategy's is ``id:version``)."""
    if isinstance(model, Strategy):
        return f"{model.strategy_id}:{model.version}"
    return str(getattr(model, "position_id" if collection == POSITIONS else "signal_id"))


def document_of(model: HotDocument) -> dict[str, Any]:
    """The stored form of a validated hot model (the legacy mark fields are never written).

    Python values (Decimal, aware datetime) are handed to the adapter, which stores them in its own
    exact form (text in SQLite, timestamps and decimal strings in Firestore).
    """
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in model.model_dump().items()}


class HotWriter:
    """Validated writes of signals, rejections, positions and strategy versions."""

    def __init__(self, hot: HotStore) -> None:
        self.hot = hot

    def _write(self, collection: str, doc_id: str, model: HotDocument) -> None:
        self.hot.put(collection, doc_id, document_of(model))

    def register_strategy(self, strategy: Strategy) -> str:
        """Record a deployed strategy version (id ``{strategy_id}:{version}``)."""
        SchemaGuardian.check_row(strategy)
        doc_id = f"{strategy.strategy_id}:{strategy.version}"
        self._write(STRATEGIES, doc_id, strategy)
        return doc_id

    def record_signal(self, signal: LiveSignal) -> str:
        """Record a new signal in ``live_signals``."""
        SchemaGuardian.check_row(signal)
        self._write(SIGNALS, signal.signal_id, signal)
        return signal.signal_id

    def reject_signal(self, signal_id: str, reason: str, at: dt.datetime) -> RejectedSignal:
        """Mark a signal REJECTED and copy it, with the reason, to ``rejected_signals``."""
        signal = self._signal(signal_id)
        data = {**signal.model_dump(), "status": SignalStatus.REJECTED, "rejection_reason": reason, "rejected_at": at}
        rejected = SchemaGuardian.validate(RejectedSignal, data, signal_id)
        self._write(REJECTED, signal_id, rejected)
        self.hot.update(SIGNALS, signal_id, {"status": SignalStatus.REJECTED.value})
        return rejected

    def expire_signal(self, signal_id: str) -> None:
        """Mark a signal EXPIRED (it was never executed)."""
        self._signal(signal_id)
        self.hot.update(SIGNALS, signal_id, {"status": SignalStatus.EXPIRED.value})

    def open_position(self, position: LivePosition) -> str:
        """Record an opened position and mark its signal EXECUTED."""
        SchemaGuardian.check_row(position)
        self._write(POSITIONS, position.position_id, position)
        if self.hot.get(SIGNALS, position.signal_id) is not None:
            self.hot.update(SIGNALS, position.signal_id, {"status": SignalStatus.EXECUTED.value})
        return position.position_id

    def save_position(self, position: LivePosition) -> str:
        """Write a whole position (e.g. a corrected one); its archive or dead-letter mark in the ledger is
        cleared, so the next run archives it again (a revision) or re-checks it.

        The ledger's ``loading_run_id`` mark is kept: it records that a row may have been written already,
        which the subscriber must then check before writing another.
        """
        SchemaGuardian.check_row(position)
        self._write(POSITIONS, position.position_id, position)
        marks.clear_settled(self.hot, POSITIONS, [position.position_id])
        return position.position_id

    def save_document(self, collection: str, doc_id: str, data: Any) -> HotDocument:
        """Validate a whole document (a mapping or JSON text) against ``collection``'s model and write it, as a
        person fixing a dead-lettered record does (``goldthread hot put``).

        Like ``save_position``: the record's archive and dead-letter marks in the ledger are cleared (the next
        dispatch picks the record up again) and its ``loading_run_id`` mark is kept. Raises
        ``RecordValidationError`` with every field's
        error, ``KeyError`` for a collection the writer does not write, and ``ValueError`` when ``doc_id`` is not
        the id the document itself carries.
        """
        if collection not in MODELS:
            raise KeyError(collection)
        model = SchemaGuardian.validate(MODELS[collection], data, doc_id)
        if document_id(collection, model) != doc_id:
            raise ValueError(f"the document's own id is {document_id(collection, model)!r}, not {doc_id!r}")
        self._write(collection, doc_id, model)
        marks.clear_settled(self.hot, collection, [doc_id])
        return model

    def close_position(
        self, position_id: str, exit_order_id: str, exit_price: Decimal | None, closed_at: dt.datetime
    ) -> LivePosition:
        """Close an open position with its exit order and fill (0 or None if not yet reported)."""
        current = self.hot.get(POSITIONS, position_id)
        if current is None:
            raise KeyError(f"position {position_id!r} does not exist")
        data = {
            **current,
            "status": PositionStatus.CLOSED,
            "exit_order_id": exit_order_id,
            "exit_filled_avg_price": exit_price,
            "closed_at": closed_at,
        }
        closed = SchemaGuardian.validate(LivePosition, data, position_id)
        self._write(POSITIONS, position_id, closed)
        return closed

    def _signal(self, signal_id: str) -> LiveSignal:
        data = self.hot.get(SIGNALS, signal_id)
        if data is None:
            raise KeyError(f"signal {signal_id!r} does not exist")
        return SchemaGuardian.validate(LiveSignal, data, signal_id)
