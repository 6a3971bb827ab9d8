"""One order, one position: a broker order backs at most one archived trade.

Positions naming another position's orders are written straight into the hot store (``ctx.hot.put``
through ``make.raw_position``), as a buggy bot would. Proves: in one batch, the first by ``position_id``
loads and the other is ONE dead letter ``ORDER_CLAIMED`` naming it and the order; across two runs, the
archived position keeps its orders; a crash between claim and row write is harmless on redelivery; a
refused position gives back the claim it made on its own order; ``replay --dry-run`` claims nothing;
the canary, which references the same two standing orders on every run, is never refused.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D
from typing import Any

import pytest
from goldthread.bi.canary import run_canary
from goldthread.errors import WarehouseWriteError
from goldthread.loops.order_claims import CLAIMS
from goldthread.models import LivePosition, SchemaGuardian
from goldthread.models.hot import RunStatus
from goldthread.pipeline.context import Context
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.local_runtime import run_loop
from goldthread.pipeline.replay import replay
from goldthread.writer import HotWriter

from tests.conftest import DS, NIGHT_AFTER, Clock, Factory, deliver, rows


def letters(ctx: Context) -> dict[str, dict[str, Any]]:
    return {d["doc_id"]: d for d in rows(ctx, "dead_letters")}


def claimed(letter: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, order, holder) of each error of an ORDER_CLAIMED dead letter."""
    assert letter["reason_code"] == "ORDER_CLAIMED"
    return [(e["loc"], e["order_id"], e["claimed_by"]) for e in json.loads(letter["errors_json"])]


def holder(ctx: Context, order_id: str) -> str | None:
    doc = ctx.hot.get(CLAIMS, order_id)
    return None if doc is None else str(doc["position_id"])


def same_orders(make: Factory, position_id: str, base: LivePosition, **overrides: Any) -> dict[str, Any]:
    """A position naming ``base``'s two orders (a phantom of the same fills)."""
    return make.raw_position(position_id, base, entry_order_id=base.entry_order_id,
                             exit_order_id=base.exit_order_id, **overrides)


def test_two_positions_of_one_batch_naming_the_same_orders(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-b", broker_entry=D(100), broker_exit=D(101))
    same_orders(make, "pos-c", base)  # sorts after pos-b: pos-b is the claimant
    make.closed_trade("pos-other")
    run = run_loop(ctx, "trades", DS)
    assert (run.status, run.published, run.loaded, run.dead_lettered) == (RunStatus.PARTIAL, 3, 2, 1)
    assert sorted(r["position_id"] for r in rows(ctx, "fact_trades")) == ["pos-b", "pos-other"]
    letter = letters(ctx)["pos-c"]
    assert claimed(letter) == [("entry_order_id", "pos-b-entry", "pos-b"), ("exit_order_id", "pos-b-exit", "pos-b")]
    assert "already back another position" in letter["error_message"] and "pos-b" in letter["error_message"]
    assert (holder(ctx, "pos-b-entry"), holder(ctx, "pos-b-exit")) == ("pos-b", "pos-b")
    claim = ctx.hot.get(CLAIMS, "pos-b-entry")
    assert claim is not None and (claim["leg"], claim["run_id"]) == ("entry", run.run_id)


def test_the_first_by_position_id_wins_whoever_wrote_first(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-m")
    same_orders(make, "pos-a", base)  # written later by the bot, but first by position_id
    run_loop(ctx, "trades", DS)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-a"]
    assert claimed(letters(ctx)["pos-m"])[0] == ("entry_order_id", "pos-m-entry", "pos-a")


def test_an_order_archived_by_an_earlier_run_keeps_its_position(ctx: Context, make: Factory, clock: Clock) -> None:
    base = make.closed_trade("pos-first")
    assert run_loop(ctx, "trades", DS).loaded == 1
    # the next day the bot writes another position naming the same orders, under another id
    same_orders(make, "pos-again", base)
    clock.advance(dt.timedelta(days=1))
    run = run_loop(ctx, "trades", DS + dt.timedelta(days=1))
    assert (run.loaded, run.dead_lettered) == (0, 1)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-first"]
    assert claimed(letters(ctx)["pos-again"]) == [("entry_order_id", "pos-first-entry", "pos-first"),
                                                  ("exit_order_id", "pos-first-exit", "pos-first")]


def test_a_refused_position_gives_back_the_claim_on_its_own_order(ctx: Context, make: Factory, clock: Clock) -> None:
    base = make.closed_trade("pos-first")
    run_loop(ctx, "trades", DS)
    make.raw_position("pos-half", base, exit_order_id=base.exit_order_id)  # own entry order, pos-first's exit
    clock.advance(dt.timedelta(days=1))
    run_loop(ctx, "trades", DS + dt.timedelta(days=1))
    assert claimed(letters(ctx)["pos-half"]) == [("exit_order_id", "pos-first-exit", "pos-first")]
    assert holder(ctx, "pos-half-entry") is None  # backs no row: free for the position it really belongs to
    assert holder(ctx, "pos-first-exit") == "pos-first"


def test_a_crash_between_claim_and_row_write_is_harmless(
    ctx: Context, make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    make.closed_trade("pos-a")
    real = ctx.warehouse.insert_rows
    failures = {"n": 0}

    def insert_rows(model: Any, rows_: Any, **kwargs: Any) -> Any:
        if model.__table__ == "fact_trades" and failures["n"] == 0:
            failures["n"] += 1
            raise WarehouseWriteError("the warehouse went away after the claims were taken")
        return real(model, rows_, **kwargs)

    monkeypatch.setattr(ctx.warehouse, "insert_rows", insert_rows)
    run = run_loop(ctx, "trades", DS)
    assert failures["n"] == 1  # the first delivery claimed the orders, then failed to write the row
    assert (run.status, run.loaded, run.dead_lettered) == (RunStatus.SUCCEEDED, 1, 0)  # the redelivery loads it
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-a"]
    assert holder(ctx, "pos-a-entry") == "pos-a" and letters(ctx) == {}


def test_a_redelivered_item_finds_its_own_claims(ctx: Context, make: Factory) -> None:
    make.closed_trade("pos-a")
    first = dispatch(ctx, "trades", DS)
    second = dispatch(ctx, "trades", DS)  # e.g. a stalled run's successor: the same record twice
    deliver(ctx)
    assert [r["position_id"] for r in rows(ctx, "fact_trades")] == ["pos-a"]
    assert letters(ctx) == {}
    assert holder(ctx, "pos-a-entry") == "pos-a"
    assert first.run_id != second.run_id


def test_a_dry_run_replay_claims_nothing(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-good")
    make.raw_position("pos-fix", base, qty="-3")
    run_loop(ctx, "trades", DS)
    assert holder(ctx, "pos-fix-entry") is None
    fixed = SchemaGuardian.validate(LivePosition, {**make.position_doc("pos-fix"), "qty": "3",
                                                   "dead_lettered_run_id": None}, "pos-fix")
    HotWriter(ctx.hot).save_position(fixed)
    report = replay(ctx, dry_run=True)
    assert [w["doc_id"] for w in report.would_pass] == ["pos-fix"]
    assert holder(ctx, "pos-fix-entry") is None and holder(ctx, "pos-fix-exit") is None
    replay(ctx)
    deliver(ctx)
    assert holder(ctx, "pos-fix-entry") == "pos-fix"
    assert sorted(r["position_id"] for r in rows(ctx, "fact_trades")) == ["pos-fix", "pos-good"]


def test_a_dry_run_replay_sees_a_held_claim(ctx: Context, make: Factory) -> None:
    base = make.closed_trade("pos-good")
    same_orders(make, "pos-phantom", base, qty="-3")
    run_loop(ctx, "trades", DS)
    fixed = SchemaGuardian.validate(LivePosition, {**make.position_doc("pos-phantom"), "qty": "3",
                                                   "dead_lettered_run_id": None}, "pos-phantom")
    HotWriter(ctx.hot).save_position(fixed)
    report = replay(ctx, dry_run=True)
    assert report.would_pass == [] and "already back another position" in report.still_failing[0]["why"]
    assert holder(ctx, "pos-good-entry") == "pos-good"


def test_the_canary_reuses_its_standing_orders_every_run(ctx: Context, clock: Clock) -> None:
    first = run_canary(ctx, timeout=5)
    clock.set(NIGHT_AFTER + dt.timedelta(days=3))  # days after the orders filled
    second = run_canary(ctx, timeout=5)
    assert first.ok and second.ok, (first.broken_hop, second.broken_hop)
    assert rows(ctx, "dead_letters") == []
