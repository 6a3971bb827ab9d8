"""Turn medians into ``results.json`` rows, goals, and the printed table.

Every row has ``case``, ``n``, ``seconds``, ``items_per_s`` and ``peak_rss_mib``; a compared row adds
``reference`` and ``ratio`` (the reference's time divided by ours, so above 1 means we are faster)
and, where the issue sets one, ``goal`` and ``met``. Rows also carry ``version`` (which tree was
measured) and ``machine``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from bench import cost

Medians = dict[tuple[str, str, int], dict[str, Any]]
_DETAIL_KEYS = (
    "cpu_seconds", "status", "loaded", "dead_lettered", "rows", "valid_documents", "invalid_documents", "p50_ms",
    "p99_ms", "p90_ms", "max_ms", "market_data_calls", "symbol_day_fetches", "max_fetches_per_symbol_day", "signals",
    "symbols", "subset", "subset_seconds", "agreement", "counts", "note", "phases", "stack", "dlt", "rows_b", "rows_c",
    "backend", "extrapolated_from", "vectorised_seconds", "function_ms_p50", "function_peak_rss_mib", "load_avg_1m",
)


def _row(case: str, n: int, result: dict[str, Any] | None, version: str, host: str) -> dict[str, Any]:
    row: dict[str, Any] = {"case": case, "n": n, "version": version, "machine": host}
    if not result:
        row.update(seconds=None, items_per_s=None, peak_rss_mib=None, error="not measured")
        return row
    if "error" in result or "skipped" in result:
        row.update(seconds=None, items_per_s=None, peak_rss_mib=result.get("peak_rss_mib"))
        row.update({k: result[k] for k in ("error", "skipped") if k in result})
        return row
    seconds = float(result["seconds"])
    items = int(result.get("items", n))
    row.update(
        seconds=round(seconds, 4), items_per_s=round(items / seconds, 1) if seconds > 0 else None,
        peak_rss_mib=result.get("peak_rss_mib"), runs=result.get("runs"), all_seconds=result.get("all_seconds"),
    )
    row.update({k: result[k] for k in _DETAIL_KEYS if k in result})
    return row


def _compare(
    row: dict[str, Any], reference: str, ref_row: dict[str, Any], goal: float | None, goal_text: str
) -> dict[str, Any]:
    out = {**row, "reference": reference, "ratio": None}
    if row.get("seconds") and ref_row.get("seconds"):
        out["ratio"] = round(ref_row["seconds"] / row["seconds"], 3)
    if goal is not None:
        out["goal"] = goal_text
        out["met"] = None if out["ratio"] is None else out["ratio"] >= goal
    return out


def _extrapolate(medians: Medians, label: str, sizes: list[int], n: int) -> dict[str, Any]:
    """dlt's time at ``n`` from its largest measured size plus its marginal time per document (the slope
    between its two largest sizes, so a fixed start-up cost is not multiplied); linear if only one size."""
    big = max(sizes)
    base = medians[(label, "a_dlt", big)]
    per_doc = base["seconds"] / big
    smaller = [s for s in sizes if s < big]
    if smaller:
        small = max(smaller)
        per_doc = (base["seconds"] - medians[(label, "a_dlt", small)]["seconds"]) / (big - small)
    return {**base, "seconds": base["seconds"] + per_doc * (n - big), "items": n}


def _loop_a(args: argparse.Namespace, medians: Medians, label: str, host: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    dlt_sizes = [n for n in args.sizes if (label, "a_dlt", n) in medians and "seconds" in medians[(label, "a_dlt", n)]]
    ours_by_n: dict[int, dict[str, Any]] = {}
    for n in args.sizes:
        ours = _row("loop_a", n, medians.get((label, "a", n)), label, host)
        ours_by_n[n] = ours
        pyd = _row("loop_a.pydantic", n, medians.get((label, "a_pydantic", n)), label, host)
        if (label, "a_dlt", n) in medians:
            dlt = _row("loop_a.dlt", n, medians[(label, "a_dlt", n)], label, host)
        elif dlt_sizes:
            dlt = _row("loop_a.dlt", n, _extrapolate(medians, label, dlt_sizes, n), label, host)
            dlt["extrapolated_from"] = max(dlt_sizes)
        else:
            dlt = _row("loop_a.dlt", n, None, label, host)
        rows.append(_compare(ours, "dlt", dlt, 10.0, ">= 10 (10x dlt's throughput)"))
        rows.append(_compare(ours, "pydantic", pyd, 0.8, ">= 0.8 (time <= 1.25x validation alone)"))
        rows += [dlt, pyd]
    if 1_000_000 in ours_by_n:
        big = ours_by_n[1_000_000]
        mem_ok = big.get("peak_rss_mib") is not None and big["peak_rss_mib"] < 1024
        rows.append({**big, "case": "loop_a.memory", "goal": "peak_rss_mib < 1024 at 1M", "met": mem_ok})
        if 100_000 in ours_by_n and big.get("seconds") and ours_by_n[100_000].get("seconds"):
            scale = big["seconds"] / ours_by_n[100_000]["seconds"]
            rows.append({**big, "case": "loop_a.scaling", "reference": "loop_a n=100000",
                         "ratio": round(scale, 3), "goal": "<= 11 (time(1M) / time(100k))", "met": scale <= 11})
    return rows


def _loops_bc(args: argparse.Namespace, medians: Medians, label: str, host: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    per_item: dict[int, float] = {}
    for n in args.bc_sizes:
        ours = _row("loops_bc", n, medians.get((label, "bc", n)), label, host)
        pandas = _row("loops_bc.pandas", n, medians.get((label, "bc_pandas", n)), label, host)
        compared = _compare(ours, "pandas", pandas, 50.0, ">= 50 (end to end: whole local path vs the pandas maths)")
        rows.append(compared)
        if ours.get("seconds"):
            per_item[n] = ours["seconds"] / n
        if "max_fetches_per_symbol_day" in ours:
            rows.append({**ours, "case": "loops_bc.calls", "goal": "<= 1 fetch per symbol, day and timeframe",
                         "met": ours["max_fetches_per_symbol_day"] <= 1})
        rows.append(pandas)
        if pandas.get("vectorised_seconds"):
            maths = {**pandas, "case": "loops_bc.maths", "seconds": round(pandas["vectorised_seconds"], 4),
                     "items_per_s": round(n / pandas["vectorised_seconds"], 1), "peak_rss_mib": None,
                     "subset": None, "note": "the library's vectorised barrier maths alone, bars in memory"}
            rows.append(_compare(maths, "pandas", pandas, 50.0, ">= 50 (the counterfactual maths alone)"))
    if len(per_item) >= 2:
        small, big = min(per_item), max(per_item)
        growth = per_item[big] / per_item[small]
        rows.append({"case": "loops_bc.linearity", "n": big, "version": label, "machine": host,
                     "seconds": None, "items_per_s": None, "peak_rss_mib": None,
                     "reference": f"loops_bc n={small}", "ratio": round(growth, 3),
                     "goal": "<= 1.1 (time per signal does not grow with the number of signals)",
                     "met": growth <= 1.1})
    return rows


def build_rows(args: argparse.Namespace, medians: Medians, labels: list[str], host: str) -> list[dict[str, Any]]:
    """Every result row, for every version measured; the first version is compared with the others."""
    rows: list[dict[str, Any]] = []
    for label in labels:
        if "a" in args.cases:
            rows += _loop_a(args, medians, label, host)
        if "bc" in args.cases:
            rows += _loops_bc(args, medians, label, host)
        real = medians.get((label, "real", args.real_n))
        if "real" in args.cases:
            rows.append(_row("real_stack", args.real_n, real, label, host))
        if "cost" in args.cases:
            rows.append({**cost.row(real), "version": label, "machine": host})
        if "latency" in args.cases:
            for backend in ("sqlite", "firestore"):
                row = _row(f"latency.{backend}", args.latency_n, medians.get((label, f"latency_{backend}",
                                                                             args.latency_n)), label, host)
                if row.get("p99_ms") is not None:
                    row.update(goal="p99 < 100 ms (the spec's tier)", met=row["p99_ms"] < 100)
                rows.append(row)
        if (label, "dashboard", args.dashboard_days) in medians:
            rows.append(_row("dashboard", args.dashboard_days, medians[(label, "dashboard", args.dashboard_days)],
                             label, host))
    if len(labels) > 1:
        _add_version_speedups(rows, labels)
    return rows


def carried_rows(previous: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``previous`` whose case group (``loop_a``, ``real_stack``...) ``fresh`` did not measure,
    marked ``carried`` so the table says they come from an earlier run."""
    measured = {r["case"].split(".")[0] for r in fresh}
    return [{**r, "carried": True} for r in previous if r["case"].split(".")[0] not in measured]


def _add_version_speedups(rows: list[dict[str, Any]], labels: list[str]) -> None:
    index = {(r["version"], r["case"], r["n"], r.get("reference")): r for r in rows}
    for row in rows:
        if row["version"] != labels[0]:
            continue
        other = index.get((labels[1], row["case"], row["n"], row.get("reference")))
        if other and row.get("seconds") and other.get("seconds"):
            row["speedup_vs_" + labels[1].split()[0]] = round(other["seconds"] / row["seconds"], 3)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(rows: list[dict[str, Any]], labels: list[str], host: str, started: dt.datetime) -> str:
    """The table as Markdown (readable in a terminal too), with the goals and the machine."""
    head = ["case", "version", "n", "seconds", "items/s", "peak MiB", "reference", "ratio", "goal", "met", "load"]
    lines = [f"Benchmark of {started:%Y-%m-%d %H:%M} UTC on {host}", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    seen_groups = list(dict.fromkeys(r["case"].split(".")[0] for r in rows))
    for group in seen_groups:
        group_rows = [r for r in rows if r["case"].split(".")[0] == group]
        group_rows.sort(key=lambda r: (r["n"] if isinstance(r["n"], int) else 0, r["case"], labels.index(r["version"])
                                       if r["version"] in labels else 0))
        for r in group_rows:
            note = r.get("error") or r.get("skipped")
            seconds = _fmt(r.get("seconds"))
            if r.get("extrapolated_from"):
                seconds += f" (extrapolated from n={r['extrapolated_from']:,})"
            if r.get("subset") and r.get("subset") != r.get("n"):
                seconds += f" (extrapolated from {r['subset']:,} signals)"
            version = r["version"] + (f" (earlier run, {r.get('measured_at') or 'date unknown'})"
                                      if r.get("carried") else "")
            cells = [r["case"], version, _fmt(r["n"]), seconds, _fmt(r.get("items_per_s"), 0),
                     _fmt(r.get("peak_rss_mib"), 0), r.get("reference") or "", _fmt(r.get("ratio"), 2),
                     r.get("goal") or "", _fmt(r.get("met")), _fmt(r.get("load_avg_1m"), 1)]
            if note:
                cells[3] = ("skipped: " if r.get("skipped") else "error: ") + str(note)[:120]
            elif r.get("usd_per_million") is not None:
                cells[3] = f"${r['usd_per_million']:,.2f} per 1M records (see below)"
            lines.append("| " + " | ".join(cells) + " |")
    extras = [r for r in rows if r.get("p50_ms") is not None]
    if extras:
        lines += ["", "Latency (ms):"]
        for r in extras:
            own = f" (the function itself: p50 {r['function_ms_p50']:.0f})" if r.get("function_ms_p50") else ""
            if r.get("function_peak_rss_mib"):
                own += f" (a function worker's peak memory: {r['function_peak_rss_mib']:.0f} MiB)"
            lines.append(f"- {r['case']} ({r['version']}): p50 {r['p50_ms']:.2f}, p99 {r['p99_ms']:.2f}{own}")
    costs = [r for r in rows if r["case"] == "cost" and r.get("usd_per_million") is not None]
    for r in costs:
        lines += ["", cost.describe(r)]
    if len(labels) > 1:
        key = "speedup_vs_" + labels[1].split()[0]
        lines += ["", f"Speed-up of {labels[0]} over {labels[1]} (their time / ours):"]
        for r in rows:
            if key in r:
                lines.append(f"- {r['case']} n={r['n']:,}{' vs ' + r['reference'] if r.get('reference') else ''}: "
                             f"{r[key]:.2f}x")
    return "\n".join(lines)


README_START = "<!-- bench:results:start -->"
README_END = "<!-- bench:results:end -->"


def update_readme(path: Path, table: str) -> None:
    """Replace the results section of ``bench/README.md`` with ``table``."""
    text = path.read_text() if path.exists() else f"{README_START}\n{README_END}\n"
    if README_START not in text or README_END not in text:
        text += f"\n{README_START}\n{README_END}\n"
    before, rest = text.split(README_START, 1)
    _, after = rest.split(README_END, 1)
    path.write_text(f"{before}{README_START}\n{table}\n{README_END}{after}")
