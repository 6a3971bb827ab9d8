"""One order, one position: each broker order backs at most one archived trade.

Two positions naming the same broker order would archive a phantom trade (the same fill counted twice)
and let the fee patch charge the order's fee to both. So Loop A claims each position's entry and exit
orders in the goldthread-owned hot collection ``order_claims`` (document id = the broker's order id,
``{position_id, leg, run_id, claimed_at, token}``), created only if absent (atomic per document), after
every other check of the position has passed and its row is built, before the row is written:

* a claim held by the same position is its own (a redelivery, a crash between claim and row write, a
  revision): it passes;
* held by another position: ``OrderClaimedError`` (``ORDER_CLAIMED``) naming the order and the holder;
* two positions of one batch naming the same order: the first by ``position_id`` is the claimant, the
  others are refused naming it.

A position refused for one of its orders gives back the claims this very call created for it (matched
by a per-call token), so a phantom does not keep the other order from its real position. Canary
positions reference the same two standing orders on every run, by design, and never claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from goldthread.errors import OrderClaimedError
from goldthread.models.hot import LivePosition, OrderClaim
from goldthread.pipeline.context import Context

CLAIMS = OrderClaim.collection


@dataclass(frozen=True)
class Claimant:
    """A position of a batch asking for its orders, under the run of its work item."""

    position: LivePosition
    run_id: str

    def legs(self) -> list[tuple[str, str]]:
        """(leg, order id) of the position's entry and exit orders."""
        p = self.position
        return [("entry", p.entry_order_id), *([("exit", p.exit_order_id)] if p.exit_order_id else [])]


def _refusal(position_id: str, taken: Sequence[tuple[str, str, str]]) -> OrderClaimedError:
    errors = [{"loc": f"{leg}_order_id", "msg": f"order {order_id} already backs position {holder}",
               "type": "order_claimed", "order_id": order_id, "claimed_by": holder} for leg, order_id, holder in taken]
    names = ", ".join(f"{order_id} (position {holder})" for _, order_id, holder in taken)
    return OrderClaimedError(f"position {position_id}: its broker order(s) already back another position: {names}",
                             errors)


def _batch_claimants(claimants: Mapping[str, Claimant]) -> dict[str, str]:
    """Each order id named in the batch -> the first position (by ``position_id``) naming it."""
    first: dict[str, str] = {}
    for claimant in sorted(claimants.values(), key=lambda c: c.position.position_id):
        for _, order_id in claimant.legs():
            first.setdefault(order_id, claimant.position.position_id)
    return first


def claim_orders(ctx: Context, claimants: Mapping[str, Claimant], *, dry_run: bool = False
                 ) -> dict[str, OrderClaimedError]:
    """Claim the orders of ``claimants`` (keyed by item id); returns the refused items with their errors.

    ``dry_run`` only reads the claims (what ``replay --dry-run`` needs) and creates none. A hot store that
    cannot be reached raises ``TransientError`` (the batch is retried).
    """
    if not claimants:
        return {}
    first = _batch_claimants(claimants)
    token = uuid.uuid4().hex
    now = ctx.now()
    by_position = {c.position.position_id: c for c in claimants.values()}
    wanted: dict[str, dict[str, Any]] = {}
    for order_id, position_id in first.items():
        claimant = by_position[position_id]
        leg = next(leg for leg, oid in claimant.legs() if oid == order_id)
        wanted[order_id] = {"position_id": position_id, "leg": leg, "run_id": claimant.run_id,
                            "claimed_at": now, "token": token}
    if dry_run:
        held = ctx.hot.get_many(CLAIMS, list(wanted))
        stored = {oid: held.get(oid, doc) for oid, doc in wanted.items()}
    else:
        stored = ctx.hot.create_many(CLAIMS, wanted)
    refused: dict[str, OrderClaimedError] = {}
    for item_id, claimant in claimants.items():
        position_id = claimant.position.position_id
        taken = [(leg, oid, str(stored[oid].get("position_id"))) for leg, oid in claimant.legs()
                 if stored[oid].get("position_id") != position_id]
        if not taken:
            continue
        refused[item_id] = _refusal(position_id, taken)
        if not dry_run:  # give back what this call created for it: it backs no row
            for _, oid in claimant.legs():
                if stored[oid].get("token") == token and stored[oid].get("position_id") == position_id:
                    ctx.hot.delete(CLAIMS, oid)
    return refused


def claim_holders(ctx: Context, order_ids: Sequence[str]) -> dict[str, str]:
    """The position holding each claimed order among ``order_ids`` (orders never claimed are absent)."""
    held = ctx.hot.get_many(CLAIMS, list(dict.fromkeys(order_ids))) if order_ids else {}
    return {oid: str(doc["position_id"]) for oid, doc in held.items() if doc.get("position_id")}

