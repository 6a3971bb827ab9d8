"""The SQLite hot store beyond the cross-adapter contract: one file shared by several connections.

Proves WAL mode, that a second connection (a bot beside the loops) sees committed writes, that claims,
outcome counters and leases stay exactly-once when two connections race, that documents survive a
reopen, and that the writer's documents round-trip exactly (decimals as text, bookkeeping fields
stored as explicit nulls so ``== None`` queries find them). Non-finite numbers are kept but SchemaGuardian
refuses them; naive timestamps are refused on write.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from goldthread.adapters.sqlite_hot_store import SqliteHotStore
from goldthread.errors import RecordValidationError
from goldthread.models import LivePosition, SchemaGuardian
from goldthread.ports.hot_store import Where
from goldthread.writer import POSITIONS, HotWriter, document_of

UTC = dt.UTC
T = dt.datetime(2024, 3, 5, 15, tzinfo=UTC)


def closed_position(position_id: str = "pos-1", **over: object) -> LivePosition:
    data: dict[str, object] = {
        "position_id": position_id, "signal_id": "sig-1", "strategy_id": "momo", "strategy_version": "1.0",
        "symbol": "BTC/USD", "asset_class": "crypto", "side": "short", "qty": Decimal("0.123456789"),
        "entry_order_id": "o-1", "exit_order_id": "o-2", "entry_filled_avg_price": Decimal("61234.5678"),
        "exit_filled_avg_price": Decimal("60000.0001"), "opened_at": T, "closed_at": T + dt.timedelta(hours=3),
        "status": "CLOSED", "est_fee_usd": Decimal("0.000000001"),
    }
    data.update(over)
    return LivePosition.model_validate(data)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "hot.sqlite"


def test_file_is_in_wal_mode(path: Path) -> None:
    store = SqliteHotStore(path)
    store.put("c", "a", {"x": 1})
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.with_name(path.name + "-wal").exists()
    other.close()
    store.close()


def test_a_second_connection_sees_committed_writes_while_the_first_is_open(path: Path) -> None:
    bot, loops = SqliteHotStore(path), SqliteHotStore(path)
    bot.put("live_positions", "p1", {"status": "OPEN"})
    assert loops.get("live_positions", "p1") == {"status": "OPEN"}
    loops.update("live_positions", "p1", {"archived_run_id": "r1"})
    assert bot.get("live_positions", "p1") == {"status": "OPEN", "archived_run_id": "r1"}
    assert [i for i, _ in bot.query("live_positions", [Where("archived_run_id", "==", "r1")])] == ["p1"]
    bot.close()
    loops.close()


def test_a_reader_is_not_blocked_by_an_open_write_transaction(path: Path) -> None:
    store, reader = SqliteHotStore(path), SqliteHotStore(path)
    store.put("c", "a", {"v": 1})
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("UPDATE docs SET data = json_set(data, '$.v', 2) WHERE id = 'a'")
    assert reader.get("c", "a") == {"v": 1}  # WAL: readers see the last commit, and do not wait
    raw.execute("COMMIT")
    assert reader.get("c", "a") == {"v": 2}
    raw.close()
    store.close()
    reader.close()


def test_documents_survive_a_reopen(path: Path) -> None:
    store = SqliteHotStore(path)
    store.put_many("c", {f"d{i}": {"i": i} for i in range(50)})
    store.put("job_metadata", "r1", {"loaded": 0})
    store.record_outcomes("r1", {"x": "loaded"})
    store.close()
    again = SqliteHotStore(path)
    assert len(list(again.query("c"))) == 50
    assert again.item_outcomes("r1") == {"x": "loaded"}
    again.close()


def test_racing_claims_from_two_connections_mark_each_document_once(path: Path) -> None:
    setup = SqliteHotStore(path)
    ids = [f"p{i:03d}" for i in range(300)]
    setup.put_many("live_positions", {i: {"archived_run_id": None} for i in ids})
    stores = [SqliteHotStore(path), SqliteHotStore(path)]
    won: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def claim(n: int) -> None:
        barrier.wait()
        for start in range(0, len(ids), 25):  # many small transactions, interleaving with the other side
            won[n].extend(stores[n].claim("live_positions", ids[start : start + 25], "archived_run_id", f"run-{n}"))

    threads = [threading.Thread(target=claim, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won[0] + won[1]) == ids
    assert not set(won[0]) & set(won[1])
    for n in (0, 1):
        for doc_id in won[n]:
            assert setup.get("live_positions", doc_id) == {"archived_run_id": f"run-{n}"}
    for s in (setup, *stores):
        s.close()


def test_racing_outcomes_from_two_connections_count_each_item_once(path: Path) -> None:
    setup = SqliteHotStore(path)
    setup.put("job_metadata", "run-1", {"loaded": 0, "duplicates": 0, "dead_lettered": 0})
    stores = [SqliteHotStore(path), SqliteHotStore(path)]
    added = [0, 0]
    barrier = threading.Barrier(2)

    def record(n: int) -> None:
        barrier.wait()
        for i in range(100):  # both sides record the same 100 items, one side as loaded, one as duplicates
            got = stores[n].record_outcomes("run-1", {f"trades:p{i}": "loaded" if n == 0 else "duplicates"})
            added[n] += sum(got.added.values())

    threads = [threading.Thread(target=record, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert added[0] + added[1] == 100
    doc = setup.get("job_metadata", "run-1")
    assert doc is not None
    assert doc["loaded"] + doc["duplicates"] == 100 and doc["dead_lettered"] == 0
    assert doc["loaded"] == added[0] and doc["duplicates"] == added[1]
    assert len(setup.item_outcomes("run-1")) == 100
    for s in (setup, *stores):
        s.close()


def test_lease_is_shared_across_connections(path: Path) -> None:
    a, b = SqliteHotStore(path), SqliteHotStore(path)
    ttl = dt.timedelta(minutes=5)
    assert a.acquire_lease("dispatch:trades:2024-03-05", "run-a", T, ttl) is None
    assert b.acquire_lease("dispatch:trades:2024-03-05", "run-b", T + dt.timedelta(minutes=4), ttl) == "run-a"
    b.release_lease("dispatch:trades:2024-03-05", "run-b")  # not the holder: nothing happens
    assert b.acquire_lease("dispatch:trades:2024-03-05", "run-b", T + dt.timedelta(minutes=4), ttl) == "run-a"
    assert b.acquire_lease("dispatch:trades:2024-03-05", "run-b", T + dt.timedelta(minutes=5, seconds=1), ttl) is None
    assert a.acquire_lease("dispatch:trades:2024-03-05", "run-a", T + dt.timedelta(minutes=6), ttl) == "run-b"
    a.close()
    b.close()


def test_writer_documents_round_trip_exactly(path: Path) -> None:
    store = SqliteHotStore(path)
    original = closed_position()
    HotWriter(store).save_position(original)
    stored = store.get(POSITIONS, "pos-1")
    assert stored is not None
    assert stored["qty"] == "0.123456789"  # decimals are stored as exact text, never as floats
    assert isinstance(stored["est_fee_usd"], str) and Decimal(stored["est_fee_usd"]) == Decimal("0.000000001")
    assert stored["opened_at"] == "2024-03-05T15:00:00.000000+00:00"
    assert not {"archived_run_id", "dead_lettered_run_id"} & set(stored)  # goldthread's marks live in its ledger
    assert SchemaGuardian.validate(LivePosition, stored, "pos-1") == original
    due = [i for i, _ in store.query(POSITIONS, [Where("status", "==", "CLOSED")])]
    assert due == ["pos-1"]
    store.close()


def test_claim_sets_its_companion_fields_and_timestamps_compare_as_text(path: Path) -> None:
    store = SqliteHotStore(path)
    store.put(POSITIONS, "p1", document_of(closed_position("p1")))
    assert store.claim(POSITIONS, ["p1", "missing"], "archived_run_id", "r1", also={"archived_at": T}) == ["p1"]
    doc = store.get(POSITIONS, "p1")
    assert doc is not None and doc["archived_run_id"] == "r1"
    assert doc["archived_at"] == "2024-03-05T15:00:00.000000+00:00"
    later = [i for i, _ in store.query(POSITIONS, [Where("closed_at", ">", T + dt.timedelta(hours=2, minutes=59))])]
    assert later == ["p1"]
    store.close()


def test_non_finite_numbers_are_kept_and_then_refused_by_schema_guardian(path: Path) -> None:
    store = SqliteHotStore(path)
    doc = {**document_of(closed_position()), "qty": float("nan"), "est_fee_usd": float("inf")}
    store.put(POSITIONS, "pos-nan", doc)
    stored = store.get(POSITIONS, "pos-nan")
    assert stored is not None and stored["qty"] == "NaN" and stored["est_fee_usd"] == "Infinity"
    with pytest.raises(RecordValidationError) as info:
        SchemaGuardian.validate(LivePosition, stored, "pos-nan")
    assert {e["loc"] for e in info.value.errors} == {"qty", "est_fee_usd"}
    store.close()


def test_naive_datetimes_and_unsafe_field_paths_are_refused(path: Path) -> None:
    store = SqliteHotStore(path)
    with pytest.raises(ValueError, match="naive datetime"):
        store.put("c", "a", {"at": dt.datetime(2024, 3, 5)})  # naive: refused, never stored ambiguously
    assert store.get("c", "a") is None
    with pytest.raises(ValueError):
        list(store.query("c", [Where("x') OR 1=1 --", "==", 1)]))
    with pytest.raises(KeyError):
        store.update("c", "nope", {"x": 1})
    assert store.get("c", "nope") is None
    store.close()
