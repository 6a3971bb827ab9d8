"""What each Cloud Function does, as plain functions over one per-instance ``Context``.

``functions/main.py`` only decorates these for functions-framework; the local runner, the tests and
a deployed function therefore run the same code. HTTP functions take a JSON body and answer JSON;
CloudEvent functions raise to make Pub/Sub retry (transient failures) and return to acknowledge.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from goldthread import logs
from goldthread.errors import ConcurrentRunError, ConfigError, GoldthreadError, NotReadyError
from goldthread.models.work_items import Loop
from goldthread.pipeline.context import Context

_context: Context | None = None
log = logs.get_logger("functions")


def context() -> Context:
    """The instance-wide context, built from the environment on first use and reused after."""
    global _context
    if _context is None:
        logs.configure()
        _context = Context()
    return _context


def reset_context(ctx: Context | None = None) -> None:
    """Replace the instance context (tests, local servers)."""
    global _context
    _context = ctx


def _body(request: Any) -> dict[str, Any]:
    data = request.get_json(silent=True) if hasattr(request, "get_json") else None
    return data if isinstance(data, dict) else {}


def day_from(body: dict[str, Any], now: dt.datetime) -> dt.date:
    """``ds`` from a request: an explicit ``ds`` or ``ds_offset_days`` relative to today (UTC)."""
    if body.get("ds"):
        try:
            return dt.date.fromisoformat(str(body["ds"]))
        except ValueError as exc:
            raise ConfigError(f"ds {body['ds']!r} is not a YYYY-MM-DD date") from exc
    try:
        offset = int(body.get("ds_offset_days", -1))
    except (TypeError, ValueError) as exc:
        raise ConfigError("ds_offset_days must be an integer") from exc
    return now.date() + dt.timedelta(days=offset)


def http_call(
    work: Callable[[Context, dict[str, Any]], dict[str, Any]], request: Any
) -> tuple[str, int, dict[str, str]]:
    """Run ``work`` for an HTTP request and map goldthread errors to status codes."""
    headers = {"Content-Type": "application/json"}
    try:
        result = work(context(), _body(request))
        return json.dumps(result, default=str), 200, headers
    except ConcurrentRunError as exc:
        return json.dumps({"error": str(exc)}), 409, headers
    except NotReadyError as exc:
        return json.dumps({"error": str(exc), "not_ready": True}), 425, headers
    except ConfigError as exc:
        return json.dumps({"error": str(exc)}), 400, headers
    except GoldthreadError as exc:
        log.exception("function failed: %s", exc)
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"}), 500, headers


def _dispatch(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    from goldthread.pipeline.dispatcher import dispatch

    try:
        loop = Loop(str(body.get("loop", "")))
    except ValueError as exc:
        raise ConfigError(f"unknown loop {body.get('loop')!r}; one of {[x.value for x in Loop]}") from exc
    sweep = body.get("sweep")
    if sweep is not None and not isinstance(sweep, bool):
        raise ConfigError(f"sweep must be true or false, not {sweep!r}")
    run = dispatch(ctx, loop, day_from(body, ctx.now()), sweep=sweep)
    return run.model_dump(mode="json")


def dispatch_http(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP (scheduler): ``{"loop": "trades", "ds": "2024-01-05"}`` or ``{"loop": ..., "ds_offset_days": -1}``;
    ``"sweep": true`` reads the whole collection whatever the sweep schedule."""
    return http_call(_dispatch, request)


def subscribe(cloud_event: Any) -> None:
    """Pub/Sub-triggered subscriber of any loop: archive the work item, or raise so Pub/Sub retries."""
    from goldthread.pipeline.subscriber import handle_events

    outcome = handle_events(context(), [cloud_event])[0]
    if outcome is not None:
        raise outcome


def dead_letter_sink(cloud_event: Any) -> None:
    """Pub/Sub-triggered on the dead-letter topic: record what the bus dead-lettered."""
    from goldthread.pipeline.dead_letters import handle_dead_letter
    from goldthread.ports.bus import message_from_event

    handle_dead_letter(context(), message_from_event(cloud_event))


def _replay(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    from goldthread.pipeline.replay import replay

    ids = body.get("ids")
    report = replay(
        ctx, loop=body.get("loop"), reason=body.get("reason"),
        ids=[str(i) for i in ids] if isinstance(ids, list) else None, dry_run=bool(body.get("dry_run")),
    )
    return {
        "would_pass": len(report.would_pass), "still_failing": report.still_failing,
        "not_replayable": report.not_replayable, "run": report.run.model_dump(mode="json") if report.run else None,
    }


def replay_http(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP (by hand): ``{"loop": ..., "reason": ..., "ids": [...], "dry_run": true}``."""
    return http_call(_replay, request)


def _patch_fees(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    from goldthread.patches.fee_patch import patch_fees

    report = patch_fees(ctx, day_from(body, ctx.now()), dry_run=bool(body.get("dry_run")))
    return {
        "changes": len(report.changes), "unchanged": report.unchanged, "unfinalised": report.unfinalised,
        "days": report.days, "run": report.run.model_dump(mode="json") if report.run else None,
    }


def patch_fees_http(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP (scheduler, T+1): ``{"ds_offset_days": -1}`` or ``{"ds": ...}``; ``"dry_run": true`` writes nothing."""
    return http_call(_patch_fees, request)


def _patch_prices(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    from goldthread.patches.price_patch import patch_prices

    report = patch_prices(ctx, dry_run=bool(body.get("dry_run")))
    return {
        "changes": report.changes, "unfilled": report.unfilled, "fact_trades_corrected": report.warehouse_rows,
        "run": report.run.model_dump(mode="json") if report.run else None,
    }


def patch_prices_http(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP (scheduler or by hand): repair missing fill prices; ``{"dry_run": true}`` writes nothing."""
    return http_call(_patch_prices, request)


def _canary(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    from goldthread.bi.canary import run_canary

    try:
        timeout = float(body.get("timeout_seconds", 60))
    except (TypeError, ValueError) as exc:
        raise ConfigError("timeout_seconds must be a number") from exc
    return run_canary(ctx, timeout=timeout).to_dict()


def canary_http(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP (scheduler, hourly): run the Golden Thread canary; 200 when whole, 500 naming the broken hop."""
    body, status, headers = http_call(_canary, request)
    if status == 200 and not json.loads(body).get("ok"):
        status = 500
    return body, status, headers
