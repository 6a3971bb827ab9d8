"""The DuckDB adapter turns validated rows into Arrow from their field values, without ``model_dump``.

That shortcut is only right while no model changes a value when it is dumped in Python mode; these
tests fail the day one does.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from goldthread.adapters.duckdb_warehouse import arrow_schema, rows_to_arrow
from goldthread.models.warehouse import ALL_TABLES, FactTrade, WarehouseRow
from pydantic import PlainSerializer, WrapSerializer

from tests.contracts.test_warehouse_contract import bar, trade


@pytest.mark.parametrize("model", ALL_TABLES, ids=lambda m: m.__table__)
def test_no_warehouse_model_serializes_values_in_python_mode(model: type[WarehouseRow]) -> None:
    decorators = model.__pydantic_decorators__
    assert not decorators.model_serializers and not decorators.field_serializers
    for name, info in model.model_fields.items():
        for meta in info.metadata:
            if isinstance(meta, (PlainSerializer, WrapSerializer)):
                assert meta.when_used in ("json", "json-unless-none"), f"{model.__name__}.{name} dumps differently"


def test_rows_to_arrow_matches_model_dump() -> None:
    trades = [trade("a"), trade("b", exit_price=None, strategy_sk=None)]
    assert rows_to_arrow(FactTrade, trades).equals(
        pa.Table.from_pylist([r.model_dump() for r in trades], schema=arrow_schema(FactTrade))
    )
    bars = [bar("x", 1), bar("y", 2)]
    model = type(bars[0])
    assert rows_to_arrow(model, bars).equals(
        pa.Table.from_pylist([r.model_dump() for r in bars], schema=arrow_schema(model))
    )
