"""Guarantee 3, bad input: over a thousand malformed hot documents and work items (``corpus.py``), mixed
with good records, go through Loops A, B and C on the embedded stack: every bad one ends in the dead
letters exactly once with a field-level reason naming what is wrong, every good one is loaded, and
nothing crashes: no delivery is retried (a crash in a subscriber is a nack), nothing is dead-lettered as
``MAX_ATTEMPTS``, every run finishes PARTIAL and reconciles, and every dead letter stays within its
column bounds however huge the input.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest
from goldthread.models.hot import RunStatus
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.pipeline.local_runtime import run_loop
from goldthread.writer import POSITIONS, REJECTED, SIGNALS

from tests.conftest import DS, NIGHT_AFTER, SESSION, Clock, Factory, rows
from tests.reliability.corpus import Case, document_cases, matches, message_cases
from tests.reliability.harness import record

pytestmark = pytest.mark.slow

LOOP_OF = {POSITIONS: "trades", REJECTED: "rejected_signals", SIGNALS: "expired_signals", "message": "trades"}
GOOD = {"trades": 100, "rejected_signals": 15, "expired_signals": 15}


def good_records(make: Factory) -> dict[str, dict[str, Any]]:
    """Valid positions, rejected and expired signals; returns one stored document of each as a template."""
    for i in range(GOOD["trades"]):
        make.closed_trade(f"pos-good-{i:03d}", opened_at=SESSION + dt.timedelta(minutes=i))
    for i in range(GOOD["rejected_signals"]):
        signal = make.signal(f"rej-good-{i:02d}", created_at=SESSION + dt.timedelta(minutes=i))
        make.writer.reject_signal(signal.signal_id, "MAX_EXPOSURE", signal.created_at)
    for i in range(GOOD["expired_signals"]):
        signal = make.signal(f"exp-good-{i:02d}", created_at=SESSION + dt.timedelta(minutes=i))
        make.writer.expire_signal(signal.signal_id)
    hot = make.ctx.hot
    templates = {POSITIONS: hot.get(POSITIONS, "pos-good-000"), REJECTED: hot.get(REJECTED, "rej-good-00"),
                 SIGNALS: hot.get(SIGNALS, "exp-good-00")}
    return {kind: dict(doc) for kind, doc in templates.items() if doc is not None}


def test_every_bad_input_is_dead_lettered_with_its_field_and_every_good_one_loads(
    ctx: Context, make: Factory, clock: Clock
) -> None:
    templates = good_records(make)
    clock.set(NIGHT_AFTER + dt.timedelta(days=9))  # past Loop B's 7-day window for DS
    documents = document_cases(templates)
    item = WorkItem(run_id="corpus-run", loop=Loop.TRADES, ds=DS, doc_id="pos-good-000", published_at=NIGHT_AFTER)
    messages = message_cases(item.model_dump(mode="json"))
    for case in documents:
        ctx.hot.put(case.kind, case.key, case.document)
    for case in messages:
        ctx.bus.publish(ctx.settings.topic(case.loop), case.body, case.attributes)

    finished = [run_loop(ctx, loop, DS) for loop in ("trades", "rejected_signals", "expired_signals")]

    bus: Any = ctx.bus
    assert {name: (s["nacked"], s["dead_lettered"]) for name, s in bus.stats().items()} == {
        name: (0, 0) for name in bus.stats()}, "a delivery failed: something crashed"
    for run in finished:
        assert run.status is RunStatus.PARTIAL and run.reconciled, run
    letters = rows(ctx, "dead_letters")
    assert not [d for d in letters if d["reason_code"] == "MAX_ATTEMPTS"]
    by_doc: dict[tuple[str, str], list[dict[str, Any]]] = {}
    by_case: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_doc.setdefault((letter["loop"], letter["doc_id"]), []).append(letter)
        case_key = json.loads(letter["attributes_json"]).get("corpus_case")
        if case_key:
            by_case.setdefault(case_key, []).append(letter)

    failures = []
    for case in documents + messages:
        found = by_case.get(case.key, []) if case.kind == "message" else by_doc.get(
            (LOOP_OF[case.kind], case.key[:128]), [])
        if len(found) != 1:
            failures.append(f"{case.kind} {case.key!r} ({case.category}): {len(found)} dead letters")
        elif not matches(json.loads(found[0]["errors_json"]), case.expect):
            failures.append(f"{case.kind} {case.key!r} ({case.category}): expected {case.expect}, got "
                            f"{found[0]['reason_code']} {found[0]['errors_json'][:300]}")
    assert not failures, f"{len(failures)} bad inputs without their reason:\n" + "\n".join(failures[:40])
    assert len(letters) == len(documents) + len(messages)  # and nothing good was dead-lettered

    loaded = {table: {r[key] for r in rows(ctx, table)} for table, key in (
        ("fact_trades", "position_id"), ("fact_rejected_signals", "signal_id"), ("fact_signals_expired", "signal_id"))}
    assert loaded["fact_trades"] == {f"pos-good-{i:03d}" for i in range(GOOD["trades"])}
    assert loaded["fact_rejected_signals"] == {f"rej-good-{i:02d}" for i in range(GOOD["rejected_signals"])}
    assert loaded["fact_signals_expired"] == {f"exp-good-{i:02d}" for i in range(GOOD["expired_signals"])}
    assert max(len(d["error_message"]) for d in letters) <= 1024
    assert max(len(d["payload"]) + len(d["errors_json"]) for d in letters) <= 2_000_000

    categories = Counter(case.category for case in documents + messages)
    record("bad_input", bad_documents=len(documents), bad_messages=len(messages), good_records=sum(GOOD.values()),
           inputs_tried=len(documents) + len(messages) + sum(GOOD.values()), dead_lettered=len(letters),
           with_field_reason=len(documents) + len(messages) - len(failures), good_loaded=sum(map(len, loaded.values())),
           crashes=0, retried_deliveries=0, categories=dict(sorted(categories.items())))
    assert len(documents) + len(messages) >= 1000


def cases_by_category(cases: list[Case]) -> dict[str, int]:
    """How many cases of each kind of fault (for the guarantees document)."""
    return dict(Counter(c.category for c in cases))
