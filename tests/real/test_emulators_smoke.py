"""The real local servers start, answer, behave as production on the points goldthread relies on, and
stop without leaving processes behind."""

from __future__ import annotations

import datetime as dt
import json
import os
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support import emulators
from tests.support.emulators import ManagedProcess

pytestmark = pytest.mark.emulator


def _wait_for(predicate, seconds: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {seconds} s")


def test_firestore_emulator_serves_and_resets(firestore_emulator: ManagedProcess, firestore_project: str) -> None:
    from google.cloud import firestore

    assert os.environ["FIRESTORE_EMULATOR_HOST"] == firestore_emulator.host_port
    client = firestore.Client(project=firestore_project)
    client.collection("c").document("d").set({"n": 1})
    assert client.collection("c").document("d").get().to_dict() == {"n": 1}
    emulators.reset_firestore(firestore_emulator.host_port, firestore_project)
    assert not client.collection("c").document("d").get().exists


def test_pubsub_dead_letter_and_replay(pubsub_emulator: ManagedProcess, unique_name: str) -> None:
    """A message nacked ``max_delivery_attempts`` times lands on the dead-letter topic with Pub/Sub's
    ``CloudPubSubDeadLetterSource*`` attributes; replay republishes it and only then acks it."""
    from goldthread.adapters.pubsub_bus import PubSubBus, PulledMessage, ensure_subscription, ensure_topic

    project = "goldthread-test"
    topic, dead, sub, dead_sub = (f"{unique_name}-{s}" for s in ("work", "dead", "work-sub", "dead-sub"))
    ensure_topic(project, topic)
    ensure_topic(project, dead)
    ensure_subscription(project, dead_sub, dead)
    ensure_subscription(
        project, sub, topic, dead_letter_topic=dead, max_delivery_attempts=5,
        min_backoff=dt.timedelta(0), max_backoff=dt.timedelta(0), ack_deadline_seconds=10,
    )
    bus = PubSubBus(project)
    try:
        message_id = bus.publish(topic, b'{"doc_id": "x"}', {"run_id": "r1"})
        attempts: list[int] = []

        def nack_until_dead_lettered() -> list[PulledMessage]:
            # the emulator moves a message to the dead-letter topic lazily, on a later pull of the
            # source subscription, so keep pulling it (and nacking) until the dead letter shows up
            pulled = bus.pull(sub, max_messages=10, timeout=1)
            attempts.extend(p.message.delivery_attempt for p in pulled)
            bus.nack(sub, [p.ack_id for p in pulled])
            return bus.pull_dead_letters(dead_sub, 10, timeout=1)

        dead_letters = _wait_for(nack_until_dead_lettered, seconds=60, what="a dead letter")
        assert attempts == [1, 2, 3, 4, 5]
        assert len(dead_letters) == 1
        letter = dead_letters[0].message
        assert letter.data == b'{"doc_id": "x"}'
        assert letter.attributes["run_id"] == "r1"
        assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
        assert letter.attributes["CloudPubSubDeadLetterSourceSubscription"] == sub

        replayed_id = bus.publish(topic, letter.data, {"run_id": "r1", "replay_of": message_id})
        assert replayed_id
        bus.ack(dead_sub, [dead_letters[0].ack_id])
        again = _wait_for(lambda: bus.pull(sub, 10, timeout=2), what="the replayed message")
        assert [p.message.attributes.get("replay_of") for p in again] == [message_id]
        bus.ack(sub, [p.ack_id for p in again])
        assert bus.pull(dead_sub, 10, timeout=1) == []
    finally:
        bus.close()


def test_bqemulator_load_job_merge_and_dedup_view(bigquery_emulator: ManagedProcess, unique_name: str) -> None:
    """The shims work (load jobs with ``*/*`` media), tables are partitioned and clustered, and a key
    streamed twice without an insertId shows once through the ``_dedup`` view."""
    from goldthread.adapters.bigquery_warehouse import BigQueryWarehouse, json_row
    from goldthread.models.warehouse import MarketBar

    warehouse = BigQueryWarehouse("goldthread-test", unique_name, tables=(MarketBar,))
    assert warehouse.endpoint == bigquery_emulator.url
    warehouse.ensure_tables()
    table = warehouse.client.get_table(warehouse.table_id("market_bars"))
    assert table.time_partitioning.field == "ds"
    assert table.clustering_fields == ["symbol", "timeframe"]

    bar = MarketBar(
        row_id="k1", ds=dt.date(2024, 1, 2), symbol="AAPL", timeframe="1Min",
        ts=dt.datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=dt.UTC), open=Decimal("1.000000001"),
        high=Decimal("2"), low=Decimal("1"), close=Decimal("1.5"), volume=Decimal("100"), source="sim",
    )
    load = warehouse.client.load_table_from_json([json_row(bar)], warehouse.table_id("market_bars"))
    load.result()
    assert warehouse.client.insert_rows_json(warehouse.table_id("market_bars"), [json_row(bar)]) == []
    assert warehouse.query("SELECT COUNT(*) AS n FROM market_bars")[0]["n"] == 2
    assert warehouse.query("SELECT COUNT(*) AS n FROM market_bars_dedup")[0]["n"] == 1
    assert [r["open"] for r in warehouse.get_rows(MarketBar, ["k1"])] == [Decimal("1.000000001")]


def test_functions_framework_receives_pubsub_push(
    pubsub_emulator: ManagedProcess, unique_name: str, tmp_path: Path
) -> None:
    """A push subscription to a ``functions-framework`` CloudEvent function delivers the production
    event: type messagePublished, base64 data and the attributes."""
    from goldthread.adapters.pubsub_bus import PubSubBus, ensure_subscription, ensure_topic

    out = tmp_path / "events.jsonl"
    source = tmp_path / "main.py"
    source.write_text(
        textwrap.dedent(
            f"""
            import json
            import functions_framework

            @functions_framework.cloud_event
            def record(event):
                with open({str(out)!r}, "a") as f:
                    f.write(json.dumps({{"type": event["type"], "data": event.data}}) + "\\n")
            """
        )
    )
    function = emulators.start_function("record", source=source)
    project = "goldthread-test"
    try:
        ensure_topic(project, unique_name)
        ensure_subscription(project, f"{unique_name}-push", unique_name, push_endpoint=f"{function.url}/")
        bus = PubSubBus(project)
        message_id = bus.publish(unique_name, b"hello", {"loop": "trades"})
        bus.close()
        lines = _wait_for(lambda: out.exists() and out.read_text().splitlines(), what="a pushed event")
        event = json.loads(lines[0])
        assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
        assert event["data"]["message"]["data"] == "aGVsbG8="
        assert event["data"]["message"]["attributes"] == {"loop": "trades"}
        assert event["data"]["message"]["messageId"] == message_id
    finally:
        function.stop()
    assert not function.alive()


def test_stop_kills_the_whole_process_group() -> None:
    """``gcloud`` starts a JVM as a child; ``stop`` must take it down too."""
    reason = emulators.missing_requirement("pubsub")
    if reason:
        pytest.skip(reason)
    proc = emulators.start_pubsub()
    pgid = proc.process.pid
    assert len(emulators.group_members(pgid)) >= 2  # gcloud and its JVM
    proc.stop()
    assert emulators.group_members(pgid) == []


def test_missing_binary_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = emulators.missing_requirement("firestore")
    assert reason is not None and "gcloud" in reason


# -- the cloud adapters' own promises beyond the port contract (tests/contracts) ---------------------


def test_concurrent_claims_and_outcomes_never_double_count(firestore_project: str) -> None:
    """Two workers claiming the same documents and recording the same items at once: every document is
    claimed by exactly one, every item counted once."""
    from concurrent.futures import ThreadPoolExecutor

    from goldthread.adapters.firestore_hot_store import FirestoreHotStore

    stores = [FirestoreHotStore(firestore_project) for _ in range(2)]
    doc_ids = [f"p{i:02d}" for i in range(20)]
    for doc_id in doc_ids:
        stores[0].put("live_positions", doc_id, {"status": "CLOSED", "archived_run_id": None})
    stores[0].put("job_metadata", "run-c", {"state": "RUNNING"})
    outcomes = {doc_id: "loaded" for doc_id in doc_ids}
    with ThreadPoolExecutor(2) as pool:
        claims = list(pool.map(lambda s: s[1].claim("live_positions", doc_ids, "archived_run_id", f"run-{s[0]}"),
                               enumerate(stores)))
        added = list(pool.map(lambda s: s.record_outcomes("run-c", outcomes), stores))
    assert sorted(claims[0] + claims[1]) == doc_ids
    assert sum(a.added["loaded"] for a in added) == 20
    doc = stores[0].get("job_metadata", "run-c")
    assert doc is not None and doc["loaded"] == 20
    for store in stores:
        store.close()


def test_firestore_refuses_what_it_cannot_store_exactly(firestore_project: str) -> None:
    from goldthread.adapters.firestore_hot_store import FirestoreHotStore
    from goldthread.errors import ConfigError
    from goldthread.ports.hot_store import Where

    store = FirestoreHotStore(firestore_project)
    with pytest.raises(ValueError, match="naive"):
        store.put("live_signals", "a", {"t": dt.datetime(2024, 1, 1)})
    with pytest.raises(ConfigError, match="decimal"):
        list(store.query("live_signals", [Where("signal_price", ">", Decimal("1"))]))
    store.close()


def test_vendor_errors_are_translated_at_the_boundary(
    pubsub_emulator: ManagedProcess, bigquery_emulator: ManagedProcess, unique_name: str
) -> None:
    """Missing topic -> ConfigError; bad SQL -> PermanentError; a server that is down -> TransientError."""
    from goldthread.adapters.bigquery_warehouse import BigQueryWarehouse
    from goldthread.adapters.firestore_hot_store import FirestoreHotStore
    from goldthread.adapters.pubsub_bus import PubSubBus
    from goldthread.errors import ConfigError, PermanentError, StoreUnavailableError, TransientError
    from goldthread.models.warehouse import MarketBar

    bus = PubSubBus("goldthread-test", timeout=10)
    with pytest.raises(ConfigError) as missing_topic:
        bus.publish(f"{unique_name}-missing", b"x", {})
    assert missing_topic.value.__cause__ is not None
    bus.close()

    warehouse = BigQueryWarehouse("goldthread-test", unique_name, tables=(MarketBar,))
    warehouse.ensure_tables()
    with pytest.raises(PermanentError):
        warehouse.query("SELEC nonsense FROM market_bars")

    dead_port = emulators.free_port()
    down = BigQueryWarehouse(
        "goldthread-test", unique_name, endpoint=f"http://127.0.0.1:{dead_port}", timeout=2, retry_deadline=2
    )
    with pytest.raises(TransientError):
        down.query("SELECT 1 AS one")

    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{dead_port}"
    try:
        store = FirestoreHotStore("goldthread-test", timeout=2, retry_deadline=2)
        with pytest.raises(StoreUnavailableError) as unreachable:
            store.get("c", "d")
        assert unreachable.value.__cause__ is not None
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


def test_bigquery_upsert_leaves_no_staging_table_and_tables_have_dedup_views(
    bigquery_emulator: ManagedProcess, unique_name: str
) -> None:
    from goldthread.adapters.bigquery_warehouse import BigQueryWarehouse
    from goldthread.models.warehouse import MarketBar

    warehouse = BigQueryWarehouse("goldthread-test", unique_name)
    warehouse.ensure_tables()
    bar = MarketBar(
        row_id="k1", ds=dt.date(2024, 1, 2), symbol="AAPL", timeframe="1Min",
        ts=dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC), open=Decimal("1"), high=Decimal("2"),
        low=Decimal("1"), close=Decimal("1.5"), volume=Decimal("100"), source="sim",
    )
    assert warehouse.upsert_rows(MarketBar, [bar], ["close"]) == 1
    names = {t.table_id for t in warehouse.client.list_tables(f"goldthread-test.{unique_name}")}
    assert not [n for n in names if n.startswith("_staging_")]
    from goldthread.models.warehouse import ALL_TABLES

    assert {f"{m.__table__}_dedup" for m in ALL_TABLES} <= names


def test_reset_pubsub_removes_every_topic_and_subscription(pubsub_emulator: ManagedProcess, unique_name: str) -> None:
    from goldthread.adapters.pubsub_bus import ensure_subscription, ensure_topic
    from google.cloud import pubsub_v1

    project = f"reset-{unique_name}"
    ensure_topic(project, f"{unique_name}-a")
    ensure_subscription(project, f"{unique_name}-a-sub", f"{unique_name}-a")
    emulators.reset_pubsub(project, pubsub_emulator.host_port)
    publisher = pubsub_v1.PublisherClient()
    assert list(publisher.list_topics(request={"project": f"projects/{project}"})) == []
    assert os.environ["PUBSUB_EMULATOR_HOST"] == pubsub_emulator.host_port
