"""The strategy dimension: sync ``strategies`` (hot) into ``dim_strategy`` as SCD type 2, and resolve
which version was in force at a moment.

Versions of a strategy are ordered by ``deployed_at``; each is valid from its deployment until the
next version's deployment (``valid_to``), and the newest is current. Syncing is idempotent: the
surrogate key is ``{strategy_id}:{version}`` and rows are upserted in one statement.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass

from goldthread.errors import RecordValidationError, ScdConflictError
from goldthread.logs import get_logger
from goldthread.models import SchemaGuardian, Strategy
from goldthread.models.warehouse import DimStrategy, row_id_for
from goldthread.pipeline.context import Context

log = get_logger("strategies")
_CACHE_KEY = "dim_strategy"
_CACHE_SECONDS = 300


@dataclass(frozen=True)
class Version:
    """One interval of the SCD history."""

    strategy_sk: str
    version: str
    valid_from: dt.datetime
    valid_to: dt.datetime | None


def sync_dim_strategy(ctx: Context) -> dict[str, int]:
    """Rebuild the SCD2 intervals from the hot ``strategies`` collection and upsert them."""
    by_strategy: dict[str, list[Strategy]] = defaultdict(list)
    invalid = 0
    for doc_id, data in ctx.hot.query(Strategy.collection):
        try:
            by_strategy[data.get("strategy_id", "?")].append(SchemaGuardian.validate(Strategy, data, doc_id))
        except RecordValidationError as exc:
            invalid += 1
            log.error("strategy document skipped: %s", exc)
    now = ctx.now()
    rows = []
    for strategy_id, versions in by_strategy.items():
        versions.sort(key=lambda s: (s.deployed_at, s.version))
        for i, s in enumerate(versions):
            nxt = versions[i + 1].deployed_at if i + 1 < len(versions) else None
            rows.append(DimStrategy(
                row_id=row_id_for("dim_strategy", strategy_id, s.version),
                strategy_sk=f"{strategy_id}:{s.version}", strategy_id=strategy_id, version=s.version,
                params_json=json.dumps(s.params, sort_keys=True, default=str), deployed_at=s.deployed_at,
                valid_from=s.deployed_at, valid_to=nxt, is_current=nxt is None, updated_at=now,
            ))
    ctx.warehouse.upsert_rows(DimStrategy, rows, ["valid_to", "is_current", "params_json", "updated_at"])
    ctx.cache.pop(_CACHE_KEY, None)
    return {"strategy_versions": len(rows), "invalid_strategy_docs": invalid}


def history(ctx: Context) -> dict[str, list[Version]]:
    """The SCD intervals per strategy, cached per process for a few minutes."""
    cached = ctx.cache.get(_CACHE_KEY)
    if cached and (ctx.now() - cached[0]).total_seconds() < _CACHE_SECONDS:
        return cached[1]  # type: ignore[no-any-return]
    out: dict[str, list[Version]] = defaultdict(list)
    for r in ctx.warehouse.query(
        "SELECT strategy_id, strategy_sk, version, valid_from, valid_to FROM dim_strategy ORDER BY valid_from"
    ):
        out[r["strategy_id"]].append(Version(r["strategy_sk"], r["version"], r["valid_from"], r["valid_to"]))
    ctx.cache[_CACHE_KEY] = (ctx.now(), dict(out))
    return dict(out)


def resolve_version(ctx: Context, strategy_id: str, version: str, at: dt.datetime) -> Version:
    """The version in force at ``at``; raise ``ScdConflictError`` if it is not ``version``."""
    intervals = history(ctx).get(strategy_id, [])
    for v in intervals:
        if v.valid_from <= at and (v.valid_to is None or at < v.valid_to):
            if v.version != version:
                raise ScdConflictError(
                    f"strategy {strategy_id} was at version {v.version} at {at.isoformat()}, "
                    f"not {version} as the record says",
                    [{"loc": "strategy_version", "msg": f"version {v.version} was in force, record says {version}",
                      "type": "scd_conflict"}],
                )
            return v
    raise ScdConflictError(
        f"no version of strategy {strategy_id} was deployed at {at.isoformat()}",
        [{"loc": "strategy_id", "msg": f"no dim_strategy interval of {strategy_id} covers {at.isoformat()}",
          "type": "scd_missing"}],
    )
