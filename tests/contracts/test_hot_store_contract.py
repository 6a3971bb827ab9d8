"""The ``HotStore`` contract, written once and run against every hot store (SQLite and Firestore).

Values read back are compared through ``as_datetime``/``as_decimal``: both stores keep decimals as
exact text, and a timestamp comes back as a ``datetime`` (Firestore) or ISO text (SQLite); what the
contract fixes is that each is exact to the microsecond and the decimal to its last digit.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from goldthread.ports.hot_store import HotStore, Merge, Where

T0 = dt.datetime(2024, 3, 1, 14, 30, 15, 123456, tzinfo=dt.UTC)


def as_datetime(value: Any) -> dt.datetime:
    """A stored timestamp as an aware datetime, whichever form the store returns."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def as_decimal(value: Any) -> Decimal:
    """A stored decimal, read exactly."""
    return Decimal(str(value))


def seed(store: HotStore, n: int = 12) -> None:
    """``n`` signals s000.. with status alternating, archived_run_id null/absent/set, times a minute apart."""
    for i in range(n):
        doc: dict[str, Any] = {
            "signal_id": f"s{i:03d}",
            "status": "ACTIVE" if i % 2 else "EXPIRED",
            "signal_price": Decimal("185.123456789"),
            "expires_at": T0 + dt.timedelta(minutes=i),
            "rank": i,
        }
        if i % 3 == 0:
            doc["archived_run_id"] = "run-old"
        elif i % 3 == 1:
            doc["archived_run_id"] = None  # explicitly null
        # i % 3 == 2: the field is absent
        store.put("live_signals", f"s{i:03d}", doc)


def ids(rows: Any) -> list[str]:
    """Document ids of a query result, in order."""
    return [doc_id for doc_id, _ in rows]


def test_put_get_round_trip_is_exact(hot_store: HotStore) -> None:
    hot_store.put("live_signals", "a", {"p": Decimal("0.000000001"), "t": T0, "n": 3, "ok": True, "x": None})
    doc = hot_store.get("live_signals", "a")
    assert doc is not None
    assert as_decimal(doc["p"]) == Decimal("0.000000001")
    assert as_datetime(doc["t"]) == T0
    assert (doc["n"], doc["ok"], doc["x"]) == (3, True, None)
    assert hot_store.get("live_signals", "missing") is None


def test_put_replaces_and_update_merges(hot_store: HotStore) -> None:
    hot_store.put("strategies", "s:1", {"a": 1, "b": 2})
    hot_store.put("strategies", "s:1", {"a": 10})
    assert hot_store.get("strategies", "s:1") == {"a": 10}
    hot_store.update("strategies", "s:1", {"b": 20, "c": "x"})
    assert hot_store.get("strategies", "s:1") == {"a": 10, "b": 20, "c": "x"}
    with pytest.raises(KeyError):
        hot_store.update("strategies", "nope", {"a": 1})


def test_create_only_if_absent_and_delete(hot_store: HotStore) -> None:
    assert hot_store.create("job_metadata", "r1", {"state": "RUNNING"}) is True
    assert hot_store.create("job_metadata", "r1", {"state": "OTHER"}) is False
    assert hot_store.get("job_metadata", "r1") == {"state": "RUNNING"}
    hot_store.delete("job_metadata", "r1")
    hot_store.delete("job_metadata", "r1")  # absent: no error
    assert hot_store.get("job_metadata", "r1") is None


def test_create_many_keeps_the_first_writer_and_reads_every_document_back(hot_store: HotStore) -> None:
    assert hot_store.create("order_claims", "o1", {"position_id": "p-first", "n": 1}) is True
    got = hot_store.create_many("order_claims", {"o1": {"position_id": "p-second", "n": 2},
                                                  "o2": {"position_id": "p-second", "n": 3}})
    assert got == {"o1": {"position_id": "p-first", "n": 1}, "o2": {"position_id": "p-second", "n": 3}}
    assert hot_store.get("order_claims", "o1") == {"position_id": "p-first", "n": 1}  # never overwritten
    assert hot_store.get("order_claims", "o2") == {"position_id": "p-second", "n": 3}
    again = hot_store.create_many("order_claims", {"o2": {"position_id": "p-third", "n": 4}})
    assert again == {"o2": {"position_id": "p-second", "n": 3}}  # a repeat reads the holder, changes nothing
    assert hot_store.create_many("order_claims", {}) == {}
    many = {f"x{i:03d}": {"position_id": f"p{i}"} for i in range(450)}  # beyond one chunk / transaction
    assert hot_store.create_many("order_claims", many) == many


def test_get_many_leaves_out_missing_ids(hot_store: HotStore) -> None:
    seed(hot_store, 5)
    got = hot_store.get_many("live_signals", ["s001", "s004", "nope", "s001"])
    assert sorted(got) == ["s001", "s004"]
    assert got["s004"]["rank"] == 4
    assert hot_store.get_many("live_signals", []) == {}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ([Where("status", "==", "ACTIVE")], [1, 3, 5, 7, 9, 11]),
        ([Where("rank", "<", 3)], [0, 1, 2]),
        ([Where("rank", "<=", 3)], [0, 1, 2, 3]),
        ([Where("rank", ">", 9)], [10, 11]),
        ([Where("rank", ">=", 9)], [9, 10, 11]),
        ([Where("status", "in", ["ACTIVE", "NONE"]), Where("rank", "<", 6)], [1, 3, 5]),
        ([Where("status", "==", "EXPIRED"), Where("expires_at", "<", T0 + dt.timedelta(minutes=5))], [0, 2, 4]),
        ([Where("expires_at", ">=", T0 + dt.timedelta(minutes=10))], [10, 11]),
    ],
)
def test_query_operators(hot_store: HotStore, where: list[Where], expected: list[int]) -> None:
    seed(hot_store)
    assert sorted(ids(hot_store.query("live_signals", where))) == [f"s{i:03d}" for i in expected]


def test_equals_none_matches_explicit_null_only(hot_store: HotStore) -> None:
    seed(hot_store)
    got = ids(hot_store.query("live_signals", [Where("archived_run_id", "==", None)]))
    assert got == ["s001", "s004", "s007", "s010"]  # not the documents where the field is absent
    both = ids(hot_store.query("live_signals", [Where("archived_run_id", "==", None), Where("status", "==", "ACTIVE")]))
    assert both == ["s001", "s007"]


def test_in_with_many_values_and_empty_in(hot_store: HotStore) -> None:
    seed(hot_store)
    values = [f"r{i}" for i in range(40)] + [5, 7]  # more than Firestore's 30 per 'in'
    assert ids(hot_store.query("live_signals", [Where("rank", "in", values)])) == ["s005", "s007"]
    assert ids(hot_store.query("live_signals", [Where("rank", "in", [])])) == []


def test_not_in_matches_present_non_null_values_outside_the_list(hot_store: HotStore) -> None:
    """Firestore's ``not-in``: an absent field and a null never match, a number never equals a string."""
    statuses: dict[str, Any] = {"a": "ACTIVE", "b": "expired", "c": None, "e": 3, "f": ["ACTIVE"], "g": "EXECUTED",
                                "h": True, "i": "", "j": "1"}
    for doc_id, status in statuses.items():
        hot_store.put("live_signals", doc_id, {"status": status, "archived_run_id": None})
    hot_store.put("live_signals", "d", {"archived_run_id": None})  # no status at all
    hot_store.put("live_signals", "k", {"status": "odd", "archived_run_id": "run-old"})
    known = Where("status", "not-in", ["ACTIVE", "EXECUTED", "EXPIRED", "REJECTED", 1])
    got = hot_store.query("live_signals", [known, Where("archived_run_id", "==", None)], fields=["status"])
    assert sorted(ids(got)) == ["b", "e", "f", "h", "i", "j"]
    numbers = Where("status", "not-in", [3.0, False, "expired"])  # 3.0 is the number 3; True is not False
    assert sorted(ids(hot_store.query("live_signals", [numbers]))) == ["a", "f", "g", "h", "i", "j", "k"]


@pytest.mark.parametrize("values", [[], [f"v{i}" for i in range(11)]])
def test_not_in_takes_one_to_ten_values(hot_store: HotStore, values: list[str]) -> None:
    from goldthread.errors import ConfigError

    with pytest.raises(ConfigError, match="not-in"):
        list(hot_store.query("live_signals", [Where("status", "not-in", values)]))


def test_projection_returns_only_requested_fields(hot_store: HotStore) -> None:
    seed(hot_store, 4)
    rows = list(hot_store.query("live_signals", [Where("rank", ">=", 2)], fields=["signal_id", "status"]))
    assert rows == [
        ("s002", {"signal_id": "s002", "status": "EXPIRED"}),
        ("s003", {"signal_id": "s003", "status": "ACTIVE"}),
    ]


def test_projection_keeps_nested_values_nulls_and_absent_fields_alike(hot_store: HotStore) -> None:
    hot_store.put("things", "t1", {"tags": {"a": [1, 2.5, "x"]}, "flag": True, "gone": None, "n": 3})
    rows = list(hot_store.query("things", fields=["tags", "flag", "gone", "absent", "n"]))
    assert rows == [("t1", {"tags": {"a": [1, 2.5, "x"]}, "flag": True, "gone": None, "absent": None, "n": 3})]
    assert list(hot_store.query("things", fields=[])) == [("t1", {})]


def test_paging_crosses_page_boundaries_without_gaps_or_repeats(hot_store: HotStore) -> None:
    seed(hot_store, 23)
    for page_size in (1, 5, 23, 100):
        got = ids(hot_store.query("live_signals", page_size=page_size))
        assert got == [f"s{i:03d}" for i in range(23)], page_size
    ranged = ids(hot_store.query("live_signals", [Where("rank", ">=", 3)], fields=["rank"], page_size=4))
    assert sorted(ranged) == [f"s{i:03d}" for i in range(3, 23)] and len(set(ranged)) == 20
    filtered = ids(hot_store.query("live_signals", [Where("status", "==", "ACTIVE")], page_size=3))
    assert filtered == [f"s{i:03d}" for i in range(1, 23, 2)]


def test_claim_marks_once_and_second_claim_changes_nothing(hot_store: HotStore) -> None:
    seed(hot_store, 6)
    candidates = ["s000", "s001", "s002", "s003", "nope"]
    claimed = hot_store.claim("live_signals", candidates, "archived_run_id", "run-1", also={"archived_at": T0})
    assert sorted(claimed) == ["s001", "s002"]  # s000 and s003 were archived before; null and absent qualify
    doc = hot_store.get("live_signals", "s002")
    assert doc is not None and doc["archived_run_id"] == "run-1" and as_datetime(doc["archived_at"]) == T0
    assert hot_store.claim("live_signals", candidates, "archived_run_id", "run-2") == []
    assert hot_store.get("live_signals", "s001")["archived_run_id"] == "run-1"  # type: ignore[index]
    assert hot_store.get("live_signals", "s000")["archived_run_id"] == "run-old"  # type: ignore[index]


def test_claim_creates_absent_documents_it_is_given_and_stores_each_documents_own_fields(
    hot_store: HotStore,
) -> None:
    hot_store.put("ledger_marks", "m-held", {"doc_id": "held", "archived_run_id": "run-0"})
    create = {k: {"doc_id": k.removeprefix("m-")} for k in ("m-new", "m-held", "m-other")}
    each = {"m-new": {"digest": "d-new"}, "m-held": {"digest": "d-held"}}

    won = hot_store.claim("ledger_marks", ["m-new", "m-held", "m-absent"], "archived_run_id", "run-1",
                          also={"archived_at": T0}, each=each, create=create)

    assert won == ["m-new"]  # m-held was claimed before; m-absent is not in ``create``: left alone
    new = hot_store.get("ledger_marks", "m-new")
    assert new is not None and new["doc_id"] == "new" and new["archived_run_id"] == "run-1"
    assert new["digest"] == "d-new" and as_datetime(new["archived_at"]) == T0
    assert hot_store.get("ledger_marks", "m-held") == {"doc_id": "held", "archived_run_id": "run-0"}
    assert hot_store.get("ledger_marks", "m-absent") is None and hot_store.get("ledger_marks", "m-other") is None
    # a second claim of another field on the created document keeps what it holds
    assert hot_store.claim("ledger_marks", ["m-new"], "loading_run_id", "run-2", create=create) == ["m-new"]
    kept = hot_store.get("ledger_marks", "m-new")
    assert kept is not None and (kept["archived_run_id"], kept["loading_run_id"]) == ("run-1", "run-2")


def test_record_outcomes_counts_each_item_once(hot_store: HotStore) -> None:
    hot_store.put("job_metadata", "run-1", {"state": "RUNNING", "loaded": 0, "duplicates": 0, "dead_lettered": 0})
    first = hot_store.record_outcomes("run-1", {"a": "loaded", "b": "loaded", "c": "duplicates", "d": "dead_lettered"})
    assert first.added == {"loaded": 2, "duplicates": 1, "dead_lettered": 1}
    # the run comes back from the same write, its counters updated: whole, or (a blind write) its counters only
    assert first.run is not None and (first.run["loaded"], first.run["duplicates"]) == (2, 1)
    if first.complete:
        assert first.run["state"] == "RUNNING"
    else:
        assert first.run == {"loaded": 2, "duplicates": 1, "dead_lettered": 1, "published": 0}
    again = hot_store.record_outcomes("run-1", {"a": "dead_lettered", "b": "loaded", "e": "loaded"})
    assert again.added == {"loaded": 1, "duplicates": 0, "dead_lettered": 0}  # a and b are redeliveries
    assert again.run is not None and (again.run["loaded"], again.run["duplicates"], again.run["dead_lettered"]) == (
        3, 1, 1)
    nothing = hot_store.record_outcomes("run-1", {"a": "loaded"})
    assert nothing.added == {"loaded": 0, "duplicates": 0, "dead_lettered": 0}
    doc = hot_store.get("job_metadata", "run-1")
    assert doc is not None
    assert (doc["loaded"], doc["duplicates"], doc["dead_lettered"], doc["state"]) == (3, 1, 1, "RUNNING")
    assert hot_store.item_outcomes("run-1") == {
        "a": "loaded", "b": "loaded", "c": "duplicates", "d": "dead_lettered", "e": "loaded",
    }
    assert hot_store.item_outcomes("run-other") == {}
    missing = hot_store.record_outcomes("run-other", {"a": "loaded"})  # no such run: nothing is recorded
    assert (missing.run, hot_store.item_outcomes("run-other")) == (None, {})
    with pytest.raises(ValueError):
        hot_store.record_outcomes("run-1", {"f": "exploded"})


def test_record_outcomes_merges_only_with_the_outcomes_it_records(hot_store: HotStore) -> None:
    hot_store.put("job_metadata", "run-1", {"state": "RUNNING", "loaded": 0, "duplicates": 0, "dead_lettered": 0})
    hot_store.put("ledger_marks", "t:b", {"doc_id": "b", "loading_run_id": "run-0", "digest": "old"})
    at = dt.datetime(2024, 3, 5, 21, 40, tzinfo=dt.UTC)

    def mark(doc: str, run: str) -> Merge:
        return Merge("ledger_marks", f"t:{doc}", {"doc_id": doc, "archived_run_id": run, "archived_at": at,
                                                  "digest": f"d-{run}", "due_again": None})

    first = hot_store.record_outcomes("run-1", {"a": "loaded", "b": "loaded", "c": "duplicates"},
                                      {"a": mark("a", "run-1"), "b": mark("b", "run-1"), "z": mark("z", "run-1")},
                                      at=at)
    assert first.added == {"loaded": 2, "duplicates": 1, "dead_lettered": 0}
    created, merged = hot_store.get("ledger_marks", "t:a"), hot_store.get("ledger_marks", "t:b")
    assert created is not None and (created["archived_run_id"], created["digest"]) == ("run-1", "d-run-1")
    stamp = created["archived_at"]  # a timestamp on Firestore, ISO text in SQLite's JSON
    assert (stamp if isinstance(stamp, dt.datetime) else dt.datetime.fromisoformat(stamp)) == at
    assert created["due_again"] is None
    # merged into the existing document: its other fields stay
    assert merged is not None and (merged["loading_run_id"], merged["archived_run_id"]) == ("run-0", "run-1")
    assert hot_store.get("ledger_marks", "t:z") is None  # no outcome for it, no merge
    # the counting write is the run's heartbeat
    beat = (hot_store.get("job_metadata", "run-1") or {})["heartbeat_at"]
    assert (beat if isinstance(beat, dt.datetime) else dt.datetime.fromisoformat(beat)) == at
    # a redelivery's outcome is not recorded again, nor is its merge made again, nor does it beat
    hot_store.update("ledger_marks", "t:a", {"archived_run_id": None, "due_again": True})
    assert hot_store.record_outcomes("run-1", {"a": "loaded"}, {"a": mark("a", "run-2")},
                                     at=at + dt.timedelta(hours=1)).added["loaded"] == 0
    assert (hot_store.get("job_metadata", "run-1") or {})["heartbeat_at"] == beat
    again = hot_store.record_outcomes("run-1", {"a": "loaded", "d": "loaded"}, {"a": mark("a", "run-2"),
                                                                              "d": mark("d", "run-1")})
    assert again.added == {"loaded": 1, "duplicates": 0, "dead_lettered": 0}
    kept, fresh = hot_store.get("ledger_marks", "t:a"), hot_store.get("ledger_marks", "t:d")
    assert kept is not None and (kept["archived_run_id"], kept["due_again"]) == (None, True)
    assert fresh is not None and fresh["archived_run_id"] == "run-1"
    # no such run: neither counted nor merged
    missing = hot_store.record_outcomes("run-other", {"e": "loaded"}, {"e": mark("e", "run-other")})
    assert missing.run is None and hot_store.get("ledger_marks", "t:e") is None


def test_lease_is_exclusive_until_expiry_and_released(hot_store: HotStore) -> None:
    ttl = dt.timedelta(minutes=10)
    assert hot_store.acquire_lease("trades:2024-03-01", "h1", T0, ttl) is None
    assert hot_store.acquire_lease("trades:2024-03-01", "h1", T0 + dt.timedelta(minutes=1), ttl) is None  # renew
    assert hot_store.acquire_lease("trades:2024-03-01", "h2", T0 + dt.timedelta(minutes=5), ttl) == "h1"
    assert hot_store.acquire_lease("accounts:2024-03-01", "h2", T0, ttl) is None  # another lease is independent
    assert hot_store.acquire_lease("trades:2024-03-01", "h2", T0 + dt.timedelta(minutes=12), ttl) is None  # expired
    hot_store.release_lease("trades:2024-03-01", "h1")  # no longer the holder: no effect
    assert hot_store.acquire_lease("trades:2024-03-01", "h1", T0 + dt.timedelta(minutes=13), ttl) == "h2"
    hot_store.release_lease("trades:2024-03-01", "h2")
    assert hot_store.acquire_lease("trades:2024-03-01", "h1", T0 + dt.timedelta(minutes=13), ttl) is None


def test_lease_heartbeat_extends_it_and_keeps_the_holders_process(hot_store: HotStore) -> None:
    ttl = dt.timedelta(minutes=5)
    name = "dispatch:trades:2024-03-02"
    assert hot_store.read_lease(name) is None
    assert hot_store.acquire_lease(name, "run-a", T0, ttl, host="box-1", pid=4242) is None
    lease = hot_store.read_lease(name)
    assert lease is not None
    assert (lease.holder, lease.host, lease.pid) == ("run-a", "box-1", 4242)
    assert as_datetime(lease.expires_at) == T0 + ttl and as_datetime(lease.heartbeat_at) == T0
    beat = T0 + dt.timedelta(minutes=4)
    assert hot_store.renew_lease(name, "run-a", beat, ttl) is True
    renewed = hot_store.read_lease(name)
    assert renewed is not None and (renewed.host, renewed.pid) == ("box-1", 4242)
    assert as_datetime(renewed.heartbeat_at) == beat and as_datetime(renewed.expires_at) == beat + ttl
    # 8 minutes after the start the first expiry has passed, but the heartbeat kept it until minute 9
    assert hot_store.acquire_lease(name, "run-b", T0 + dt.timedelta(minutes=8), ttl) == "run-a"
    assert hot_store.renew_lease(name, "run-b", T0 + dt.timedelta(minutes=8), ttl) is False  # not the holder
    assert hot_store.acquire_lease(name, "run-b", T0 + dt.timedelta(minutes=9, seconds=1), ttl) is None
    assert hot_store.renew_lease(name, "run-a", T0 + dt.timedelta(minutes=10), ttl) is False  # taken over
    assert hot_store.read_lease(name).holder == "run-b"  # type: ignore[union-attr]


def test_lease_take_over_is_a_compare_and_swap_on_the_dead_holder(hot_store: HotStore) -> None:
    ttl = dt.timedelta(minutes=5)
    name = "dispatch:accounts:2024-03-02"
    assert hot_store.acquire_lease(name, "run-dead", T0, ttl, host="box-1", pid=1) is None
    # a successor that found run-dead's process gone takes the live lease at once
    assert hot_store.acquire_lease(name, "run-b", T0, ttl, host="box-1", pid=2, take_over="run-dead") is None
    # a second successor that also saw run-dead is refused: run-b holds it now
    assert hot_store.acquire_lease(name, "run-c", T0, ttl, host="box-1", pid=3, take_over="run-dead") == "run-b"
    lease = hot_store.read_lease(name)
    assert lease is not None and (lease.holder, lease.pid) == ("run-b", 2)
    hot_store.release_lease(name, "run-b")
    assert hot_store.read_lease(name) is None
