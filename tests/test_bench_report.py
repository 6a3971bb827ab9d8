"""``python -m bench --keep``: a partial run keeps the other cases' rows of the previous results, marked."""

from __future__ import annotations

import datetime as dt

from bench import report


def test_a_partial_run_carries_only_the_cases_it_did_not_measure() -> None:
    previous = [
        {"case": "loop_a", "n": 10, "version": "old", "seconds": 9.0, "measured_at": "2026-11-29T10:00:00+00:00"},
        {"case": "loop_a.dlt", "n": 10, "version": "old", "seconds": 20.0},
        {"case": "real_stack", "n": 10, "version": "old", "seconds": 50.0, "measured_at": "2026-11-29T11:00:00+00:00"},
        {"case": "cost", "n": 10, "version": "old", "seconds": None},
    ]
    fresh = [{"case": "loop_a", "n": 10, "version": "new", "seconds": 3.0},
             {"case": "loop_a.pydantic", "n": 10, "version": "new", "seconds": 1.0}]
    carried = report.carried_rows(previous, fresh)
    assert [(r["case"], r["carried"]) for r in carried] == [("real_stack", True), ("cost", True)]
    table = report.render(fresh + carried, ["new"], "host", dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    assert "old (earlier run, 2026-11-29T11:00:00+00:00)" in table and "| loop_a | new |" in table
