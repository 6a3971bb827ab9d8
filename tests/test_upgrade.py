"""Upgrades keep the data: a warehouse the previous release (0.1.0) built opens with the current code.

The fixture is that release's own generated schema (``tests/fixtures/release-0.1.0``, from git history). On
DuckDB the warehouse migrates itself when opened: added columns appear (null on the old rows), relaxed NOT
NULLs drop, new tables are created, every row stays, and the loops run on. A column removed or retyped is
refused naming it. On BigQuery the same change must be an in-place update (Terraform updates the table's
schema): every old column kept with its type, new columns NULLABLE and after the old ones.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest
from goldthread.adapters.duckdb_warehouse import DuckDbWarehouse
from goldthread.errors import ConfigError
from goldthread.models.hot import RunStatus
from goldthread.models.warehouse import ALL_TABLES, FIRST_RELEASE
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop, wire_local_bus
from goldthread.schema.generate import bigquery_schema

from tests.conftest import DS, Clock, Factory

FIXTURE = Path(__file__).parent / "fixtures" / f"release-{FIRST_RELEASE}"
ROOT = Path(__file__).parent.parent


def old_warehouse(path: Path, rows: dict[str, list[dict]]) -> dict[str, int]:
    """A DuckDB file with the previous release's DDL holding ``rows`` (only the columns it had); row counts."""
    db = duckdb.connect(str(path))
    db.execute("SET TimeZone = 'UTC'")
    db.execute((FIXTURE / "duckdb.sql").read_text())
    counts = {}
    for table, table_rows in rows.items():
        old_columns = [r[0] for r in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [table]).fetchall()]
        for row in table_rows:
            values = [row[c] for c in old_columns]
            db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values))})", values)
        counts[table] = len(table_rows)
    db.close()
    return counts


def test_a_warehouse_the_previous_release_built_keeps_every_row_and_runs_go_on(
    ctx: Context, make: Factory, clock: Clock, tmp_path: Path
) -> None:
    # what 0.1.0 archived: two trades and a snapshot, built by the loops, stored in that release's columns
    make.closed_trade("pos-old-1", broker_entry=D("100"), broker_exit=D("104"))
    make.closed_trade("pos-old-2", broker_entry=D("50"), broker_exit=D("49"))
    assert run_loop(ctx, "trades", DS).loaded == 2
    written = {t: ctx.warehouse.query(f"SELECT * FROM {t}") for t in ("fact_trades", "dim_strategy")}
    for row in written["fact_trades"]:
        row["revision"] = None
    path = tmp_path / "old.duckdb"
    counts = old_warehouse(path, written)

    upgraded = DuckDbWarehouse(path)
    upgraded.ensure_tables()  # the migration, on open
    for table, n in counts.items():
        assert upgraded.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == n, table
    old = {r["position_id"]: r for r in upgraded.query("SELECT * FROM fact_trades")}
    assert {p: (r["gross_pnl_usd"], r["revision"], r["price_discrepancy_flagged"]) for p, r in old.items()} == {
        "pos-old-1": (D("12"), None, None), "pos-old-2": (D("-3"), None, None)}  # (104-100)x3, (49-50)x3
    assert upgraded.query("SELECT COUNT(*) AS n FROM row_revisions")[0]["n"] == 0  # a new table, created
    letters = upgraded.stored_columns()["dead_letters"]  # 0.2.0: a letter can be discarded, with who and why
    assert all(letters[c][1] for c in ("discarded_at", "discarded_by", "discard_reason"))
    stored = upgraded.stored_columns()["snapshot_accounts"]
    assert stored["cash"][1] and stored["delta"][1] and stored["source"][1]  # relaxed and added, nullable

    # runs go on against the upgraded warehouse: a new trade, an account snapshot, a correction of an old row
    upgraded_ctx = Context(ctx.settings, clock=clock, hot=ctx.hot, warehouse=upgraded, broker=ctx.broker,
                           market_data=ctx.market_data)
    wire_local_bus(upgraded_ctx, min_backoff=0)
    make.closed_trade("pos-new", broker_entry=D("10"), broker_exit=D("11"), closed_at=clock() - dt.timedelta(hours=5))
    from goldthread.models import LivePosition

    doc = make.position_doc("pos-old-1")
    make.writer.save_position(LivePosition.model_validate({**doc, "est_fee_usd": D("0.75")}))
    run = run_loop(upgraded_ctx, "trades", DS)
    assert (run.status, run.loaded, run.duplicates) == (RunStatus.SUCCEEDED, 2, 0)
    assert run_loop(upgraded_ctx, "accounts", DS).loaded == 1
    rows = {r["position_id"]: r for r in upgraded.query("SELECT * FROM fact_trades")}
    assert set(rows) == {"pos-old-1", "pos-old-2", "pos-new"}
    assert (rows["pos-old-1"]["revision"], rows["pos-old-1"]["est_fee_usd"]) == (2, D("0.75"))
    assert rows["pos-old-2"]["revision"] is None and rows["pos-new"]["revision"] == 1
    (kept,) = upgraded.query("SELECT * FROM row_revisions")
    assert kept["revision"] == 1 and json.loads(kept["row_json"])["revision"] is None
    upgraded.close()


@pytest.mark.parametrize(("change", "named"), [
    ("ALTER TABLE fact_trades ADD COLUMN bot_note VARCHAR", "fact_trades.bot_note"),
    ("ALTER TABLE snapshot_accounts ALTER COLUMN equity TYPE DOUBLE", "snapshot_accounts.equity"),
])
def test_a_removed_or_retyped_column_is_refused_naming_it(tmp_path: Path, change: str, named: str) -> None:
    path = tmp_path / "old.duckdb"
    old_warehouse(path, {})
    db = duckdb.connect(str(path))
    db.execute(change)
    db.close()
    warehouse = DuckDbWarehouse(path)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        warehouse.ensure_tables()
    assert "row_revisions" not in warehouse.stored_columns()  # refused before anything changed
    warehouse.close()


def test_every_bigquery_schema_change_since_the_previous_release_is_an_in_place_update() -> None:
    """BigQuery updates a table in place only by adding NULLABLE columns or relaxing REQUIRED to NULLABLE."""
    for model in ALL_TABLES:
        current = bigquery_schema(model)
        committed = json.loads((ROOT / "terraform" / "schemas" / f"{model.__table__}.json").read_text())
        assert committed == current, f"{model.__table__}: run `goldthread schema generate`"
        previous_file = FIXTURE / "schemas" / f"{model.__table__}.json"
        if not previous_file.exists():
            continue  # a table added since: created, not updated
        previous = json.loads(previous_file.read_text())
        names = [c["name"] for c in current]
        for i, old in enumerate(previous):
            assert old["name"] in names, f"{model.__table__}.{old['name']} was removed"
            new = current[names.index(old["name"])]
            assert names.index(old["name"]) == i, f"{model.__table__}.{old['name']} moved"
            assert new["type"] == old["type"], f"{model.__table__}.{old['name']} changed type"
            assert (old["mode"], new["mode"]) in {(old["mode"], old["mode"]), ("REQUIRED", "NULLABLE")}, (
                f"{model.__table__}.{old['name']} became {new['mode']}")
        for added in current[len(previous):]:
            assert added["mode"] == "NULLABLE", f"{model.__table__}.{added['name']} was added REQUIRED"
