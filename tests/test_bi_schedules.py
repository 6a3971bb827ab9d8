"""Freshness against the deployed schedule, and open dead letters counted as the CLI counts them.

``goldthread.bi.schedules.SCHEDULES`` must equal ``terraform/scheduler.tf`` (parsed here with python-hcl2), the
cron arithmetic is checked on known instants (weekdays, New York's daylight saving), and the verdicts follow the
rule: late only when the scheduled run is missing or failed, never because a run had nothing to write.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import hcl2
import pytest
from goldthread.bi.dashboard import dashboard_data
from goldthread.bi.schedules import GRACE, SCHEDULES, judge_freshness, previous_fire
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import list_dead_letters
from goldthread.pipeline.local_runtime import run_loop
from goldthread.pipeline.replay import replay
from goldthread.writer import HotWriter

from tests.conftest import DS, Factory, deliver

TF = Path(__file__).resolve().parents[1] / "terraform" / "scheduler.tf"
UTC = dt.UTC


def deployed() -> dict[str, dict[str, Any]]:
    """``locals.schedules`` of terraform/scheduler.tf."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    with TF.open() as f:
        parsed = hcl2.load(f, serialization_options=options)
    (block,) = [b for b in parsed["locals"] if "schedules" in b]
    schedules: dict[str, dict[str, Any]] = block["schedules"]
    return schedules


def test_the_python_schedules_are_the_deployed_ones() -> None:
    tf = deployed()
    assert {s.name for s in SCHEDULES} == set(tf), "a job was added to or removed from scheduler.tf"
    for s in SCHEDULES:
        job = tf[s.name]
        assert (s.cron, s.time_zone) == (job["schedule"], job["time_zone"]), s.name
        runs_as = job["loop"] if job["function"] == "dispatch" else job["function"]
        assert s.job == runs_as, f"{s.name}: its runs are recorded as {runs_as!r}"


@pytest.mark.parametrize(("cron", "zone", "before", "want"), [
    ("15 10 * * 1-5", "America/New_York", dt.datetime(2024, 3, 11, 14, 0, tzinfo=UTC),  # Monday 10:00 EDT
     dt.datetime(2024, 3, 8, 15, 15, tzinfo=UTC)),  # Friday 10:15 EST (15:15 UTC), the weekend skipped
    ("15 10 * * 1-5", "America/New_York", dt.datetime(2024, 3, 11, 14, 15, tzinfo=UTC),
     dt.datetime(2024, 3, 11, 14, 15, tzinfo=UTC)),  # Monday 10:15 EDT, after the clocks changed
    ("5 * * * *", "Etc/UTC", dt.datetime(2024, 1, 1, 0, 4, tzinfo=UTC), dt.datetime(2023, 12, 31, 23, 5, tzinfo=UTC)),
    ("0 17 * * *", "America/New_York", dt.datetime(2024, 7, 1, 20, 59, tzinfo=UTC),
     dt.datetime(2024, 6, 30, 21, 0, tzinfo=UTC)),
    ("*/20 9-10 1 * 0", "Etc/UTC", dt.datetime(2024, 6, 2, 12, 0, tzinfo=UTC),  # day 1 OR Sunday (June 2nd)
     dt.datetime(2024, 6, 2, 10, 40, tzinfo=UTC)),
])
def test_previous_fire(cron: str, zone: str, before: dt.datetime, want: dt.datetime) -> None:
    assert previous_fire(cron, zone, before) == want


NOW = dt.datetime(2024, 3, 13, 18, 0, tzinfo=UTC)  # Wednesday 14:00 in New York


def run(job: str, started: dt.datetime, status: str = "SUCCEEDED", loaded: int = 0) -> dict[str, Any]:
    """A mart_pipeline_health row: the day's latest run of ``job``."""
    return {"job": job, "ds": started.date().isoformat(), "last_started_at": started, "last_status": status,
            "rows_loaded": loaded}


def verdicts(health: list[dict[str, Any]], canary: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Job -> verdict at NOW."""
    return {v["job"]: v["status"] for v in judge_freshness(health, canary or [], NOW)}


def test_a_run_with_nothing_to_do_is_on_time_and_a_missing_or_failed_one_is_not() -> None:
    on_time = [
        run("trades", dt.datetime(2024, 3, 13, 0, 16, tzinfo=UTC)),  # crypto 00:15 UTC today
        run("rejected_signals", dt.datetime(2024, 3, 13, 0, 31, tzinfo=UTC)),
        run("expired_signals", dt.datetime(2024, 3, 13, 0, 46, tzinfo=UTC)),
        run("accounts", dt.datetime(2024, 3, 12, 21, 1, tzinfo=UTC)),  # 17:00 EDT yesterday
        run("patch_fees", dt.datetime(2024, 3, 13, 14, 0, tzinfo=UTC)),  # 10:00 EDT today, 4 h ago
        run("patch_prices", dt.datetime(2024, 3, 13, 14, 15, tzinfo=UTC), loaded=0),  # nothing to patch
    ]
    canary = [{"started_at": "2024-03-13T16:05:00Z", "status": "SUCCEEDED", "ds": "2024-03-13"}]
    assert set(verdicts(on_time, canary).values()) == {"on time"}
    late_prices = [r for r in on_time if r["job"] != "patch_prices"] + [
        run("patch_prices", dt.datetime(2024, 3, 12, 14, 15, tzinfo=UTC), loaded=7)]  # yesterday's run only
    assert verdicts(late_prices, canary)["patch_prices"] == "late"
    failed = [*on_time[:-1], run("patch_prices", dt.datetime(2024, 3, 13, 14, 16, tzinfo=UTC), "FAILED")]
    assert verdicts(failed, canary)["patch_prices"] == "failed"
    assert verdicts(on_time)["canary"] == "never run"


def test_a_run_still_within_its_grace_is_not_late() -> None:
    # the 16:05 canary fired 1 h 55 min before NOW: within GRACE the 15:05 one is what is due
    assert dt.timedelta(hours=2) == GRACE
    canary = [{"started_at": "2024-03-13T15:05:30Z", "status": "SUCCEEDED", "ds": "2024-03-13"}]
    assert verdicts([], canary)["canary"] == "on time"
    stale = [{"started_at": "2024-03-13T12:05:30Z", "status": "SUCCEEDED", "ds": "2024-03-13"}]
    assert verdicts([], stale)["canary"] == "late"


def test_open_dead_letters_on_the_page_are_the_cli_s(ctx: Context, make: Factory) -> None:
    """A buggy bot writes bad positions straight into the hot store; one is fixed and replayed; the page's
    open count is the number ``goldthread dead-letters list`` shows, and the good trades still load."""
    good = make.closed_trade("pos-good")
    make.raw_position("pos-to-fix", make.closed_trade("pos-to-fix"), qty="-3")
    make.raw_position("pos-still-bad", good, qty="0")
    make.raw_position("pos-bad-version", good, strategy_version="0.9")
    first = run_loop(ctx, "trades", DS)
    assert (first.loaded, first.dead_lettered) == (1, 3)
    doc = make.position_doc("pos-to-fix")
    from goldthread.models import LivePosition, SchemaGuardian

    HotWriter(ctx.hot).save_position(SchemaGuardian.validate(
        LivePosition, {**doc, "qty": "3", "dead_lettered_run_id": None}, "pos-to-fix"))
    replay(ctx)
    deliver(ctx)
    open_letters = list_dead_letters(ctx)
    assert {d["doc_id"] for d in open_letters} == {"pos-still-bad", "pos-bad-version"}
    assert len(list_dead_letters(ctx, include_replayed=True)) == 3
    data = dashboard_data(ctx.warehouse, ctx.now())
    assert sum(r["open_letters"] for r in data["dead_letters"]) == len(open_letters) == 2
    assert sum(r["replayed_letters"] for r in data["dead_letters"]) == 1
    for letter in open_letters:
        errors = letter["errors_json"]
        assert '"loc"' in errors and '"msg"' in errors, "each letter names its field and reason"
    loaded = ctx.warehouse.query("SELECT position_id FROM fact_trades ORDER BY position_id")
    assert [r["position_id"] for r in loaded] == ["pos-good", "pos-to-fix"]
