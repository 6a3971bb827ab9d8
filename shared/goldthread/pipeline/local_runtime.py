"""The local deployment: wire the embedded bus the way Terraform wires Pub/Sub in production.

Each loop's topic gets a subscription whose handler is the same subscriber code a Cloud Function
runs, with the same retry and dead-letter policy; the dead-letter topic gets the dead-letter sink.
Locally the subscription takes batches so a large backfill is fast; every message in a batch still
has its own ack, retry and dead-letter fate. The subscription hands the subscriber the messages
themselves (``process_messages``), as a streaming-pull client would, instead of wrapping each in the
CloudEvent envelope a deployed function receives and unwrapping it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
from collections.abc import Callable, Iterator, Sequence

from goldthread.adapters.local_bus import LocalBus
from goldthread.ledger import runs
from goldthread.models.hot import JobMetadata
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context
from goldthread.pipeline.dead_letters import handle_dead_letter
from goldthread.pipeline.dispatcher import dispatch
from goldthread.pipeline.subscriber import process_messages
from goldthread.ports.bus import BusMessage, message_from_event

DRAIN_BACKLOG = 10_000  # messages waiting on the local bus before run_loop delivers them mid-dispatch


def wire_local_bus(
    ctx: Context, batch_size: int = 2000, min_backoff: float | None = None, max_backoff: float | None = None
) -> LocalBus:
    """Subscribe every loop's subscriber and the dead-letter sink to the context's ``LocalBus``.

    The retry policy is Pub/Sub's, from the settings Terraform also deploys (``GOLDTHREAD_RETRY_MIN_BACKOFF_SECONDS``
    / ``..._MAX_...``, 10 s and 600 s by default), so a transient failure (a broker 503, a store briefly
    busy) gets the same minutes to heal locally as in the cloud before its item is dead-lettered. Tests
    pass ``min_backoff=0`` to retry at once.
    """
    settings = ctx.settings
    low = settings.retry_min_backoff.total_seconds() if min_backoff is None else min_backoff
    if max_backoff is None:
        max_backoff = settings.retry_max_backoff.total_seconds() if min_backoff is None else min_backoff * 64
    high = max(low, max_backoff)
    bus = ctx.bus
    if not isinstance(bus, LocalBus):
        raise TypeError("wire_local_bus needs the embedded LocalBus")
    if settings.subscription(Loop.TRADES) in getattr(bus, "_subscriptions", {}):
        return bus

    def subscriber(messages: Sequence[BusMessage]) -> list[BaseException | None]:
        return process_messages(ctx, messages)

    for loop in Loop:
        bus.subscribe(
            settings.topic(loop), settings.subscription(loop), message_handler=subscriber,
            max_delivery_attempts=settings.max_delivery_attempts, dead_letter_topic=settings.dead_letter_topic,
            min_backoff=low, max_backoff=high, batch_size=batch_size,
        )
    bus.subscribe(
        settings.dead_letter_topic, f"{settings.dead_letter_topic}-sink",
        handler=lambda event: handle_dead_letter(ctx, message_from_event(event)),
        max_delivery_attempts=settings.max_delivery_attempts, min_backoff=low, max_backoff=high,
    )
    return bus


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """A run allocates millions of short-lived objects that reference counting frees at once; at CPython's
    default gen-0 threshold (700) the cyclic collector would also re-traverse every long-lived object
    thousands of times (11% of Loop A at 100k, ``python -m bench.fast_paths --only gc``). During the run,
    what already exists is frozen out of the collector and gen 0 is collected every 50,000 allocations;
    both are restored afterwards (``test_fast_paths``). No full collection first: at ~40 ms each, the
    demo's 78 runs spent a third of their time in it, and garbage frozen with the rest is collectable
    again once unfrozen."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_loop(
    ctx: Context,
    loop: Loop | str,
    ds: dt.date,
    progress: Callable[[int, int], None] | None = None,
    sweep: bool | None = None,
) -> JobMetadata:
    """Dispatch one loop for one day and, on the local bus, deliver everything it published.

    As Pub/Sub does, subscribers start while the dispatcher is still publishing: whenever
    ``DRAIN_BACKLOG`` messages are waiting they are delivered, so a million-record backfill never holds
    a million messages in memory. The run still finishes only once the dispatch has recorded its count.
    """
    bus = ctx.bus
    if not isinstance(bus, LocalBus):
        run = dispatch(ctx, loop, ds, progress, sweep)
    else:
        def drain(published: int, total: int) -> None:
            if bus.backlog >= DRAIN_BACKLOG:
                bus.run_until_idle()
            if progress:
                progress(published, total)

        with fewer_gc_passes():
            run = dispatch(ctx, loop, ds, drain, sweep)
            bus.run_until_idle()
    final = runs.get_run(ctx, run.run_id)
    assert final is not None
    return final
