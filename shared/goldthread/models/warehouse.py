"""SchemaGuardian models of the warehouse tables: the one source of truth for every column.

BigQuery schema files, DuckDB DDL and ``docs/schema.md`` are generated from these classes by
``goldthread schema generate``; nothing here is ever written twice. Each class declares its table name,
key, partition column and clustering as class attributes, the way an engine adapter declares its
differences.

Every row carries ``row_id``: a deterministic key derived from the source record, so the same record
arriving twice is stored once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from goldthread.models.hot import AssetClass, Side
from goldthread.models.timeframes import timeframe_ns
from goldthread.models.types import Identifier, JsonText, Money, Quantity, Symbol, Text, UtcDatetime, Version


def _timeframe(value: str) -> str:
    timeframe_ns(value)  # raises ValueError naming the value
    return value


Timeframe = Annotated[str, Field(min_length=1, max_length=16), AfterValidator(_timeframe)]
"""A bar length in Alpaca's notation: ``{n}Min`` (n < 60), ``{n}Hour`` (n < 24), ``1Day`` or ``1Week``."""


FIRST_RELEASE = "0.1.0"
"""The release whose warehouse schema every later one must be able to open (``tests/fixtures``)."""


def added_in(version: str) -> JsonDict:
    """Mark a column added after the first release (``Field(json_schema_extra=added_in("0.2.0"))``).

    Such a column must be nullable: BigQuery adds only NULLABLE columns to an existing table, and the rows
    already there have no value for it. The schema generator puts added columns after the original ones,
    oldest release first, which is where ``ALTER TABLE ... ADD COLUMN`` puts them in a warehouse the earlier
    release built, so a new and an upgraded warehouse have the same column order.
    """
    return {"added_in": version}


def row_id_for(*parts: str) -> str:
    """Deterministic row key: the same source record always yields the same id."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class WarehouseRow(BaseModel):
    """Base of every warehouse row: the key, its partition day, and table metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    __table__: ClassVar[str]
    __description__: ClassVar[str]
    __key__: ClassVar[str] = "row_id"
    __partition__: ClassVar[str | None] = "ds"
    __cluster__: ClassVar[tuple[str, ...]] = ()
    __latest_first__: ClassVar[str] = "row_id"
    """``ORDER BY`` that puts the newest copy of a key first (readers keep one row per key)."""

    row_id: str = Field(min_length=1, max_length=64, description="Deterministic key of the source record.")


class FactRow(WarehouseRow):
    """A row produced by a run: it records which run loaded it, when, and which revision of its record it is.

    A record rewritten after it was archived reaches the warehouse as a new *revision* of the same row
    (same ``row_id``, ``revision`` + 1): the row is replaced in place and the values it replaced are kept
    in ``row_revisions``. Whether a rebuilt row is a new revision or a mere redelivery is decided by
    ``content_digest``, which leaves out the fields that say when and by whom a row was written
    (``__volatile__``) and those a patch owns after loading (``__patched__``).
    """

    __latest_first__: ClassVar[str] = "revision DESC, loaded_at DESC"
    __volatile__: ClassVar[tuple[str, ...]] = ("row_id", "run_id", "loaded_at", "revision")
    __patched__: ClassVar[tuple[str, ...]] = ()

    ds: dt.date = Field(description="Partition day (UTC).")
    run_id: Identifier = Field(description="Run that loaded the row (job_metadata).")
    loaded_at: UtcDatetime = Field(description="When the row was written (UTC).")
    is_canary: bool = Field(default=False, description="Golden Thread canary row; excluded from marts.")
    revision: int | None = Field(
        default=1, ge=1, json_schema_extra=added_in("0.2.0"),
        description="Revision of the source record: 1 when first archived, +1 per correction "
        "(null on rows written before revisions existed, read as 1; nullable so the column is added in place)."
    )

    def content_digest(self) -> str:
        """A digest of what the row says about its record, leaving out who wrote it and when.

        Two builds of the same record from the same facts have the same digest, whatever run built them;
        a record corrected after archiving gives another digest, which makes its row a new revision.
        """
        return self.digest_of(self.__dict__)

    @classmethod
    def digest_of(cls, row: Mapping[str, Any]) -> str:
        """``content_digest`` of a row as a mapping: a built row's fields, or a row read back from the
        warehouse (decimals at 9 places, enums as text), which give the same digest for the same content."""
        skip = {*cls.__volatile__, *cls.__patched__}
        content = {k: canonical_value(v) for k, v in row.items() if k not in skip and k in cls.model_fields}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def may_replace(self, stored: Mapping[str, Any]) -> bool:
        """Whether this row may become a new revision of ``stored``; a table whose rows come from sources
        of different rank overrides it (``SnapshotAccount``)."""
        return True


def canonical_value(value: object) -> object:
    """A value as the same text however it was stored: ``185.12`` and ``185.120000000`` are one price."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class FactTrade(FactRow):
    """A closed position with the broker's fills, the strategy version and P&L (Loop A)."""

    __table__ = "fact_trades"
    __description__ = "Closed trades with broker-validated fills, strategy version (SCD) and P&L. Loop A."
    __cluster__ = ("strategy_id", "symbol")
    __patched__ = ("actual_fee_usd", "fee_finalized", "net_pnl_usd", "return_pct")

    position_id: Identifier
    signal_id: Identifier
    strategy_id: Identifier
    strategy_version: Version
    strategy_sk: str | None = Field(default=None, description="dim_strategy surrogate key in force.")
    symbol: Symbol
    asset_class: AssetClass
    side: Side
    qty: Quantity = Field(gt=0)
    multiplier: Quantity = Field(default=Decimal(1), gt=0)
    entry_order_id: Identifier
    exit_order_id: Identifier
    entry_price: Money | None = Field(default=None, description="Entry fill price the bot recorded.")
    exit_price: Money | None = Field(default=None, description="Exit fill price the bot recorded.")
    broker_entry_price: Money | None = Field(default=None, description="Broker's filled_avg_price (entry).")
    broker_exit_price: Money | None = Field(default=None, description="Broker's filled_avg_price (exit).")
    broker_entry_qty: Quantity | None = None
    broker_exit_qty: Quantity | None = None
    entry_discrepancy_bps: Money | None = Field(default=None, description="(bot - broker) / broker, bps.")
    exit_discrepancy_bps: Money | None = None
    opened_at: UtcDatetime
    closed_at: UtcDatetime
    holding_seconds: int = Field(ge=0)
    gross_pnl_usd: Money | None = Field(default=None, description="P&L before fees at the real fills.")
    est_fee_usd: Money = Field(ge=0)
    actual_fee_usd: Money | None = Field(default=None, description="Fee posted by the broker (fee patch).")
    fee_finalized: bool = False
    net_pnl_usd: Money | None = Field(default=None, description="gross - actual fee, or estimated fee.")
    return_pct: Money | None = Field(default=None, description="net P&L / entry notional x 100.")
    price_discrepancy_flagged: bool | None = Field(
        default=None, json_schema_extra=added_in("0.2.0"),
        description="A leg's |discrepancy| beyond GOLDTHREAD_PRICE_TOLERANCE_BPS; null if no leg comparable.",
    )

    @model_validator(mode="after")
    def _check_times(self) -> Self:
        if self.closed_at < self.opened_at:
            raise ValueError("closed_at must not be before opened_at")
        if self.fee_finalized and self.actual_fee_usd is None:
            raise ValueError("a finalized fee needs actual_fee_usd")
        return self


class ExitReason(StrEnum):
    """How a theoretical trade ended under the triple-barrier rule."""

    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"
    TIMEOUT = "TIMEOUT"
    NO_DATA = "NO_DATA"


class SignalFields(FactRow):
    """The signal as it was emitted, repeated on each counterfactual row."""

    signal_id: Identifier
    strategy_id: Identifier
    strategy_version: Version
    symbol: Symbol
    asset_class: AssetClass
    side: Side
    signal_price: Money
    take_profit: Money
    stop_loss: Money
    created_at: UtcDatetime
    expires_at: UtcDatetime


class FactRejectedSignal(SignalFields):
    """A rejected signal with the theoretical P&L it would have made (Loop B)."""

    __table__ = "fact_rejected_signals"
    __description__ = "Rejected signals aged past the validity window, with triple-barrier P&L. Loop B."
    __cluster__ = ("rejection_reason", "symbol")

    rejection_reason: Identifier
    rejected_at: UtcDatetime
    window_end: UtcDatetime = Field(description="End of the validity window used for the time-out.")
    entry_price: Money | None = None
    entry_time: UtcDatetime | None = None
    exit_price: Money | None = None
    exit_time: UtcDatetime | None = None
    exit_reason: ExitReason
    theoretical_pnl_per_unit: Money | None = Field(default=None, description="Exit - entry (mirrored short).")
    theoretical_pnl_pct: Money | None = None
    est_fee_per_unit: Money | None = Field(default=None, description="Fee model estimate, round trip.")
    theoretical_net_pnl_per_unit: Money | None = None
    r_multiple: Money | None = Field(default=None, description="P&L per unit / initial risk.")
    mfe_price: Money | None = None
    mfe_pct: Money | None = None
    mfe_r: Money | None = None
    mae_price: Money | None = None
    mae_pct: Money | None = None
    mae_r: Money | None = None
    bars_observed: int = Field(ge=0)
    bars_timeframe: Timeframe | None = Field(
        default=None, json_schema_extra=added_in("0.2.0"),
        description="Length of the bars behind the figures (1Min, 1Hour, 1Day ...); null for NO_DATA."
    )


class FactSignalExpired(SignalFields):
    """A signal that expired unexecuted, with the best excursion it offered (Loop C)."""

    __table__ = "fact_signals_expired"
    __description__ = "Signals that expired without execution, with max MFE and a missed-moonshot flag. Loop C."
    __cluster__ = ("strategy_id", "symbol")

    lookahead_end: UtcDatetime
    max_mfe_price: Money | None = None
    max_mfe_pct: Money | None = None
    max_mfe_r: Money | None = None
    max_mfe_at: UtcDatetime | None = None
    mae_price: Money | None = None
    mae_pct: Money | None = None
    mae_r: Money | None = None
    mae_at: UtcDatetime | None = None
    take_profit_hit: bool | None = None
    take_profit_hit_at: UtcDatetime | None = None
    is_missed_moonshot: bool | None = None
    moonshot_threshold_pct: Money
    bars_observed: int = Field(ge=0)
    bars_timeframe: Timeframe | None = Field(
        default=None, json_schema_extra=added_in("0.2.0"),
        description="Length of the bars behind the figures (1Min, 1Hour, 1Day ...); null without bars."
    )


class SnapshotSource(StrEnum):
    """Where a ``snapshot_accounts`` row's figures came from."""

    LIVE_ACCOUNT = "live_account"
    """The broker's account and option positions at ``snapshot_at`` (a run on the day itself)."""
    PORTFOLIO_HISTORY = "portfolio_history"
    """The broker's daily portfolio history (a past day): equity only."""


HISTORY_UNKNOWN = ("cash", "buying_power", "initial_margin", "maintenance_margin", "long_market_value",
                   "short_market_value", "option_positions", "delta", "gamma", "theta", "vega")
"""The figures only the live account has: null on a row from the portfolio history."""


class SnapshotAccount(FactRow):
    """The account as of ``snapshot_at``, on the day ``ds`` (Loop D).

    A run on the day itself reads the live account, option positions and Greeks at that moment
    (``source`` live_account); a past day is read from the broker's daily portfolio history, which keeps
    only the equity, so the margins, market values, option count and Greeks of such a row are null
    (``source`` portfolio_history). ``snapshot_at`` always falls on ``ds`` (UTC).
    """

    __table__ = "snapshot_accounts"
    __description__ = ("Daily account snapshot as of snapshot_at: equity, margin and portfolio Greeks (live "
                       "account), or equity only (portfolio history of a past day). Loop D.")
    __cluster__ = ("account_id",)
    __volatile__ = (*FactRow.__volatile__, "snapshot_at")

    account_id: Identifier
    source: SnapshotSource | None = Field(
        json_schema_extra=added_in("0.2.0"),
        description="Where the figures came from: live_account (the account, positions and Greeks at "
        "snapshot_at) or portfolio_history (a past day's closing equity from the broker's 1D history; the "
        "margins, market values, option count and Greeks are then null). Null only on rows loaded before "
        "the column existed (so the table gains it in place); every new row has one."
    )
    snapshot_at: UtcDatetime = Field(
        description="The moment the figures describe, on ds: when the live account was read, or the portfolio "
        "history point's label (midnight New York of ds) for its closing equity."
    )
    equity: Money
    last_equity: Money = Field(description="Equity at the previous trading day's close.")
    cash: Money | None
    buying_power: Money | None
    initial_margin: Money | None
    maintenance_margin: Money | None
    long_market_value: Money | None
    short_market_value: Money | None
    daily_pnl: Money = Field(description="equity - last_equity.")
    daily_return_pct: Money | None = Field(default=None, description="daily_pnl / last_equity x 100.")
    option_positions: int | None = Field(ge=0)
    delta: Money | None = Field(description="Sum of qty x multiplier x contract delta.")
    gamma: Money | None
    theta: Money | None
    vega: Money | None

    def may_replace(self, stored: Mapping[str, Any]) -> bool:
        """A past day's portfolio-history row (equity only) never replaces the live account's row of that day
        (equity, margins, Greeks): a backfill over a day the scheduled run snapshotted keeps the live row."""
        return not (self.source is SnapshotSource.PORTFOLIO_HISTORY
                    and stored.get("source") == SnapshotSource.LIVE_ACCOUNT.value)

    @model_validator(mode="after")
    def _check_as_of(self) -> Self:
        if self.snapshot_at.date() != self.ds:
            raise ValueError(f"snapshot_at {self.snapshot_at.isoformat()} is not on ds {self.ds} (UTC)")
        if self.source is None:
            raise ValueError("source is required: live_account or portfolio_history")
        missing = [f for f in HISTORY_UNKNOWN if getattr(self, f) is None]
        if self.source is SnapshotSource.LIVE_ACCOUNT and missing:
            raise ValueError(f"a live_account snapshot needs {', '.join(missing)}")
        if self.source is SnapshotSource.PORTFOLIO_HISTORY and len(missing) != len(HISTORY_UNKNOWN):
            known = [f for f in HISTORY_UNKNOWN if getattr(self, f) is not None]
            raise ValueError(f"a portfolio_history snapshot cannot know {', '.join(known)}")
        return self


class DimStrategy(WarehouseRow):
    """One version of a strategy with its validity interval (SCD type 2)."""

    __table__ = "dim_strategy"
    __description__ = "Strategy versions, SCD type 2: valid_from <= t < valid_to; is_current on the newest."
    __partition__ = None
    __cluster__ = ("strategy_id",)

    strategy_sk: str = Field(description="Surrogate key: strategy_id and version.")
    strategy_id: Identifier
    version: Version
    params_json: JsonText
    deployed_at: UtcDatetime
    valid_from: UtcDatetime
    valid_to: UtcDatetime | None = Field(default=None, description="Null while current.")
    is_current: bool
    updated_at: UtcDatetime


class DeadLetter(WarehouseRow):
    """A queryable copy of a message that went to the dead-letter topic, with its reasons."""

    __table__ = "dead_letters"
    __description__ = "Every dead-lettered work item with field-level errors; replayable after a fix."
    __cluster__ = ("loop", "reason_code")

    ds: dt.date = Field(description="Day it was dead-lettered (UTC).")
    run_id: str = Field(max_length=128, description="Run of the message, if it could be read.")
    loop: str = Field(max_length=64)
    doc_id: str = Field(max_length=128)
    item_ds: dt.date | None = Field(default=None, description="ds of the work item, if it could be read.")
    topic: str = Field(max_length=256)
    reason_code: Identifier
    error_message: Text
    errors_json: JsonText = Field(description="List of {loc, msg, type}.")
    payload: JsonText = Field(description="The original message body (text).")
    attributes_json: JsonText
    delivery_attempts: int = Field(ge=0)
    dead_lettered_at: UtcDatetime
    is_canary: bool = False
    discarded_at: UtcDatetime | None = Field(
        default=None, json_schema_extra=added_in("0.2.0"),
        description="When a person closed the letter as won't-fix (`goldthread dead-letters discard`); a "
        "discarded letter is no longer open and is never replayed. Null while open.",
    )
    discarded_by: str | None = Field(
        default=None, max_length=256, json_schema_extra=added_in("0.2.0"),
        description="Who discarded it (the operating-system user, or GOLDTHREAD_OPERATOR).",
    )
    discard_reason: Text | None = Field(
        default=None, json_schema_extra=added_in("0.2.0"), description="Why it was discarded, as given.",
    )


class PatchAudit(WarehouseRow):
    """One value a patch changed: what, where, from and to, and which patch run did it."""

    __table__ = "patch_audit"
    __description__ = "Audit trail of every value changed by the fee and price patches."
    __cluster__ = ("patch", "table_name")

    ds: dt.date = Field(description="Day of the patch run (UTC).")
    patch_run_id: Identifier
    patch: Identifier
    table_name: Identifier = Field(description="Warehouse table or hot collection changed.")
    record_key: Identifier
    column_name: Identifier
    old_value: Text | None
    new_value: Text | None
    changed_at: UtcDatetime


class RowRevision(WarehouseRow):
    """The values a new revision of a fact row replaced: the row as it stood, kept for audit.

    Written before the fact row is replaced, keyed by (table, row, revision), so a crash in between
    repeats cleanly and the old values are never lost.
    """

    __table__ = "row_revisions"
    __description__ = "Every fact row replaced by a newer revision of its record, with the values it held."
    __cluster__ = ("table_name", "record_row_id")

    ds: dt.date = Field(description="Day the row was superseded (UTC).")
    table_name: Identifier
    record_row_id: str = Field(min_length=1, max_length=64, description="row_id of the fact row.")
    revision: int = Field(ge=1, description="The superseded revision.")
    superseded_by_revision: int = Field(ge=2)
    superseded_by_run_id: Identifier
    superseded_at: UtcDatetime
    changed_columns: JsonText = Field(description="Columns whose value the new revision changed (JSON list).")
    row_json: JsonText = Field(description="The superseded row, every column, as JSON.")


class ReplayRecord(WarehouseRow):
    """A dead letter that was republished, by which replay run and when."""

    __table__ = "dead_letter_replays"
    __description__ = "Replays of dead letters: which dead letter went back to which topic, under which run."
    __cluster__ = ("dead_letter_id",)

    ds: dt.date
    dead_letter_id: str = Field(max_length=64)
    replay_run_id: Identifier
    original_run_id: str = Field(max_length=128)
    loop: str = Field(max_length=64)
    doc_id: str = Field(max_length=128)
    replayed_at: UtcDatetime


class MarketBar(WarehouseRow):
    """One real OHLCV bar, cached once per symbol, day and timeframe for the counterfactual loops.

    Only bars a market could print are accepted: every price above zero, a volume not negative, the high at
    or above the open, close and low, the low at or below the open and close, and ``ds`` the UTC day of the
    bar's open. Days without bars are recorded in ``market_bars_coverage``, never as rows here."""

    __table__ = "market_bars"
    __description__ = "Real OHLCV bars fetched once per symbol, day and timeframe (cache for Loops B and C)."
    __cluster__ = ("symbol", "timeframe")

    ds: dt.date = Field(description="UTC day of the bar's open time.")
    symbol: Symbol
    timeframe: Timeframe = Field(description="The bar's real length: 1Min, 5Min, 1Hour, 1Day ...")
    ts: UtcDatetime = Field(description="Bar open time (UTC); the bar covers [ts, ts + timeframe).")
    open: Money = Field(gt=0)
    high: Money = Field(gt=0)
    low: Money = Field(gt=0)
    close: Money = Field(gt=0)
    volume: Quantity = Field(ge=0)
    source: Identifier = Field(description="Where the bar came from: synthetic, alpaca, file ...")

    @model_validator(mode="after")
    def _check_bar(self) -> Self:
        if self.high < max(self.open, self.close, self.low) or self.low > min(self.open, self.close):
            raise ValueError("a bar needs low <= open, close <= high")
        if self.ts.date() != self.ds:
            raise ValueError("ds must be the UTC day of ts")
        return self


class MarketBarsCoverage(WarehouseRow):
    """One (symbol, day, timeframe, source) fetched for the counterfactual loops, with or without bars.

    The prefetch decides what to fetch from these rows, not from the bars: a day the source has no bars
    for (a weekend for equities) is fetched once, recorded with ``bar_count`` 0, and never asked for again,
    without any placeholder in ``market_bars``. Only finished days are recorded (a day still running may
    get more bars)."""

    __table__ = "market_bars_coverage"
    __description__ = "Which symbol, day, timeframe and source the bars cache has fetched, with its bar count."
    __cluster__ = ("symbol", "timeframe")

    ds: dt.date = Field(description="The UTC day fetched.")
    symbol: Symbol
    timeframe: Timeframe = Field(description="The timeframe asked for.")
    source: Identifier = Field(description="The market-data source asked (MarketData.name).")
    bars_timeframe: Timeframe = Field(description="The timeframe the source served (coarser when it has no finer).")
    bar_count: int = Field(ge=0, description="Bars stored in market_bars for the day; 0 for a day without bars.")
    refused_count: int = Field(default=0, ge=0, description="Bars the source sent that are not real bars, not stored.")
    fetched_at: UtcDatetime


class JobRun(WarehouseRow):
    """One run of a loop, patch, replay or canary, copied from ``job_metadata`` (hot store) to the warehouse.

    BI reads only the warehouse, so ``goldthread.bi.runs_sync.sync_job_runs`` upserts every run here (at the
    end of a canary, a dashboard build and the demo); ``mart_pipeline_health`` and ``mart_golden_thread``
    read it. The key is derived from the run id, so a run synced again is updated, never doubled.
    """

    __table__ = "job_runs"
    __description__ = "Every run from job_metadata (hot store), synced for BI: status, counts, reconciliation."
    __cluster__ = ("job", "status")

    ds: dt.date = Field(description="Day the run processed (job_metadata ds).")
    run_id: Identifier
    job: Identifier = Field(description="Loop, patch, replay or canary.")
    status: Identifier = Field(description="RUNNING, SUCCEEDED, PARTIAL, FAILED or STALLED.")
    git_hash: str = Field(max_length=64)
    started_at: UtcDatetime
    heartbeat_at: UtcDatetime
    dispatched_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration_seconds: Money | None = Field(default=None, description="finished_at - started_at, once finished.")
    published: int = Field(ge=0)
    loaded: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    dead_lettered: int = Field(ge=0)
    reconciled: bool = Field(description="Dispatched and published = loaded + duplicates + dead_lettered.")
    error: Text | None = None
    details_json: JsonText = Field(description="The run's loop-specific details (the canary's hops).")
    synced_at: UtcDatetime = Field(description="When this copy was written.")


ALL_TABLES: tuple[type[WarehouseRow], ...] = (
    FactTrade,
    FactRejectedSignal,
    FactSignalExpired,
    SnapshotAccount,
    DimStrategy,
    DeadLetter,
    ReplayRecord,
    PatchAudit,
    RowRevision,
    MarketBar,
    MarketBarsCoverage,
    JobRun,
)
TABLES_BY_NAME: dict[str, type[WarehouseRow]] = {t.__table__: t for t in ALL_TABLES}

