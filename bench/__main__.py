"""The benchmark command: ``python -m bench`` (see ``bench/README.md``).

    python -m bench [--sizes 10000,100000,1000000] [--cases a,bc,real,cost,latency] [--repeat 3]
                    [--compare-ref GITREF] [--output bench/results.json] [--update-readme]

Every measurement runs in a fresh process (so peak memory is per case), ``--repeat`` times,
interleaved with its references so that drift on the machine hits both alike; the table and
``results.json`` report medians. ``--compare-ref`` runs the same measurements against another commit
checked out in a temporary ``git worktree`` and shows both versions side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import report
from bench.runner import REPO_ROOT, Measurement, Version, current_version, machine, median_of, run_once, worktree

ALL_CASES = ("a", "bc", "real", "cost", "latency", "dashboard")


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_ints, default=[10_000, 100_000, 1_000_000],
                        help="Loop A sizes (closed positions), comma-separated")
    parser.add_argument("--cases", default=",".join(ALL_CASES),
                        help=f"comma-separated subset of {','.join(ALL_CASES)} (dashboard runs only if present)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--compare-ref", default=None, help="also measure this git ref, side by side")
    parser.add_argument("--bc-sizes", type=_ints, default=[25_000, 100_000], help="signals for Loops B and C")
    parser.add_argument("--pandas-subset", type=int, default=2_000,
                        help="signals the per-signal pandas reference runs on (time extrapolated linearly)")
    parser.add_argument("--dlt-max-n", type=int, default=100_000,
                        help="largest size dlt runs at; above it dlt's time is extrapolated from its marginal rate "
                             "(dlt takes about 4 GiB and 15 minutes per run at 1M here)")
    parser.add_argument("--reference-repeat", type=int, default=None,
                        help="runs per reference measurement (default: --repeat)")
    parser.add_argument("--real-n", type=int, default=10_000, help="items through the emulator stack")
    parser.add_argument("--real-repeat", type=int, default=1,
                        help="runs of the emulator stack (about 20 minutes each at 10k items on 2 cores)")
    parser.add_argument("--latency-n", type=int, default=1_000, help="signal writes per latency measurement")
    parser.add_argument("--dashboard-days", type=int, default=365, help="days of data for the dashboard case")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "results.json")
    parser.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of cases not run now from the existing --output (marked carried, each "
                             "with its own measured_at), e.g. the 20-minute real_stack/cost run of earlier")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.cases) - set(ALL_CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {','.join(ALL_CASES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, Measurement, int]]:
    """Every (group, measurement, runs) to make, in the order they are interleaved."""
    ref_repeat = args.reference_repeat or args.repeat
    out: list[tuple[str, Measurement, int]] = []
    if "a" in args.cases:
        for n in args.sizes:
            out.append(("a", Measurement("a", n), args.repeat))
            out.append(("a", Measurement("a_pydantic", n), ref_repeat))
            if n <= args.dlt_max_n:
                out.append(("a", Measurement("a_dlt", n, timeout=7200), ref_repeat))
    if "bc" in args.cases:
        for n in args.bc_sizes:
            out.append(("bc", Measurement("bc", n), args.repeat))
            out.append(("bc", Measurement("bc_pandas", n, {"subset": min(n, args.pandas_subset)}), ref_repeat))
    if "real" in args.cases or "cost" in args.cases:
        out.append(("real", Measurement("real", args.real_n, timeout=7200), args.real_repeat))
    if "latency" in args.cases:
        out.append(("latency", Measurement("latency_sqlite", args.latency_n), args.repeat))
        out.append(("latency", Measurement("latency_firestore", args.latency_n), args.repeat))
    if "dashboard" in args.cases and (REPO_ROOT / "bench" / "bench_dashboard.py").exists():
        out.append(("dashboard", Measurement("dashboard", args.dashboard_days), args.repeat))
    return out


@contextlib.contextmanager
def versions(compare_ref: str | None) -> Iterator[list[Version]]:
    """This checkout, and the ``--compare-ref`` worktree while the block runs."""
    here = current_version()
    if not compare_ref:
        yield [here]
        return
    with worktree(compare_ref) as other:
        yield [here, other]


def measure(
    args: argparse.Namespace, trees: list[Version], say: Callable[[str], None]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Run the plan ``--repeat`` times, interleaving measurements and versions; medians by key."""
    todo = plan(args)
    for version in trees:  # generate data (not timed) before anything is measured
        for n in sorted({m.n for _, m, _ in todo if m.target.startswith("a")}):
            result = run_once(version, Measurement("prepare_a", n))
            if "error" in result:
                say(f"  data for n={n} ({version.label}): {result['error']}")
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    rounds = max(r for _, _, r in todo) if todo else 0
    for round_no in range(rounds):
        for _, m, repeat in todo:
            if round_no >= repeat:
                continue
            for version in trees:
                result = run_once(version, m)
                runs.setdefault((version.label, m.target, m.n), []).append(result)
                shown = result.get("error") or result.get("skipped") or f"{result.get('seconds', 0):.3f} s"
                say(f"  [{round_no + 1}/{repeat}] {m.target:<18} n={m.n:<8} {version.label:<22} {str(shown)[:160]}")
    return {key: median_of(results) for key, results in runs.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write ``results.json``."""
    args = parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = dt.datetime.now(dt.UTC)
    with versions(args.compare_ref) as trees:
        medians = measure(args, trees, say)
        labels = [v.label for v in trees]
    host = machine()
    rows = report.build_rows(args, medians, labels, host)
    for row in rows:
        row.setdefault("measured_at", started.isoformat(timespec="seconds"))
    if args.keep and args.output.exists():
        rows += report.carried_rows(json.loads(args.output.read_text()), rows)
    table = report.render(rows, labels, host, started)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    say(f"wrote {args.output}")
    if args.update_readme:
        report.update_readme(REPO_ROOT / "bench" / "README.md", table)
        say("updated bench/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
