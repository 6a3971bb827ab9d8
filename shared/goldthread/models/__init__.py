"""SchemaGuardian: the Pydantic models that are the single source of truth for every record."""

from goldthread.models.guardian import SchemaGuardian
from goldthread.models.hot import (
    AssetClass,
    JobMetadata,
    LivePosition,
    LiveSignal,
    PositionStatus,
    RejectedSignal,
    RunStatus,
    Side,
    SignalStatus,
    Strategy,
)
from goldthread.models.warehouse import (
    ALL_TABLES,
    TABLES_BY_NAME,
    DeadLetter,
    DimStrategy,
    FactRejectedSignal,
    FactSignalExpired,
    FactTrade,
    MarketBar,
    PatchAudit,
    SnapshotAccount,
    WarehouseRow,
    row_id_for,
)
from goldthread.models.work_items import Loop, WorkItem

__all__ = [
    "ALL_TABLES",
    "TABLES_BY_NAME",
    "AssetClass",
    "DeadLetter",
    "DimStrategy",
    "FactRejectedSignal",
    "FactSignalExpired",
    "FactTrade",
    "JobMetadata",
    "LivePosition",
    "LiveSignal",
    "Loop",
    "MarketBar",
    "PatchAudit",
    "PositionStatus",
    "RejectedSignal",
    "RunStatus",
    "SchemaGuardian",
    "Side",
    "SignalStatus",
    "SnapshotAccount",
    "Strategy",
    "WarehouseRow",
    "WorkItem",
    "row_id_for",
]
