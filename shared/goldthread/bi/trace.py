"""``trace <id>``: one record's whole journey along the Golden Thread ("where is my trade?").

For a signal or position id (or a dead-letter id) it gathers, through the ports only (so it works on
both stacks): the hot document(s) and their archive or dead-letter marks, the work items of every run
that handled the record (outcome, attempts where the bus recorded them, run id and status), the
warehouse row(s), the dead letters with their field-level reasons and any replay, the patches that
changed it (``patch_audit``), and the mart rows it feeds. For a run id: the run, its items' outcomes,
the rows it wrote, its dead letters and its ``mart_pipeline_health`` (or ``mart_golden_thread``) row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from goldthread.errors import GoldthreadError
from goldthread.ledger import marks, runs
from goldthread.models.hot import JobMetadata, LivePosition, LiveSignal, RejectedSignal
from goldthread.pipeline.context import Context
from goldthread.ports.hot_store import Where

POSITIONS, SIGNALS, REJECTED = LivePosition.collection, LiveSignal.collection, RejectedSignal.collection
COLLECTION_LOOPS: dict[str, tuple[str, str, str]] = {
    # hot collection -> (loop, fact table, key column of the fact table)
    POSITIONS: ("trades", "fact_trades", "position_id"),
    REJECTED: ("rejected_signals", "fact_rejected_signals", "signal_id"),
    SIGNALS: ("expired_signals", "fact_signals_expired", "signal_id"),
}
_ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "fact_trades": ("ds", "strategy_id", "strategy_version", "symbol", "qty", "gross_pnl_usd", "net_pnl_usd",
                    "est_fee_usd", "actual_fee_usd", "fee_finalized"),
    "fact_rejected_signals": ("ds", "strategy_id", "rejection_reason", "exit_reason", "theoretical_net_pnl_per_unit",
                              "r_multiple"),
    "fact_signals_expired": ("ds", "strategy_id", "symbol", "max_mfe_pct", "is_missed_moonshot"),
}
_DOC_FIELDS = ("status", "strategy_id", "strategy_version", "symbol", "is_canary")
_MARK_FIELDS = ("archived_run_id", "archived_at", "dead_lettered_run_id")


def _marks_of(ctx: Context, collection: str, doc_id: Any) -> dict[str, Any]:
    """The ledger's marks of a record (goldthread's, never the bot document's own fields)."""
    held = marks.read_marks(ctx.hot, collection, [str(doc_id)]).get(str(doc_id)) if doc_id else None
    return {k: getattr(held, k) for k in _MARK_FIELDS if held is not None and getattr(held, k) is not None}


@dataclass
class TraceSection:
    """One stage of the journey: ``ok`` (seen), ``missing`` (not reached), ``failed`` or ``info``."""

    title: str
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class TraceReport:
    """Everything known about one id, stage by stage."""

    query: str
    kind: str
    sections: list[TraceSection] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """True if the id names anything goldthread knows."""
        return self.kind != "unknown"

    def section(self, title: str) -> TraceSection:
        """The section called ``title``."""
        return next(s for s in self.sections if s.title == title)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``trace --json``)."""
        return {"query": self.query, "kind": self.kind, "sections": [
            {"title": s.title, "status": s.status, "note": s.note, "rows": [_plain(r) for r in s.rows]}
            for s in self.sections
        ]}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _query(ctx: Context, sql: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    try:
        return ctx.warehouse.query(sql, params), ""
    except GoldthreadError as exc:
        return [], f"{type(exc).__name__}: {exc}"[:500]


def trace(ctx: Context, record_id: str) -> TraceReport:
    """Trace a signal, position, run or dead-letter id along the thread."""
    if ctx.hot.get(runs.JOBS, record_id) is not None:
        return _trace_run(ctx, record_id)
    letters, _ = _query(ctx, "SELECT doc_id FROM dead_letters WHERE row_id = @id", {"id": record_id})
    doc_id = str(letters[0]["doc_id"]) if letters else record_id
    return _trace_record(ctx, record_id, doc_id)


# -- a record ---------------------------------------------------------------------------------------


def _trace_record(ctx: Context, query: str, doc_id: str) -> TraceReport:
    docs: dict[str, dict[str, Any]] = {}
    for collection in COLLECTION_LOOPS:
        doc = ctx.hot.get(collection, doc_id)
        if doc is not None:
            docs[collection] = doc
    related = [pid for pid, _ in ctx.hot.query(POSITIONS, [Where("signal_id", "==", doc_id)])]
    targets: list[tuple[str, str]] = [(c, doc_id) for c in docs] + [(POSITIONS, p) for p in related
                                                                     if p != doc_id]
    kind = {POSITIONS: "position", REJECTED: "rejected signal", SIGNALS: "signal"}
    report = TraceReport(query, kind[next(iter(docs))] if docs else "unknown")
    report.sections.append(_hot_section(docs, related, ctx))
    facts, fact_note = _fact_rows(ctx, doc_id, targets)
    letters, letter_note = _dead_letters(ctx, [d for _, d in targets] or [doc_id])
    if report.kind == "unknown" and (facts or letters):
        report.kind = "archived record"
    if not report.found:
        return report
    report.sections.append(_work_items(ctx, targets, facts, letters))
    report.sections.append(TraceSection(
        "warehouse rows", "ok" if facts else ("failed" if fact_note else "missing"), facts,
        fact_note or ("" if facts else "not in the warehouse (yet): not archived, or dead-lettered"),
    ))
    report.sections.append(TraceSection(
        "dead letters", "failed" if letter_note else ("info" if letters else "ok"), letters,
        letter_note or ("" if letters else "never dead-lettered"),
    ))
    keys = sorted({d for _, d in targets} | {doc_id})
    patches, patch_note = _query(
        ctx, "SELECT changed_at, patch, patch_run_id, table_name, record_key, column_name, old_value, new_value "
             "FROM patch_audit WHERE record_key IN UNNEST(@keys) ORDER BY changed_at, table_name, column_name",
        {"keys": keys},
    )
    report.sections.append(TraceSection("patches", "failed" if patch_note else ("info" if patches else "ok"),
                                        patches, patch_note or ("" if patches else "no patch changed it")))
    report.sections.append(_mart_rows(ctx, facts))
    return report


def _hot_section(docs: dict[str, dict[str, Any]], related: list[str], ctx: Context) -> TraceSection:
    rows = [{"collection": c, "doc_id": d.get("position_id") or d.get("signal_id"),
             **{k: d.get(k) for k in _DOC_FIELDS if k in d},
             **_marks_of(ctx, c, d.get("position_id") or d.get("signal_id"))} for c, d in docs.items()]
    position = docs.get(POSITIONS)
    if position and position.get("signal_id"):
        signal = ctx.hot.get(SIGNALS, str(position["signal_id"]))
        rows.append({"collection": SIGNALS, "doc_id": position["signal_id"], "role": "its signal",
                     **({k: signal.get(k) for k in ("status", "is_canary")} if signal else {"status": "MISSING"})})
    for pid in related:
        if POSITIONS not in docs or pid != docs[POSITIONS].get("position_id"):
            doc = ctx.hot.get(POSITIONS, pid) or {}
            rows.append({"collection": POSITIONS, "doc_id": pid, "role": "position of this signal",
                         **{k: doc.get(k) for k in _DOC_FIELDS if k in doc}, **_marks_of(ctx, POSITIONS, pid)})
    return TraceSection("hot documents", "ok" if docs else "missing", rows,
                        "" if docs else "no hot document with this id")


def _fact_rows(ctx: Context, doc_id: str, targets: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], str]:
    rows: list[dict[str, Any]] = []
    notes = []
    wanted = {(COLLECTION_LOOPS[c][1], COLLECTION_LOOPS[c][2], d) for c, d in targets}
    if not targets:  # no hot document left: look the id up in every fact table
        wanted = {(table, key, doc_id) for _, table, key in COLLECTION_LOOPS.values()}
    for table, key, value in sorted(wanted):
        cols = ", ".join(("row_id", key, "run_id", "loaded_at", "revision", "is_canary", *_ROW_COLUMNS[table]))
        found, note = _query(ctx, f"SELECT {cols} FROM {table} WHERE {key} = @v QUALIFY ROW_NUMBER() OVER "
                                  "(PARTITION BY row_id ORDER BY revision DESC, loaded_at DESC) = 1", {"v": value})
        rows.extend({"table": table, **r} for r in found)
        if note:
            notes.append(note)
    return rows, "; ".join(notes)


def _dead_letters(ctx: Context, doc_ids: list[str]) -> tuple[list[dict[str, Any]], str]:
    rows, note = _query(
        ctx, "SELECT d.row_id AS dead_letter_id, d.loop, d.doc_id, d.run_id, d.reason_code, d.error_message, "
             "d.errors_json, d.delivery_attempts, d.dead_lettered_at, r.replay_run_id, r.replayed_at "
             "FROM dead_letters d LEFT JOIN dead_letter_replays r ON r.dead_letter_id = d.row_id "
             "WHERE d.doc_id IN UNNEST(@ids) ORDER BY d.dead_lettered_at",
        {"ids": doc_ids},
    )
    for row in rows:
        try:
            parsed = json.loads(row.pop("errors_json"))
            row["errors"] = [f"{e.get('loc') or '<record>'}: {e.get('msg')}" for e in parsed]
        except (ValueError, TypeError, AttributeError):
            row["errors"] = []
    return rows, note


def _work_items(
    ctx: Context, targets: list[tuple[str, str]], facts: list[dict[str, Any]], letters: list[dict[str, Any]]
) -> TraceSection:
    """Every run that handled the record: from its marks, its rows, its dead letters and their replays."""
    loops = {COLLECTION_LOOPS[c][0] for c, _ in targets} or {"trades", "rejected_signals", "expired_signals"}
    doc_ids = {d for _, d in targets} | {str(r.get("position_id") or r.get("signal_id")) for r in facts} | {
        str(x["doc_id"]) for x in letters}
    candidates: dict[str, str] = {}
    for collection, doc_id in targets:
        held = marks.read_marks(ctx.hot, collection, [doc_id]).get(doc_id)
        for mark in ("archived_run_id", "dead_lettered_run_id"):
            if held is not None and getattr(held, mark):
                candidates[str(getattr(held, mark))] = mark
    for row in facts:
        candidates.setdefault(str(row["run_id"]), "wrote the row")
    attempts: dict[str, int] = {}
    for letter in letters:
        candidates.setdefault(str(letter["run_id"]), "dead-lettered it")
        attempts[str(letter["run_id"])] = int(letter["delivery_attempts"])
        if letter.get("replay_run_id"):
            candidates.setdefault(str(letter["replay_run_id"]), "replayed it")
    rows = []
    for run_id, why in candidates.items():
        run: JobMetadata | None = runs.get_run(ctx, run_id)
        outcomes = ctx.hot.item_outcomes(run_id) if run else {}
        item_ids = [f"{loop}:{doc}" for loop in sorted(loops) for doc in sorted(doc_ids)]
        outcome = next((outcomes[i] for i in item_ids if i in outcomes), None)
        rows.append({
            "run_id": run_id, "job": run.loop if run else None, "run_ds": run.ds if run else None,
            "run_status": run.status.value if run else "NOT FOUND", "started_at": run.started_at if run else None,
            "item_outcome": outcome or "no outcome recorded", "seen_as": why,
            "delivery_attempts": attempts.get(run_id, "not recorded (acknowledged items keep no count)"),
        })
    first = {"dead_lettered_run_id": 0, "dead-lettered it": 0}  # on a tie, a dead-lettering run precedes its replay
    rows.sort(key=lambda r: (r["started_at"] is None, r["started_at"] or dt.datetime.min.replace(tzinfo=dt.UTC),
                             first.get(str(r["seen_as"]), 1), r["run_id"]))
    note = "" if rows else "never published: no run has handled this record yet"
    return TraceSection("work items", "ok" if rows else "missing", rows, note)


def _mart_rows(ctx: Context, facts: list[dict[str, Any]]) -> TraceSection:
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    errors: list[str] = []

    def add(mart: str, sql: str, params: dict[str, Any]) -> None:
        found, error = _query(ctx, sql, params)
        rows.extend({"mart": mart, **r} for r in found)
        if error:
            errors.append(f"{mart}: {error}")

    for fact in facts:
        if fact.get("is_canary"):
            add("mart_golden_thread", "SELECT run_id, status, broken_hop, row_loaded_at FROM mart_golden_thread "
                "WHERE position_id = @p", {"p": fact.get("position_id")})
            notes.append("a canary row: excluded from every business mart by design")
        elif fact["table"] == "fact_trades":
            add("mart_daily_pnl", "SELECT ds, strategy_id, trades, net_pnl_usd, win_rate FROM mart_daily_pnl "
                "WHERE ds = @ds AND strategy_id = @s", {"ds": fact["ds"], "s": fact["strategy_id"]})
            add("mart_strategy_performance", "SELECT strategy_sk, trades, net_pnl_usd, win_rate, avg_r "
                "FROM mart_strategy_performance WHERE strategy_id = @s AND version = @v",
                {"s": fact["strategy_id"], "v": fact["strategy_version"]})
            add("mart_fee_drift", "SELECT ds, asset_class, trades, backlog_trades, fee_drift_usd FROM mart_fee_drift "
                "WHERE ds = @ds AND asset_class IN (SELECT asset_class FROM fact_trades WHERE row_id = @r)",
                {"ds": fact["ds"], "r": fact["row_id"]})
        elif fact["table"] == "fact_rejected_signals":
            add("mart_rejection_cost", "SELECT rejection_reason, signals, would_have_won_share, filter_verdict "
                "FROM mart_rejection_cost WHERE ds = @ds AND rejection_reason = @r",
                {"ds": fact["ds"], "r": fact["rejection_reason"]})
        else:
            add("mart_missed_moonshots", "SELECT signal_id, mfe_rank, max_mfe_pct, is_missed_moonshot "
                "FROM mart_missed_moonshots WHERE signal_id = @s", {"s": fact["signal_id"]})
    status = "failed" if errors else ("ok" if rows else "missing")
    note = "; ".join(errors + sorted(set(notes))) or ("" if rows else "feeds no mart yet (no warehouse row)")
    return TraceSection("marts", status, rows, note)


# -- a run ------------------------------------------------------------------------------------------


def _trace_run(ctx: Context, run_id: str) -> TraceReport:
    run = runs.get_run(ctx, run_id)
    assert run is not None
    report = TraceReport(run_id, "run")
    report.sections.append(TraceSection("run", "failed" if run.status.value in ("FAILED", "STALLED") else "ok", [{
        "run_id": run.run_id, "job": run.loop, "ds": run.ds, "status": run.status.value, "git_hash": run.git_hash,
        "started_at": run.started_at, "finished_at": run.finished_at, "published": run.published,
        "loaded": run.loaded, "duplicates": run.duplicates, "dead_lettered": run.dead_lettered,
        "reconciled": run.reconciled, "error": run.error,
    }], json.dumps(_plain(run.details), sort_keys=True)[:2000] if run.details else ""))
    outcomes = ctx.hot.item_outcomes(run_id)
    counts = Counter(outcomes.values())
    items = [{"item_id": k, "outcome": v} for k, v in sorted(outcomes.items())[:200]]
    report.sections.append(TraceSection(
        "work items", "ok" if outcomes else "missing", items,
        ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + (" (first 200 shown)" if len(outcomes) > 200
                                                                     else ""),
    ))
    written = []
    for table, sql in (
        ("fact_trades", "SELECT COUNT(*) AS n FROM fact_trades WHERE run_id = @r"),
        ("fact_rejected_signals", "SELECT COUNT(*) AS n FROM fact_rejected_signals WHERE run_id = @r"),
        ("fact_signals_expired", "SELECT COUNT(*) AS n FROM fact_signals_expired WHERE run_id = @r"),
        ("snapshot_accounts", "SELECT COUNT(*) AS n FROM snapshot_accounts WHERE run_id = @r"),
        ("patch_audit", "SELECT COUNT(*) AS n FROM patch_audit WHERE patch_run_id = @r"),
        ("dead_letter_replays", "SELECT COUNT(*) AS n FROM dead_letter_replays WHERE replay_run_id = @r"),
    ):
        found, _ = _query(ctx, sql, {"r": run_id})
        if found and found[0]["n"]:
            written.append({"table": table, "rows": int(found[0]["n"])})
    report.sections.append(TraceSection("warehouse rows", "ok" if written else "info", written,
                                        "" if written else "the run wrote no rows"))
    letters, note = _query(ctx, "SELECT row_id AS dead_letter_id, loop, doc_id, reason_code, error_message, "
                                "delivery_attempts FROM dead_letters WHERE run_id = @r ORDER BY doc_id", {"r": run_id})
    report.sections.append(TraceSection("dead letters", "failed" if note else ("info" if letters else "ok"), letters,
                                        note or ("" if letters else "none")))
    if run.loop == "canary":
        found, note = _query(ctx, "SELECT * FROM mart_golden_thread WHERE run_id = @r", {"r": run_id})
        mart = "mart_golden_thread"
    else:
        found, note = _query(ctx, "SELECT * FROM mart_pipeline_health WHERE job = @j AND ds = @d",
                             {"j": run.loop, "d": run.ds})
        mart = "mart_pipeline_health"
    report.sections.append(TraceSection("marts", "failed" if note else ("ok" if found else "missing"),
                                        [{"mart": mart, **r} for r in found],
                                        note or ("" if found else "not synced to job_runs yet")))
    return report


_STATUS_STYLE = {"ok": "green", "missing": "yellow", "failed": "red", "info": "cyan"}


def print_trace(console: Any, report: TraceReport, max_rows: int = 30) -> None:
    """Render a trace as one table per stage (``console`` is a ``rich.console.Console``)."""
    from rich.table import Table

    console.rule(f"trace {report.query} ({report.kind})")
    if not report.found:
        console.print("[red]nothing known by this id: not a signal, position, run or dead-letter id")
        return
    for section in report.sections:
        style = _STATUS_STYLE.get(section.status, "white")
        title = f"[{style}]{section.title}: {section.status}[/]"
        if not section.rows:
            console.print(f"{title}  {section.note}")
            continue
        columns = list(dict.fromkeys(k for row in section.rows for k in row))
        table = Table(title=title, title_justify="left", caption=section.note or None, caption_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in section.rows[:max_rows]:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        console.print(table)


def _cell(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, list):
        return "; ".join(str(v) for v in plain)
    return "" if plain is None else str(plain)
