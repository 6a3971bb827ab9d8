"""SchemaGuardian models of the hot store (Firestore collections written by the trading bot).

Each model is the contract of one collection. ``extra="forbid"`` makes a misspelt or unexpected field an
error instead of data that silently never reaches the warehouse. The ``archived_*`` fields are written
only by goldthread when a record has been archived to the warehouse.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from goldthread.models.types import Identifier, Money, Quantity, StrictFlag, Symbol, Text, UtcDatetime, Version


class AssetClass(StrEnum):
    """What kind of instrument a signal or position trades."""

    CRYPTO = "crypto"
    EQUITY = "equity"
    OPTION = "option"


class Side(StrEnum):
    """Direction of a trade: long profits when price rises, short when it falls."""

    LONG = "long"
    SHORT = "short"


class SignalStatus(StrEnum):
    """Life cycle of a signal in ``live_signals``."""

    ACTIVE = "ACTIVE"
    EXECUTED = "EXECUTED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


class PositionStatus(StrEnum):
    """Life cycle of a position in ``live_positions``."""

    OPEN = "OPEN"
    CLOSED = "CLOSED"


LEGACY_MARKS = ("archived_run_id", "archived_at", "dead_lettered_run_id", "loading_run_id")
"""Fields goldthread 0.1 and 0.2 wrote onto the bot's documents. goldthread now keeps its marks in its own
collection (``RecordMark``, ``goldthread.ledger.marks``); on a document they are accepted whatever they hold
and ignored, so a bot that copies, nulls or garbles them changes nothing."""


class HotDocument(BaseModel):
    """Base of every hot document the bot writes: strict fields, and no goldthread bookkeeping.

    ``collection`` names the hot collection of each model, declared once here and used everywhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
    collection: ClassVar[str] = ""

    archived_run_id: Any = Field(default=None, exclude=True, description="Legacy mark (goldthread <= 0.2), ignored.")
    archived_at: Any = Field(default=None, exclude=True, description="Legacy mark (goldthread <= 0.2), ignored.")
    dead_lettered_run_id: Any = Field(default=None, exclude=True,
                                      description="Legacy mark (goldthread <= 0.2), ignored.")
    loading_run_id: Any = Field(default=None, exclude=True, description="Legacy mark (goldthread <= 0.2), ignored.")
    is_canary: StrictFlag = Field(default=False, description="Written by the Golden Thread canary, not a bot.")


class LiveSignal(HotDocument):
    """A trading signal as the bot emitted it (collection ``live_signals``)."""

    collection: ClassVar[str] = "live_signals"

    signal_id: Identifier
    strategy_id: Identifier
    strategy_version: Version
    symbol: Symbol
    asset_class: AssetClass
    side: Side
    signal_price: Money = Field(gt=0, description="Price when the signal was generated.")
    take_profit: Money = Field(gt=0, description="Target price; above entry for long, below for short.")
    stop_loss: Money = Field(gt=0, description="Stop price; below entry for long, above for short.")
    created_at: UtcDatetime
    expires_at: UtcDatetime
    status: SignalStatus

    @model_validator(mode="after")
    def _check_barriers_and_times(self) -> Self:
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")
        if self.side is Side.LONG and not (self.stop_loss < self.signal_price < self.take_profit):
            raise ValueError("a long signal needs stop_loss < signal_price < take_profit")
        if self.side is Side.SHORT and not (self.take_profit < self.signal_price < self.stop_loss):
            raise ValueError("a short signal needs take_profit < signal_price < stop_loss")
        return self

    @property
    def initial_risk(self) -> Money:
        """Distance from entry to stop per unit: the R in R-multiples."""
        return abs(self.signal_price - self.stop_loss)


class RejectedSignal(LiveSignal):
    """A signal the risk filter refused (collection ``rejected_signals``)."""

    collection: ClassVar[str] = "rejected_signals"

    rejection_reason: Identifier = Field(description="Machine-readable reason code, e.g. MAX_EXPOSURE.")
    rejected_at: UtcDatetime

    @model_validator(mode="after")
    def _check_rejection(self) -> Self:
        if self.status is not SignalStatus.REJECTED:
            raise ValueError("a rejected signal must have status REJECTED")
        if self.rejected_at < self.created_at:
            raise ValueError("rejected_at must not be before created_at")
        return self


class LivePosition(HotDocument):
    """A position the bot opened (collection ``live_positions``); CLOSED ones are archived by Loop A.

    Fill prices may be missing or zero: Alpaca reports 0 until an order placed outside market hours is
    processed. The price patch repairs them; Loop A records the broker's own fill beside them.
    """

    collection: ClassVar[str] = "live_positions"

    position_id: Identifier
    signal_id: Identifier
    strategy_id: Identifier
    strategy_version: Version
    symbol: Symbol
    asset_class: AssetClass
    side: Side
    qty: Quantity = Field(gt=0, description="Units held: shares, coins or contracts.")
    entry_order_id: Identifier
    exit_order_id: Identifier | None = None
    entry_filled_avg_price: Money | None = Field(default=None, ge=0)
    exit_filled_avg_price: Money | None = Field(default=None, ge=0)
    opened_at: UtcDatetime
    closed_at: UtcDatetime | None = None
    status: PositionStatus
    est_fee_usd: Money = Field(ge=0, description="Fee the bot estimated when trading.")
    multiplier: Quantity = Field(default=Decimal(1), gt=0, description="Contract size (100 for US options).")

    @model_validator(mode="after")
    def _check_closed(self) -> Self:
        if self.status is PositionStatus.CLOSED:
            missing = [f for f in ("exit_order_id", "closed_at") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a CLOSED position needs {', '.join(missing)}")
            assert self.closed_at is not None
            if self.closed_at < self.opened_at:
                raise ValueError("closed_at must not be before opened_at")
        elif self.closed_at is not None:
            raise ValueError("an OPEN position must not have closed_at")
        return self


class Strategy(HotDocument):
    """One deployed version of a strategy (collection ``strategies``, id ``{strategy_id}:{version}``)."""

    collection: ClassVar[str] = "strategies"

    strategy_id: Identifier
    version: Version
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of this version.")
    deployed_at: UtcDatetime


class RunStatus(StrEnum):
    """Status of a run in ``job_metadata``."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    STALLED = "STALLED"


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.STALLED})


class JobMetadata(BaseModel):
    """One run of a loop, patch or replay (collection ``job_metadata``).

    The counters always reconcile once the run is finished:
    ``published = loaded + duplicates + dead_lettered``.
    """

    model_config = ConfigDict(extra="forbid")
    collection: ClassVar[str] = "job_metadata"

    run_id: Identifier
    loop: Identifier
    ds: dt.date
    git_hash: str = Field(max_length=64)
    status: RunStatus
    started_at: UtcDatetime
    heartbeat_at: UtcDatetime
    dispatched_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    published: int = Field(default=0, ge=0)
    loaded: int = Field(default=0, ge=0)
    duplicates: int = Field(default=0, ge=0)
    dead_lettered: int = Field(default=0, ge=0)
    error: Text | None = None
    details: dict[str, Any] = Field(default_factory=dict, description="Loop-specific figures.")

    @property
    def processed(self) -> int:
        """Items with a final outcome so far."""
        return self.loaded + self.duplicates + self.dead_lettered

    @property
    def reconciled(self) -> bool:
        """True when every published item has exactly one final outcome."""
        return self.dispatched_at is not None and self.processed == self.published


class OrderClaim(BaseModel):
    """goldthread's claim of one broker order by one position (collection ``order_claims``, id = the order id):
    the first position to claim an order holds it, so one order backs one trade (Loop A, the fee patch)."""

    model_config = ConfigDict(extra="ignore")
    collection: ClassVar[str] = "order_claims"

    position_id: str = Field(description="The position that holds the order.")
    leg: str = Field(description="entry or exit.")
    run_id: str = Field(description="Run whose item claimed it.")
    claimed_at: UtcDatetime
    token: str = Field(description="The claiming call's own token (tells its claims from a concurrent one's).")


class RecordMark(BaseModel):
    """goldthread's mark of one bot record (collection ``ledger_marks``, id ``{collection}:{doc_id}``).

    The marks live here, never on the bot's documents: the bot need not carry goldthread's fields and its
    rewrites never race goldthread's. Each mark field is set once by a conditional claim (``claim`` of the
    hot-store port), so a redelivered item cannot mark a record twice. ``digest`` is the content digest of
    the document as it was archived or dead-lettered: a document whose digest has changed since (a bot
    correcting it in place) is due again, as a revision.
    """

    model_config = ConfigDict(extra="ignore")
    collection: ClassVar[str] = "ledger_marks"

    record_collection: str = Field(description="Hot collection of the marked record.")
    doc_id: str = Field(description="Document id of the marked record.")
    loading_run_id: str | None = Field(
        default=None,
        description="Run that first began writing this record's row where the warehouse bills its key check "
        "(BigQuery); any later attempt checks the warehouse for the row first. Kept by rewrites.",
    )
    archived_run_id: str | None = Field(default=None, description="Run that archived this record.")
    archived_at: UtcDatetime | None = Field(default=None, description="When it was archived (UTC).")
    dead_lettered_run_id: str | None = Field(
        default=None, description="Run whose item for this record was dead-lettered; cleared when it changes."
    )
    digest: str | None = Field(default=None, description="Content digest of the document when last marked.")
    due_again: StrictFlag | None = Field(
        default=None, description="True once a correction cleared the settled marks, until a run settles it again."
    )

    @property
    def settled(self) -> bool:
        """Archived or dead-lettered: not due again unless the document changes."""
        return bool(self.archived_run_id or self.dead_lettered_run_id)
