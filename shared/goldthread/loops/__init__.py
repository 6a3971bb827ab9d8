"""The four archival loops, by name: trades (A), rejected_signals (B), expired_signals (C), accounts (D)."""

from __future__ import annotations

import functools
import importlib

from goldthread.loops.base import LoopSpec
from goldthread.models.work_items import Loop

_MODULES = {
    Loop.TRADES: ("goldthread.loops.trades", "TradesLoop"),
    Loop.REJECTED_SIGNALS: ("goldthread.loops.rejected_signals", "RejectedSignalsLoop"),
    Loop.EXPIRED_SIGNALS: ("goldthread.loops.expired_signals", "ExpiredSignalsLoop"),
    Loop.ACCOUNTS: ("goldthread.loops.accounts", "AccountsLoop"),
}


@functools.cache
def get_loop(loop: Loop | str) -> LoopSpec:
    """The loop spec for a loop name (``trades``, ``rejected_signals``, ``expired_signals``, ``accounts``)."""
    key = Loop(loop)
    module, cls = _MODULES[key]
    spec: LoopSpec = getattr(importlib.import_module(module), cls)()
    return spec
