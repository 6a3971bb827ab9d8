"""Loop C: signals that expired without execution -> ``fact_signals_expired`` with their best excursion.

"Did we miss a moonshot?" Over the signal's life plus a look-ahead (``created_at`` to ``expires_at`` +
``GOLDTHREAD_EXPIRY_LOOKAHEAD_HOURS``), measured from the signal price: the maximum favourable
excursion (price, percent, R) and when it happened, the adverse one likewise, whether the take-profit
would have been hit and when, and a missed-moonshot flag when the MFE reaches the configured threshold
(compared on the stored 9-place ``max_mfe_pct``, exactly).
Only bars wholly inside that span count (opening at or after ``created_at``, closing by its end, with the
bars' real length); the row records that length as ``bars_timeframe``.
A signal living longer than ``GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS`` is dead-lettered on ``expires_at`` and
asks for no bars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from goldthread.analytics.barriers import excursions_batch
from goldthread.errors import PermanentError, RecordValidationError
from goldthread.loops.bars import load_bars
from goldthread.loops.base import BuildResult, day_bounds, unbuildable
from goldthread.loops.counterfactual import CounterfactualLoop, columns, dec, when
from goldthread.models.hot import LiveSignal, Side, SignalStatus
from goldthread.models.warehouse import FactSignalExpired, row_id_for
from goldthread.models.work_items import Loop, WorkItem
from goldthread.pipeline.context import Context
from goldthread.ports.market_data import to_ns


def missed_moonshot(max_mfe_pct: Decimal | None, threshold: Decimal) -> bool:
    """Whether the stored ``max_mfe_pct`` (the exact 9-place decimal the row holds) reaches the threshold.

    Decided on the decimal, not on the float the maths produced: a favourable move of exactly 10 % can come
    out of float arithmetic as 9.999999999999998 %, stored as 10.000000000, and a flag decided on the float
    would contradict the row it sits in. Missing (no excursion measured) is not a moonshot."""
    return max_mfe_pct is not None and max_mfe_pct >= threshold


_KNOWN_STATUSES = frozenset(s.value for s in SignalStatus)


class ExpiredSignalsLoop(CounterfactualLoop):
    """Loop C: ``live_signals`` (expired, never executed) -> ``fact_signals_expired``."""

    loop: ClassVar[Loop] = Loop.EXPIRED_SIGNALS
    collection: ClassVar[str | None] = LiveSignal.collection
    row_model = FactSignalExpired
    time_field: ClassVar[str] = "expires_at"
    signal_model = LiveSignal

    def ready_delay(self, ctx: Context) -> tuple[dt.timedelta, str]:
        """A day is complete once its look-ahead has passed."""
        return ctx.settings.expiry_lookahead, f"looks {ctx.settings.expiry_lookahead} past expiry"

    def window(self, ctx: Context, signal: Any) -> tuple[dt.datetime, dt.datetime]:
        """The signal's life plus the look-ahead."""
        return signal.created_at, signal.expires_at + ctx.settings.expiry_lookahead

    def find(self, ctx: Context, ds: dt.date, sweep: bool | None = None) -> list[str]:
        """EXPIRED signals, and ACTIVE ones past their expiry (never executed), expiring on or before ``ds``;
        and signals whose status is none of the known ones (``"expired"``, a number, null, missing), which no
        status filter would ever match: published, they are dead-lettered with the reason instead of left
        behind unseen. Executed and rejected signals are read but never published."""
        return self.find_and_remember(ctx, ds, self.find_due(ctx, ds, sweep))

    def wanted(self, ctx: Context, data: Mapping[str, Any], ds: dt.date) -> bool:
        """EXPIRED by the end of ``ds``, ACTIVE past its expiry (by the end of ``ds`` and by now), or of an
        unknown status."""
        status = data.get("status")
        end = day_bounds(ds)[1]
        if status == SignalStatus.EXPIRED.value:
            return self.is_due(data, end)
        if status == SignalStatus.ACTIVE.value:
            return self.is_due(data, min(end, ctx.now()))
        return not (isinstance(status, str) and status in _KNOWN_STATUSES)

    def check_signal(self, ctx: Context, signal: Any) -> None:
        """Only signals that expired without execution belong here, and only those whose life (``expires_at -
        created_at``) is at most ``GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS``: the bars one signal asks for are
        bounded (an expiry years after creation would fetch and scan years of minute bars), and a longer life
        is a bot's bug, refused on ``expires_at``."""
        limit = ctx.settings.max_signal_lifetime
        if signal.expires_at - signal.created_at > limit:
            raise RecordValidationError("LiveSignal", signal.signal_id, [{
                "loc": "expires_at",
                "msg": f"the signal lives {signal.expires_at - signal.created_at} from created_at, longer than "
                       f"the {limit} GOLDTHREAD_MAX_SIGNAL_LIFETIME_DAYS allows",
                "type": "lifetime_too_long",
            }])
        expired = signal.status is SignalStatus.EXPIRED or (
            signal.status is SignalStatus.ACTIVE and signal.expires_at <= ctx.now()
        )
        if not expired:
            raise PermanentError(
                f"signal {signal.signal_id} is {signal.status.value}, not expired",
                [{"loc": "status", "msg": f"status {signal.status.value} is not an unexecuted expiry",
                  "type": "status"}],
            )

    def build(self, ctx: Context, items: Sequence[WorkItem]) -> BuildResult:
        """Excursions for the batch, one vectorised call per symbol."""
        good, results = self.validated(ctx, items)
        bars = load_bars(ctx, [(s.symbol, *self.window(ctx, s)) for _, s in good.values()])
        threshold = Decimal(ctx.settings.moonshot_threshold_pct)
        now = ctx.now()
        for symbol, group in self.by_symbol(good).items():
            signals = [s for _, _, s in group]
            batch = excursions_batch(
                bars[symbol],
                np.array([1 if s.side is Side.LONG else -1 for s in signals], dtype=np.int8),
                np.array([to_ns(s.created_at) for s in signals], dtype=np.int64),
                np.array([float(s.signal_price) for s in signals]),
                np.array([float(s.take_profit) for s in signals]),
                np.array([float(s.stop_loss) for s in signals]),
                np.array([to_ns(self.window(ctx, s)[1]) for s in signals], dtype=np.int64),
                float(threshold),
                bars[symbol].length_ns,
            )
            c = columns(
                batch, ("max_mfe_price", "max_mfe_pct", "max_mfe_r", "mae_price", "mae_pct", "mae_r"),
                ("max_mfe_at", "mae_at", "take_profit_hit_at"),
                ("take_profit_hit", "bars_observed"),
            )
            for i, (item_id, item, s) in enumerate(group):
                no_data = c["bars_observed"][i] == 0
                try:
                    mfe_pct = dec(c["max_mfe_pct"][i])
                    results[item_id] = FactSignalExpired(
                        row_id=row_id_for("fact_signals_expired", s.signal_id), ds=s.expires_at.date(),
                        run_id=item.run_id, loaded_at=now, is_canary=s.is_canary, signal_id=s.signal_id,
                        strategy_id=s.strategy_id, strategy_version=s.strategy_version, symbol=s.symbol,
                        asset_class=s.asset_class, side=s.side, signal_price=s.signal_price,
                        take_profit=s.take_profit, stop_loss=s.stop_loss, created_at=s.created_at,
                        expires_at=s.expires_at, lookahead_end=self.window(ctx, s)[1],
                        max_mfe_price=dec(c["max_mfe_price"][i]), max_mfe_pct=mfe_pct,
                        max_mfe_r=dec(c["max_mfe_r"][i]), max_mfe_at=when(c["max_mfe_at"][i]),
                        mae_price=dec(c["mae_price"][i]), mae_pct=dec(c["mae_pct"][i]),
                        mae_r=dec(c["mae_r"][i]), mae_at=when(c["mae_at"][i]),
                        take_profit_hit=None if no_data else c["take_profit_hit"][i],
                        take_profit_hit_at=when(c["take_profit_hit_at"][i]),
                        is_missed_moonshot=None if no_data else missed_moonshot(mfe_pct, threshold),
                        moonshot_threshold_pct=threshold, bars_observed=c["bars_observed"][i],
                        bars_timeframe=None if no_data else bars[symbol].timeframe,
                    )
                except (ValidationError, ArithmeticError) as exc:  # valid inputs, an impossible row
                    results[item_id] = unbuildable("FactSignalExpired", item.doc_id, exc)
        return results
