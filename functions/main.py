"""Cloud Functions entry points (2nd gen). Thin by design: every body lives in ``goldthread``.

Deployed with ``functions/``, ``shared/goldthread`` and ``requirements.txt`` in one source archive
(see ``terraform/``). Locally: ``functions-framework --source functions/main.py --target <name>``.
"""

from __future__ import annotations

from typing import Any

import functions_framework
from goldthread import entrypoints


@functions_framework.http
def dispatch(request: Any) -> Any:
    """Scheduler -> publish one work item per record of a loop and day."""
    return entrypoints.dispatch_http(request)


@functions_framework.cloud_event
def subscribe_trades(cloud_event: Any) -> None:
    """Pub/Sub ``goldthread-trades`` -> ``fact_trades`` (Loop A)."""
    entrypoints.subscribe(cloud_event)


@functions_framework.cloud_event
def subscribe_rejected_signals(cloud_event: Any) -> None:
    """Pub/Sub ``goldthread-rejected-signals`` -> ``fact_rejected_signals`` (Loop B)."""
    entrypoints.subscribe(cloud_event)


@functions_framework.cloud_event
def subscribe_expired_signals(cloud_event: Any) -> None:
    """Pub/Sub ``goldthread-expired-signals`` -> ``fact_signals_expired`` (Loop C)."""
    entrypoints.subscribe(cloud_event)


@functions_framework.cloud_event
def subscribe_accounts(cloud_event: Any) -> None:
    """Pub/Sub ``goldthread-accounts`` -> ``snapshot_accounts`` (Loop D)."""
    entrypoints.subscribe(cloud_event)


@functions_framework.cloud_event
def dead_letter_sink(cloud_event: Any) -> None:
    """Pub/Sub ``goldthread-dead-letters`` -> ``dead_letters`` (items the bus gave up on)."""
    entrypoints.dead_letter_sink(cloud_event)


@functions_framework.http
def replay(request: Any) -> Any:
    """By hand -> republish dead letters that now pass validation."""
    return entrypoints.replay_http(request)


@functions_framework.http
def patch_fees(request: Any) -> Any:
    """Scheduler (T+1) -> replace estimated fees with the broker's posted fees in ``fact_trades``."""
    return entrypoints.patch_fees_http(request)


@functions_framework.http
def patch_prices(request: Any) -> Any:
    """Scheduler or by hand -> repair missing or zero fill prices from the broker's orders."""
    return entrypoints.patch_prices_http(request)


@functions_framework.http
def canary(request: Any) -> Any:
    """Scheduler (hourly) -> send a canary record along the Golden Thread and time every hop."""
    return entrypoints.canary_http(request)
