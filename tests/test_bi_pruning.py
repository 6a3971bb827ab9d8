"""Marts that prune: every mart's compiled BigQuery SQL keeps ``ds`` where a ``ds`` filter must reach the
partitions, a day's filter gives that day's rows on DuckDB and on the BigQuery emulator, the canary asks for its
own day only, and ``docs/metrics.md`` carries the estimate of the bytes one mart query reads over a year.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
import sqlglot
from goldthread.bi import marts
from goldthread.bi.figures import scan_estimates
from goldthread.bi.marts import HISTORY_WIDE, MART_NAMES, PRUNED_BY_DS, WHOLE_TABLE_READS, pruning_problems
from goldthread.bi.metrics import DOC_PATH, METRICS
from goldthread.ports.warehouse import Warehouse

from tests.real.conftest import bigquery_emulator  # noqa: F401 - the session's bqemulator
from tests.test_bi_marts import loaded  # noqa: F401 - the marts' data set on both engines
from tests.test_dashboard import Recorder


def test_every_mart_keeps_partition_pruning_in_its_compiled_bigquery_sql() -> None:
    for mart in MART_NAMES:
        assert pruning_problems(mart) == [], mart
    assert set(PRUNED_BY_DS) == set(MART_NAMES)
    assert {m for m, prunes in PRUNED_BY_DS.items() if not prunes} == set(HISTORY_WIDE), "each exception says why"


def test_the_check_catches_a_dedup_window_without_ds(monkeypatch: pytest.MonkeyPatch) -> None:
    for mart in MART_NAMES:
        old = marts.MARTS[mart].replace("PARTITION BY ds, row_id", "PARTITION BY row_id")
        monkeypatch.setitem(marts.MARTS, mart, old)
        assert any("does not partition by ds" in p for p in pruning_problems(mart)), mart
    ranked_over_all_days = (marts.MARTS["mart_missed_moonshots"]
                            .replace("PARTITION BY row_id", "PARTITION BY ds, row_id")
                            .replace("RANK() OVER (PARTITION BY ds ORDER", "RANK() OVER (ORDER"))
    monkeypatch.setitem(marts.MARTS, "mart_missed_moonshots", ranked_over_all_days)
    assert pruning_problems("mart_missed_moonshots") and "RANK" in pruning_problems("mart_missed_moonshots")[0]


def test_a_day_filter_gives_exactly_that_days_rows(loaded: Warehouse) -> None:  # noqa: F811
    for mart in (m for m in MART_NAMES if PRUNED_BY_DS[m]):
        keys = [m.column for m in METRICS.values() if m.mart == mart and m.dimension]
        everything = loaded.query(f"SELECT * FROM {mart} ORDER BY {', '.join(keys)}")
        days = sorted({r["ds"] for r in everything})
        assert days, f"{mart} has no rows in the data set"
        for day in days:
            one = loaded.query(f"SELECT * FROM {mart} WHERE ds = @ds ORDER BY {', '.join(keys)}", {"ds": day})
            assert one == [r for r in everything if r["ds"] == day], (mart, day)


def test_the_canary_reads_only_its_own_day(loaded: Warehouse) -> None:  # noqa: F811
    from goldthread.bi.canary import STRATEGY_ID, _check_marts

    recorder = Recorder(loaded)
    detail = _check_marts(SimpleNamespace(warehouse=recorder), "pos-C1", dt.date(2024, 1, 25))  # type: ignore[arg-type]
    assert "excluded from the 8 business marts" in detail
    asked = {mart: 0 for mart in MART_NAMES}
    for sql in recorder.sql:
        tree = sqlglot.parse_one(sql, read="bigquery")
        (table,) = [t.name for t in tree.find_all(sqlglot.exp.Table)]
        where = tree.args["where"]
        filters = {c.name for c in where.find_all(sqlglot.exp.Column)} if where else set()
        if table in asked:
            asked[table] += 1
        wanted = "strategy_id" if table == "mart_strategy_performance" else "ds"
        assert wanted in filters, f"the canary reads {table} beyond its day: {sql}"
    assert all(asked.values()), f"every mart answers: {asked}"
    assert STRATEGY_ID == "golden_thread_canary"


def test_metrics_doc_estimates_the_bytes_one_mart_query_reads_over_a_year() -> None:
    text = DOC_PATH.read_text()
    assert "## Cost" in text and "over a year of data" in text
    for estimate in scan_estimates():
        assert f"| `{estimate.mart}` |" in text
        assert estimate.year_bytes > 0
        if PRUNED_BY_DS[estimate.mart] and estimate.mart not in WHOLE_TABLE_READS:
            assert estimate.one_day_bytes * 30 < estimate.year_bytes, estimate
        elif PRUNED_BY_DS[estimate.mart]:
            assert estimate.one_day_bytes < estimate.year_bytes, estimate
        else:
            assert estimate.one_day_bytes == estimate.year_bytes, estimate
