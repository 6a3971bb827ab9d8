"""Loops B and C convert each batch's float and time arrays to row values once per array (``decs``, ``whens``),
not once per value; every value must come out exactly as the per-value ``dec`` and ``when`` give it (same
digits, same exponent, same sign of zero), and a value ``dec`` cannot hold must still fail only its row."""

from __future__ import annotations

from decimal import InvalidOperation

import numpy as np
import pytest
from goldthread.analytics.barriers import NAT_NS
from goldthread.loops.counterfactual import dec, decs, settled, settled_time, when, whens

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("values", [
    RNG.uniform(-300, 300, 20_000),
    np.round(RNG.uniform(0, 70_000, 20_000), 4),
    10 ** RNG.uniform(-12, 7, 20_000),
    RNG.uniform(-1, 1, 20_000) / RNG.uniform(0, 1, 20_000),  # percentages and R multiples, some large
    np.array([np.nan, np.inf, -np.inf, -0.0, -1e-12, 0.0, 5e-10, 1.5e-9, 0.1234567895, 1e12, 8.9e6, 9.1e6]),
])
def test_decs_match_dec_value_for_value(values: np.ndarray) -> None:
    got = [settled(v) for v in decs(values)]
    want = [dec(v) for v in values.tolist()]
    assert [repr(v) for v in got] == [repr(v) for v in want]


def test_a_value_too_large_to_hold_fails_where_the_row_is_built() -> None:
    converted = decs(np.array([1.0, 1e25]))
    assert repr(settled(converted[0])) == repr(dec(1.0))
    with pytest.raises(InvalidOperation):
        dec(1e25)
    with pytest.raises(InvalidOperation):
        settled(converted[1])


def test_whens_match_when_value_for_value() -> None:
    ns = np.concatenate([
        RNG.integers(-2**62, 2**62, 20_000),  # any nanosecond, far past and future included
        RNG.integers(0, 2**61, 20_000) // 1000 * 1000,  # whole microseconds, the bars' usual times
        np.array([NAT_NS, 0, -1000, 1709251199999999000, 1709251199999999999]),
    ])
    got = [settled_time(v) for v in whens(ns)]
    want = [None if v == NAT_NS else when(v) for v in ns.tolist()]
    assert got == want
    assert [repr(v) for v in got] == [repr(v) for v in want]
