"""A seeded generator of malformed hot documents and work items, each with the field a dead letter must name.

``generate(templates, seed)`` returns ``Case`` objects: a document for ``live_positions`` (Loop A),
``rejected_signals`` (Loop B) or ``live_signals`` (Loop C, expired signals), or a raw message (body and
attributes) for a loop's topic. Each case says how it is broken (``category``) and what the dead letter's
field-level errors must contain (``expect``: any one of its (location, text) pairs, the location being
the field, ``""`` for a rule across fields, whose text then names the fields).

Categories: wrong types, missing fields, extra fields, NaN and infinities, too many digits or places,
negative and zero quantities and prices, timestamps without a time zone, unreadable or out of order,
huge strings, odd unicode (full-width, zero-width, right-to-left, emoji, NUL, lone surrogates, combining
marks), a document whose own id names another record, document ids that cannot be work items, stop and
target on the wrong side, rejections out of order; and for messages, truncated and non-JSON bodies,
nesting deep enough to break a recursive parser, bodies that are JSON but not a work item, attributes
that contradict the body or are missing, and items naming documents that do not exist. On top of the
single faults, seeded random combinations of two or three faults per document.

Documents keep goldthread's bookkeeping fields (``archived_run_id``...) as the writer API writes them:
a document without them is invisible to every dispatch by design (Firestore cannot query ``== null`` on
a missing field). ``live_signals`` cases keep a valid ``status``: Loop C selects signals by status.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Expect = tuple[tuple[str, str], ...]
Mutation = Callable[[dict[str, Any]], tuple[str, Expect]]


@dataclass(frozen=True)
class Case:
    """One malformed input and the field-level reason its dead letter must give."""

    kind: str  # live_positions | rejected_signals | live_signals | message
    key: str  # the document id, or the message's ``corpus_case`` attribute
    category: str
    expect: Expect
    document: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""
    attributes: dict[str, str] = field(default_factory=dict)
    loop: str = "trades"


def _loc(*fields: str) -> Expect:
    return tuple((f, "") for f in fields)


def _rule(*words: str) -> Expect:
    return tuple(("", w) for w in words)


POSITION_STR = ("position_id", "signal_id", "strategy_id", "strategy_version", "symbol", "entry_order_id",
                "exit_order_id")
POSITION_NUM = ("qty", "entry_filled_avg_price", "exit_filled_avg_price", "est_fee_usd", "multiplier")
POSITION_TIME = ("opened_at", "closed_at")
POSITION_ENUM = ("asset_class", "side", "status")
SIGNAL_STR = ("signal_id", "strategy_id", "strategy_version", "symbol")
SIGNAL_NUM = ("signal_price", "take_profit", "stop_loss")
SIGNAL_TIME = ("created_at", "expires_at")
SIGNAL_ENUM = ("asset_class", "side")
REQUIRED = {
    "live_positions": ("position_id", "signal_id", "strategy_id", "strategy_version", "symbol", "asset_class",
                       "side", "qty", "entry_order_id", "opened_at", "status", "est_fee_usd"),
    "rejected_signals": ("signal_id", "strategy_id", "strategy_version", "symbol", "asset_class", "side",
                         "signal_price", "take_profit", "stop_loss", "created_at", "expires_at", "status",
                         "rejection_reason", "rejected_at"),
    "live_signals": ("signal_id", "strategy_id", "strategy_version", "symbol", "asset_class", "side",
                     "signal_price", "take_profit", "stop_loss", "created_at", "expires_at"),
}
WRONG_STR: list[Any] = [123, 4.5, True, ["a"], {"a": 1}, ""]
WRONG_NUM: list[Any] = ["abc", [], {"v": 1}, True, "", "1,5", "0x10"]
WRONG_TIME: list[Any] = ["tomorrow", [], {}, True, "", "2024-13-45T00:00:00Z", "2024-03-05T25:00:00Z",
                         "2024-03-05 15:00:00"]
WRONG_ENUM: list[Any] = [1, "LONG_", "sideways", "", None, ["long"]]
NON_FINITE: list[Any] = ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", float("nan"), float("inf"),
                         float("-inf"), "1e999", "1" * 39, "0.0000000001", "sNaN"]
ODD_TEXT: list[str] = ["ＡＡＰＬ", "AAPL\u200b", "AA\u202ePL", "AAPL😀", "AA\x00PL", "AAP\ud800", "AAPL\u0301",
                       "\u00a0AAPL", "AAPL\n", "AAPL;DROP", "ÄPL", "A" * 33]
ODD_IDS: list[str] = ["pos with space", "pösition", "pos/slash", "pos\x00nul", "p" * 129, "pos\u200bzero",
                      "pos'quote", 'pos"dq', "pos;--", "😀", "pos\ttab"]  # (a lone surrogate: the store refuses it)


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        doc[name] = value
    return apply


def position_mutations(rng: random.Random) -> Iterator[tuple[str, Callable[[dict[str, Any]], None], Expect]]:
    """(category, mutation, expect) for one closed position."""
    for name in POSITION_STR:
        for value in WRONG_STR:
            yield "wrong_type", _set(name, value), _loc(name)
    for name in POSITION_NUM:
        for value in WRONG_NUM:
            yield "wrong_type", _set(name, value), _loc(name)
    for name in POSITION_TIME:
        for value in WRONG_TIME:
            yield "wrong_type" if not isinstance(value, str) else "timestamp", _set(name, value), _loc(name)
    for name in POSITION_ENUM:
        for value in WRONG_ENUM:
            yield "wrong_type", _set(name, value), _loc(name)
    for name in REQUIRED["live_positions"]:
        yield "missing_field", lambda doc, n=name: doc.pop(n), _loc(name)
    for name in ("exit_order_id", "closed_at"):
        yield "missing_field", lambda doc, n=name: doc.pop(n), _rule(name)
    for name in ("surprise", "Qty", "closedAt", "archived", "__proto__", "a.b", "price;", "ünïcode", "x" * 300):
        yield "extra_field", _set(name, 1), _loc(name[:300])
    for name in ("qty", "est_fee_usd", "entry_filled_avg_price", "exit_filled_avg_price", "multiplier"):
        for value in NON_FINITE:
            yield "non_finite", _set(name, value), _loc(name)
    for name, values in (("qty", [0, -1, "-0.000000001", -1e9]), ("multiplier", [0, -100]),
                         ("est_fee_usd", [-0.01, "-5"]), ("entry_filled_avg_price", [-1]),
                         ("exit_filled_avg_price", ["-185.12"])):
        for value in values:
            yield "non_positive", _set(name, value), _loc(name)
    for name in POSITION_TIME:
        yield "timestamp", _set(name, "2024-03-05T15:00:00"), _loc(name)  # naive
        yield "timestamp", _set(name, "2024-03-05T15:00:00.123456"), _loc(name)
    yield "timestamp", _set("closed_at", "2024-03-01T00:00:00+00:00"), _rule("closed_at")  # before opened_at
    yield "timestamp", _set("opened_at", "2030-01-01T00:00:00Z"), _rule("closed_at")
    for name in ("symbol", "strategy_id", "signal_id", "strategy_version", "entry_order_id"):
        for size in (200, 10_000, 1_000_000):
            yield "huge_string", _set(name, "A" * size), _loc(name)
    for name in ("symbol", "strategy_id", "strategy_version", "exit_order_id"):
        for value in ODD_TEXT:
            yield "unicode", _set(name, value), _loc(name)
    for n in range(rng.randint(400, 440)):  # random combinations of two or three faults
        del n
        yield "combined", *_combined(rng, "live_positions")


def signal_mutations(kind: str, rng: random.Random) -> Iterator[tuple[str, Callable[[dict[str, Any]], None], Expect]]:
    """(category, mutation, expect) for a rejected or an expired signal."""
    for name in SIGNAL_STR:
        for value in WRONG_STR[:4]:
            yield "wrong_type", _set(name, value), _loc(name)
    for name in SIGNAL_NUM:
        for value in WRONG_NUM[:4]:
            yield "wrong_type", _set(name, value), _loc(name)
        for value in NON_FINITE[:8]:
            yield "non_finite", _set(name, value), _loc(name)
        yield "non_positive", _set(name, 0), _loc(name)
        yield "non_positive", _set(name, -1), _loc(name)
    for name in SIGNAL_ENUM:
        for value in WRONG_ENUM[:4]:
            yield "wrong_type", _set(name, value), _loc(name)
    for name in SIGNAL_TIME:
        if kind == "live_signals" and name == "expires_at":  # Loop C selects by it: keep it readable
            continue
        yield "timestamp", _set(name, "2024-03-05T15:00:00"), _loc(name)
        yield "timestamp", _set(name, "not a time"), _loc(name)
    for name in REQUIRED[kind]:
        yield "missing_field", lambda doc, n=name: doc.pop(n), _loc(name)
    yield "extra_field", _set("surprise", 1), _loc("surprise")
    yield "extra_field", _set("takeProfit", 1), _loc("takeProfit")
    yield "barrier_side", lambda doc: doc.update(take_profit=doc["stop_loss"]), _rule("take_profit")
    yield "barrier_side", lambda doc: doc.update(stop_loss=doc["signal_price"]), _rule("stop_loss")
    yield "barrier_side", lambda doc: doc.update(side="short"), _rule("take_profit")
    yield "barrier_side", lambda doc: doc.update(take_profit=doc["signal_price"]), _rule("take_profit")
    yield "timestamp", lambda doc: doc.update(created_at="2024-03-05T20:00:00+00:00"), _rule("expires_at")
    if kind == "rejected_signals":
        yield "timestamp", _set("rejected_at", "2024-03-01T00:00:00Z"), _rule("rejected_at")
        yield "wrong_type", _set("status", "ACTIVE"), _rule("REJECTED")
        yield "wrong_type", _set("rejection_reason", "max exposure!"), _loc("rejection_reason")
        yield "huge_string", _set("rejection_reason", "R" * 100_000), _loc("rejection_reason")
        yield "unicode", _set("rejection_reason", "x'); DROP TABLE fact_trades;--"), _loc("rejection_reason")
    for name in ("symbol", "strategy_id"):
        for value in ODD_TEXT[:8]:
            yield "unicode", _set(name, value), _loc(name)
        yield "huge_string", _set(name, "S" * 50_000), _loc(name)
    for n in range(40):
        del n
        yield "combined", *_combined(rng, kind)


def _combined(rng: random.Random, kind: str) -> tuple[Callable[[dict[str, Any]], None], Expect]:
    fields = {
        "live_positions": (*POSITION_STR, *POSITION_NUM, *POSITION_TIME, "side", "asset_class"),
        "rejected_signals": (*SIGNAL_STR, *SIGNAL_NUM, "created_at", "rejected_at", "side"),
        "live_signals": (*SIGNAL_STR, *SIGNAL_NUM, "created_at", "side"),
    }[kind]
    chosen = rng.sample([f for f in fields if f not in ("position_id", "signal_id")], rng.randint(2, 3))
    values = {}
    for name in chosen:
        pool = (WRONG_NUM + NON_FINITE if name in POSITION_NUM + SIGNAL_NUM else
                WRONG_TIME if name.endswith("_at") else WRONG_ENUM[:4] if name in ("side", "asset_class") else
                WRONG_STR + ODD_TEXT)
        values[name] = rng.choice(pool)
    return (lambda doc: doc.update(values)), _loc(*chosen)


def document_cases(templates: dict[str, dict[str, Any]], seed: int = 2024) -> list[Case]:
    """Malformed documents built from one valid ``template`` per collection."""
    rng = random.Random(seed)
    cases = []
    sources = {
        "live_positions": position_mutations(rng),
        "rejected_signals": signal_mutations("rejected_signals", rng),
        "live_signals": signal_mutations("live_signals", rng),
    }
    own_id = {"live_positions": "position_id", "rejected_signals": "signal_id", "live_signals": "signal_id"}
    for kind, mutations in sources.items():
        prefix = {"live_positions": "bad-pos", "rejected_signals": "bad-rej", "live_signals": "bad-exp"}[kind]
        for n, (category, mutate, expect) in enumerate(mutations):
            doc_id = f"{prefix}-{n:04d}"
            doc = {**templates[kind], own_id[kind]: doc_id}
            mutate(doc)
            cases.append(Case(kind, doc_id, category, expect, document=doc))
        # the document's own id names another record (a copied document), and ids that cannot be work items
        for n in range(5):
            doc_id = f"{prefix}-copy-{n}"
            cases.append(Case(kind, doc_id, "duplicate_id", _loc(own_id[kind]),
                              document={**templates[kind], own_id[kind]: templates[kind][own_id[kind]]}))
        for n, odd in enumerate(ODD_IDS):
            doc_id = f"{odd}{prefix}{n}"
            cases.append(Case(kind, doc_id, "document_id", _loc("doc_id"),
                              document={**templates[kind], own_id[kind]: doc_id}))
    return cases


def message_cases(item: dict[str, Any], seed: int = 2024) -> list[Case]:
    """Malformed work-item messages, built from one valid item body (``WorkItem.model_dump(mode="json")``)."""
    rng = random.Random(seed)
    body = json.dumps(item).encode()
    good_attrs = {k: str(item[k]) for k in ("run_id", "loop", "ds", "doc_id", "schema_version")}
    raw: list[tuple[str, bytes, dict[str, str], Expect]] = []
    for cut in sorted(rng.sample(range(1, len(body) - 1), 40)):
        raw.append(("truncated_body", body[:cut], good_attrs, _loc("data")))
    for junk in (b"", b" ", b"\xff\xfe\x00\x00", b"<html>502 Bad Gateway</html>", b"null", b"[]", b"42", b'"text"',
                 b"true", b"{", b"}", b"{'run_id': 'x'}", b"\x00" * 64, "é".encode("latin-1"), b"NaN",
                 b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                 b"\xef\xbb\xbf" + body + b"x"):
        raw.append(("non_json_body", junk, good_attrs, _loc("data")))
    for name, value in (("run_id", "run with space"), ("run_id", ""), ("run_id", 5), ("loop", "nope"),
                        ("loop", "TRADES"), ("ds", "2024-02-30"), ("ds", "yesterday"), ("ds", 20240305),
                        ("doc_id", "a b"), ("doc_id", None), ("doc_id", "x" * 129), ("schema_version", "v1"),
                        ("published_at", "2024-03-06T03:00:00"), ("published_at", "soon"), ("extra", 1),
                        ("doc_id", "pos\ud800"), ("run_id", "r" * 200)):
        changed = {**item, name: value}
        raw.append(("wrong_body", json.dumps(changed).encode(), {**good_attrs, "doc_id": "pos-x"}
                    if name == "doc_id" else good_attrs, _loc(name)))
    for name in ("run_id", "loop", "ds", "doc_id", "published_at"):
        changed = {k: v for k, v in item.items() if k != name}
        raw.append(("missing_field", json.dumps(changed).encode(), good_attrs, _loc(name)))
    for name, value in (("doc_id", "someone-else"), ("run_id", "other-run"), ("loop", "accounts"),
                        ("ds", "2024-01-01"), ("schema_version", "2")):
        raw.append(("wrong_attributes", body, {**good_attrs, name: value}, _loc(f"attributes.{name}")))
    for name in ("run_id", "loop", "doc_id"):
        raw.append(("wrong_attributes", body, {k: v for k, v in good_attrs.items() if k != name},
                    _loc(f"attributes.{name}")))
    raw.append(("wrong_attributes", body, {}, _loc("attributes.run_id")))
    for n in range(25):  # items naming documents that do not exist
        ghost = {**item, "doc_id": f"ghost-{n}"}
        raw.append(("not_found", json.dumps(ghost).encode(), {**good_attrs, "doc_id": f"ghost-{n}"}, _loc("doc_id")))
    cases = []
    for n, (category, data, attributes, expect) in enumerate(raw):
        key = f"msg-{n:04d}"
        attrs = {**attributes, "corpus_case": key}
        cases.append(Case("message", key, category, expect, body=data, attributes=attrs))
    return cases


def matches(errors: list[dict[str, Any]], expect: Expect) -> bool:
    """True when one error is at an expected location (or, for ``""``, names the expected text)."""
    for loc, text in expect:
        for error in errors:
            at = str(error.get("loc", ""))
            if loc and (at == loc or at.startswith(f"{loc}.")):
                return True
            if not loc and at == "" and text.lower() in str(error.get("msg", "")).lower():
                return True
    return False

