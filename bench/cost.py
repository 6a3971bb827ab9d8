"""Case 4: what archiving one million records costs in production, from the operations counted in case 3.

The real-stack run (``bench.real_stack``) counts every billable operation the dispatcher and the
subscriber functions make against the emulators; here they are scaled to one million records and
priced at Google's list prices for the default locations in ``terraform/variables.tf`` (Firestore
``nam5``, BigQuery ``US``, functions in ``us-central1``). Free tiers are ignored (a large deployment
exceeds them). Function time is what the emulator run measured on this contended 2-core machine, so
the compute line is an upper bound; everything else is a count and does not depend on the machine.
"""

from __future__ import annotations

import math
from typing import Any

MIB, GIB, TIB = 2**20, 2**30, 2**40
PRICES_CHECKED = "2026-11-29"
PRICES: dict[str, dict[str, Any]] = {
    "firestore_read": {"usd": 0.06 / 100_000, "unit": "document read (nam5)",
                       "source": "https://cloud.google.com/firestore/pricing"},
    "firestore_write": {"usd": 0.18 / 100_000, "unit": "document write (nam5)",
                        "source": "https://cloud.google.com/firestore/pricing"},
    "pubsub_byte": {"usd": 40 / TIB, "unit": "byte of publish or delivery throughput (min 1000 B per request)",
                    "source": "https://cloud.google.com/pubsub/pricing"},
    "bigquery_streaming_byte": {"usd": 0.01 / (200 * MIB), "unit": "byte streamed by insertAll (min 1 KB per row)",
                                "source": "https://cloud.google.com/bigquery/pricing"},
    "bigquery_query_byte": {"usd": 6.25 / TIB, "unit": "byte scanned on demand (min 10 MB per query)",
                            "source": "https://cloud.google.com/bigquery/pricing"},
    "function_invocation": {"usd": 0.40 / 1_000_000, "unit": "request (Cloud Run functions, Tier 1)",
                            "source": "https://cloud.google.com/run/pricing"},
    "function_vcpu_second": {"usd": 0.000024, "unit": "vCPU-second (request-based billing, Tier 1)",
                             "source": "https://cloud.google.com/run/pricing"},
    "function_gib_second": {"usd": 0.0000025, "unit": "GiB-second (request-based billing, Tier 1)",
                            "source": "https://cloud.google.com/run/pricing"},
}
PUBLISH_BATCH = 100  # PubSubBus batches up to 100 messages per publish request
QUERY_MINIMUM_BYTES = 10 * 1_000_000  # "minimum 10 MB data processed per query"


def estimate(counts: dict[str, float], records: int = 1_000_000) -> dict[str, Any]:
    """Operations per ``records`` archived records and their price, from one real-stack run's counts."""
    n = counts["items"]
    scale = records / n

    def c(key: str) -> float:
        return float(counts.get(f"dispatcher_{key}", 0)) + float(counts.get(f"subscriber_{key}", 0))

    published = float(counts.get("dispatcher_pubsub_published", 0))
    publish_requests = math.ceil(published / PUBLISH_BATCH)
    publish_bytes = max(float(counts.get("dispatcher_pubsub_published_bytes", 0)), 1000.0 * publish_requests)
    # each subscriber-side publish (a dead letter) and each push delivery is a request of one message
    single_publishes = float(counts.get("subscriber_pubsub_published", 0))
    single_bytes = float(counts.get("subscriber_pubsub_published_bytes", 0))
    deliveries = float(counts.get("subscriber_function_invocations", 0))
    message_bytes = float(counts.get("dispatcher_pubsub_published_bytes", 0)) / max(1.0, published)
    pubsub_bytes = publish_bytes + max(single_bytes, 1000.0 * single_publishes) + deliveries * max(1000.0,
                                                                                                   message_bytes)
    vcpu, gib = float(counts.get("function_vcpu", 0.583)), float(counts.get("function_memory_gib", 1.0))
    billed = float(counts.get("subscriber_function_billed_seconds", 0)) + math.ceil(
        float(counts.get("dispatcher_seconds", 0)) * 10) / 10
    ops = {
        "firestore_reads": c("firestore_reads") * scale,
        "firestore_writes": c("firestore_writes") * scale,
        "pubsub_messages": (published + single_publishes + deliveries) * scale,
        "pubsub_billable_bytes": pubsub_bytes * scale,
        "bigquery_streamed_rows": c("bigquery_streamed_rows") * scale,
        "bigquery_streamed_billable_bytes": c("bigquery_streamed_billable_bytes") * scale,
        "bigquery_query_jobs": c("bigquery_query_jobs") * scale,
        "function_invocations": (deliveries + 1) * scale,
        "function_billed_seconds": billed * scale,
        "function_vcpu_seconds": billed * vcpu * scale,
        "function_gib_seconds": billed * gib * scale,
    }
    usd = {
        "firestore_reads": ops["firestore_reads"] * PRICES["firestore_read"]["usd"],
        "firestore_writes": ops["firestore_writes"] * PRICES["firestore_write"]["usd"],
        "pubsub": ops["pubsub_billable_bytes"] * PRICES["pubsub_byte"]["usd"],
        "bigquery_streaming": ops["bigquery_streamed_billable_bytes"] * PRICES["bigquery_streaming_byte"]["usd"],
        "bigquery_queries": ops["bigquery_query_jobs"] * QUERY_MINIMUM_BYTES * PRICES["bigquery_query_byte"]["usd"],
        "function_invocations": ops["function_invocations"] * PRICES["function_invocation"]["usd"],
        "function_compute": ops["function_vcpu_seconds"] * PRICES["function_vcpu_second"]["usd"]
        + ops["function_gib_seconds"] * PRICES["function_gib_second"]["usd"],
    }
    return {"operations": {k: round(v, 1) for k, v in ops.items()},
            "usd": {k: round(v, 4) for k, v in usd.items()}, "total_usd": round(sum(usd.values()), 2)}


def row(real: dict[str, Any] | None) -> dict[str, Any]:
    """The ``cost`` row of ``results.json`` from the real-stack median result (or why there is none)."""
    out: dict[str, Any] = {"case": "cost", "n": 1_000_000, "seconds": None, "items_per_s": None,
                           "peak_rss_mib": None}
    if not real or "counts" not in real:
        reason = (real or {}).get("skipped") or (real or {}).get("error") or "the real-stack case did not run"
        return {**out, "skipped": f"no operation counts: {reason}"}
    priced = estimate(real["counts"])
    return {
        **out, "usd_per_million": priced["total_usd"], "breakdown_usd": priced["usd"],
        "operations_per_million": priced["operations"], "counted_on_items": real["counts"]["items"],
        "prices": {k: {"usd": v["usd"], "unit": v["unit"]} for k, v in PRICES.items()},
        "prices_checked": PRICES_CHECKED, "prices_sources": sorted({v["source"] for v in PRICES.values()}),
    }


def describe(r: dict[str, Any]) -> str:
    """Human-readable cost lines for the printed table."""
    parts = ", ".join(f"{k} ${v:,.2f}" for k, v in sorted(r["breakdown_usd"].items(), key=lambda kv: -kv[1]))
    ops = r["operations_per_million"]
    return (
        f"Cost per 1M archived records ({r['version']}): ${r['usd_per_million']:,.2f} = {parts}.\n"
        f"  Per record: {ops['firestore_reads'] / 1e6:.2f} Firestore reads, {ops['firestore_writes'] / 1e6:.2f} "
        f"writes, {ops['pubsub_messages'] / 1e6:.2f} Pub/Sub messages, {ops['bigquery_query_jobs'] / 1e6:.2f} "
        f"BigQuery query jobs, {ops['function_billed_seconds'] / 1e6 * 1000:.0f} ms billed function time "
        f"(counted on {r['counted_on_items']:,} items).\n"
        f"  List prices checked {r['prices_checked']} (defaults of terraform/variables.tf: Firestore nam5, BigQuery "
        f"US, us-central1; free tiers ignored): {', '.join(r['prices_sources'])}."
    )
