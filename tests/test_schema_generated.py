"""Generated schemas: the committed BigQuery JSON, DuckDB DDL and docs/schema.md match the models.

Proves three things: nothing generated is stale now; a change to a model *would* be caught (the
generator run into a temporary root, then a model changed); and the column types follow the field
types, checked against an independent oracle (Pydantic's own JSON schema of each model) rather than
the generator's mapping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from goldthread.models.types import Money
from goldthread.models.warehouse import ALL_TABLES, FactTrade, SnapshotAccount, WarehouseRow
from goldthread.schema import generate
from goldthread.schema.generate import (
    REPO_ROOT,
    artifacts,
    bigquery_schema,
    duckdb_ddl,
    stale_artifacts,
    write_artifacts,
)
from pydantic import Field


def test_committed_artifacts_are_fresh() -> None:
    stale = stale_artifacts()
    assert stale == [], f"stale generated files (run `goldthread schema generate`): {stale}"


def test_artifacts_cover_every_table() -> None:
    files = artifacts()
    for model in ALL_TABLES:
        path = REPO_ROOT / "terraform" / "schemas" / f"{model.__table__}.json"
        assert path in files
        assert json.loads(path.read_text()) == bigquery_schema(model)
        assert duckdb_ddl(model) in (REPO_ROOT / "shared" / "goldthread" / "schema" / "duckdb.sql").read_text()
        assert f"## `{model.__table__}`" in (REPO_ROOT / "docs" / "schema.md").read_text()


class FactTradeWithNote(FactTrade):
    """``fact_trades`` as if someone added a column to the model."""

    note: str | None = Field(default=None, description="A new column.")


class SnapshotWithRequiredNumber(SnapshotAccount):
    """``snapshot_accounts`` with one more NUMERIC column."""

    rho: Money = Field(description="Sum of qty x multiplier x rho.")


def test_a_model_change_makes_its_artifacts_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = write_artifacts(tmp_path)
    deployment = len(generate.deployment_artifacts(tmp_path))  # BI views and firestore.indexes.json
    assert len(written) == len(ALL_TABLES) + 2 + deployment and stale_artifacts(tmp_path) == []
    assert write_artifacts(tmp_path) == []  # generating twice changes nothing

    changed = tuple(FactTradeWithNote if m is FactTrade else m for m in ALL_TABLES)
    monkeypatch.setattr(generate, "ALL_TABLES", changed)
    stale = set(stale_artifacts(tmp_path))
    assert stale == {
        tmp_path / "terraform" / "schemas" / "fact_trades.json",
        tmp_path / "shared" / "goldthread" / "schema" / "duckdb.sql",
        tmp_path / "docs" / "schema.md",
    }
    assert write_artifacts(tmp_path) and stale_artifacts(tmp_path) == []
    columns = json.loads((tmp_path / "terraform" / "schemas" / "fact_trades.json").read_text())
    (note,) = [c for c in columns if c["name"] == "note"]
    assert note == {"name": "note", "type": "STRING", "mode": "NULLABLE", "description": "A new column."}


def test_a_deleted_artifact_is_stale(tmp_path: Path) -> None:
    write_artifacts(tmp_path)
    victim = tmp_path / "terraform" / "schemas" / "dim_strategy.json"
    victim.unlink()
    assert stale_artifacts(tmp_path) == [victim]


def test_a_hand_edited_artifact_is_stale(tmp_path: Path) -> None:
    write_artifacts(tmp_path)
    ddl = tmp_path / "shared" / "goldthread" / "schema" / "duckdb.sql"
    ddl.write_text(ddl.read_text().replace("DECIMAL(38,9)", "DOUBLE", 1))
    assert stale_artifacts(tmp_path) == [ddl]


def test_schema_check_command_reports_staleness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from goldthread import cli

    assert cli.main(["schema", "check"]) == 0
    monkeypatch.setattr(generate, "ALL_TABLES", (SnapshotWithRequiredNumber, *ALL_TABLES[1:]))
    assert cli.main(["schema", "check"]) == 1


# -- column types against an independent oracle ---------------------------------------------------


def _oracle(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[str, str]:
    """(BigQuery type, mode) read from Pydantic's JSON schema of one property."""
    mode = "REQUIRED"
    if "anyOf" in prop:
        options = prop["anyOf"]
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) < len(options):
            mode = "NULLABLE"
            prop = non_null[0] if len(non_null) == 1 else {"anyOf": non_null}
    if "$ref" in prop:
        target = defs[prop["$ref"].rsplit("/", 1)[-1]]
        assert target.get("type") == "string" and "enum" in target
        return "STRING", mode
    if "anyOf" in prop:
        assert sorted(o.get("type") for o in prop["anyOf"]) == ["number", "string"], prop
        return "NUMERIC", mode  # Pydantic's JSON schema of a Decimal: a number or a numeric string
    kind, fmt = prop.get("type"), prop.get("format")
    table = {("string", "date-time"): "TIMESTAMP", ("string", "date"): "DATE", ("string", None): "STRING",
             ("integer", None): "INT64", ("boolean", None): "BOOL"}
    return table[(kind, fmt)], mode


@pytest.mark.parametrize("model", ALL_TABLES, ids=lambda m: m.__table__)
def test_bigquery_types_and_modes_follow_the_field_types(model: type[WarehouseRow]) -> None:
    js = model.model_json_schema(mode="validation")
    expected = [
        {"name": name, **dict(zip(("type", "mode"), _oracle(prop, js.get("$defs", {})), strict=True))}
        for name, prop in js["properties"].items()
    ]
    actual = [{"name": c["name"], "type": c["type"], "mode": c["mode"]} for c in bigquery_schema(model)]
    assert sorted(actual, key=lambda c: c["name"]) == sorted(expected, key=lambda c: c["name"])
    assert [c["name"] for c in actual] == release_order(model)


def release_order(model: type[WarehouseRow]) -> list[str]:
    """The first release's columns in field order, then those a later release added (``added_in``), by release."""
    fields = model.model_fields
    later = sorted((tuple(int(p) for p in str(extra["added_in"]).split(".")), i, name)
                   for i, (name, f) in enumerate(fields.items())
                   if isinstance(extra := f.json_schema_extra, dict) and "added_in" in extra)
    added = [name for *_, name in later]
    return [name for name in fields if name not in added] + added


def test_known_columns_of_fact_trades() -> None:
    cols = {c["name"]: (c["type"], c["mode"]) for c in bigquery_schema(FactTrade)}
    assert cols["qty"] == ("NUMERIC", "REQUIRED")
    assert cols["actual_fee_usd"] == ("NUMERIC", "NULLABLE")
    assert cols["opened_at"] == ("TIMESTAMP", "REQUIRED")
    assert cols["ds"] == ("DATE", "REQUIRED")
    assert cols["fee_finalized"] == ("BOOL", "REQUIRED")  # has a default, but is never null
    assert cols["holding_seconds"] == ("INT64", "REQUIRED")
    assert cols["side"] == ("STRING", "REQUIRED")
    assert cols["strategy_sk"] == ("STRING", "NULLABLE")
    assert list(cols) == release_order(FactTrade)
    assert list(cols)[-2:] == ["revision", "price_discrepancy_flagged"]  # added in 0.2.0, appended


@pytest.mark.parametrize("model", ALL_TABLES, ids=lambda m: m.__table__)
def test_duckdb_ddl_creates_the_declared_columns(model: type[WarehouseRow]) -> None:
    db = duckdb.connect(":memory:")
    db.execute(duckdb_ddl(model))
    described = db.execute(f"DESCRIBE {model.__table__}").fetchall()  # name, type, null, key, ...
    mapping = {"NUMERIC": "DECIMAL(38,9)", "TIMESTAMP": "TIMESTAMP WITH TIME ZONE", "DATE": "DATE",
               "STRING": "VARCHAR", "INT64": "BIGINT", "BOOL": "BOOLEAN"}
    bq = bigquery_schema(model)
    assert [r[0] for r in described] == [c["name"] for c in bq]
    for row, col in zip(described, bq, strict=True):
        assert row[1] == mapping[col["type"]], col["name"]
        assert (row[2] == "NO") == (col["mode"] == "REQUIRED" or col["name"] == model.__key__), col["name"]
    assert [r[0] for r in described if r[3] == "PRI"] == [model.__key__]
