"""Run the benchmark suite: every scenario against every server, each run replayed through the
M/G/c ideal; print the tables and the PASS/FAIL lines, save the results and regenerate
docs/benchmarks.md (see that page for what is measured and why).

    .venv/bin/python -m benchmarks.run [--duration 15] [--workers 4] [--quick]
    .venv/bin/python -m benchmarks.run --scenarios new,pool --servers asgisup-c1,uvicorn --quick
    .venv/bin/python -m benchmarks.run --replot benchmarks/results/latest.json

The exit status is 0 whatever the verdicts: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import analysis, loadgen, plots, report
from benchmarks.busy_close_cost import compare
from benchmarks.scenarios import SCENARIOS, Scenario
from benchmarks.servers import HOST, ROOT, ServerFailed, ServerSpec, parse_server, serving

RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
DOC_IMAGES = ROOT / "docs" / "img"
BASE_SERVERS = ("asgisup-c1", "asgisup-c0", "uvicorn", "gunicorn")
ALL_SCENARIOS = (*SCENARIOS, "hello")
RUN_OVERHEAD_S = 3.0  # start, settle, drain and stop, per run (estimate)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, help="seconds of load per run (15; quick: 4)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes per server")
    parser.add_argument("--quick", action="store_true", help="short runs for development")
    parser.add_argument(
        "--write-docs",
        action=argparse.BooleanOptionalAction,
        help="regenerate docs/benchmarks.md, docs/img/ and results/latest.json "
        "(default: yes, except with --quick, which writes benchmarks/results/quick.*)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument(
        "--servers",
        help="comma-separated: asgisup-cN, uvicorn, gunicorn (default: "
        f"{','.join(BASE_SERVERS)}, plus the --io-ceilings in the io scenarios)",
    )
    parser.add_argument("--io-ceilings", default="2,3,4", help="extra asgisup ceilings for io-*")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pool-capacity", type=int, default=loadgen.POOL_CAPACITY)
    parser.add_argument("--hello-rounds", type=int, help="wrk rounds per side (5; quick: 2)")
    parser.add_argument("--hello-duration", type=float, help="s per wrk round (5; quick: 2)")
    parser.add_argument("--hello-connections", type=int, default=64)
    parser.add_argument("--replot", type=Path, metavar="JSON", help="only re-render saved results")
    return parser


def _servers_for(scenario: Scenario, args: argparse.Namespace) -> list[ServerSpec]:
    if args.servers:
        return [parse_server(key) for key in _csv(args.servers)]
    keys = list(BASE_SERVERS)
    if scenario.name.startswith("io-"):
        keys += [f"asgisup-c{c}" for c in _csv(args.io_ceilings)]
    return [parse_server(key) for key in keys]


def _measure(
    scenario: Scenario, spec: ServerSpec, args: argparse.Namespace, duration: float
) -> analysis.RunSummary:
    seed = args.seed + list(SCENARIOS).index(scenario.name)  # same arrivals for every server
    arrivals = scenario.arrivals(args.workers, duration, seed)
    started = time.monotonic()
    with serving(spec, args.workers, RESULTS / "logs" / f"{scenario.name}-{spec.key}.log") as port:
        records = loadgen.run(HOST, port, arrivals, scenario.mode, pool_capacity=args.pool_capacity)
    wall = time.monotonic() - started
    return analysis.summarize_run(
        scenario, spec, args.workers, records, wall, scenario.rate(args.workers)
    )


def _progress(run: analysis.RunSummary) -> str:
    if run.ratio is None:
        return f"  {run.label:<16} no request succeeded ({run.errors})"
    return (
        f"  {run.label:<16} {run.requests} requests, {run.error_count} errors, "
        f"mean {run.ratio['mean']:.2f}x, p99 {run.ratio['p99']:.2f}x the ideal "
        f"({run.wall_s:.0f} s)"
    )


def _publish(results: Mapping[str, Any], write_docs: bool) -> list[Path]:
    """Save the JSON, the plots and the markdown; the paths written."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if write_docs:
        json_path, md_path, image_dir = RESULTS / "latest.json", DOCS, DOC_IMAGES
    else:
        json_path, md_path, image_dir = (
            RESULTS / "quick.json",
            RESULTS / "quick.md",
            RESULTS / "quick-img",
        )
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    written = [json_path]
    images: dict[str, str] = {}
    if results["runs"]:
        image_dir.mkdir(parents=True, exist_ok=True)
        for name, draw in (("latency", plots.latency), ("workers", plots.workers)):
            path = image_dir / f"bench-{name}.png"
            draw(results["runs"], path)
            images[name] = path.relative_to(md_path.parent).as_posix()
            written.append(path)
    section = report.markdown(results, images)
    if write_docs:
        report.write_section(md_path, section)
    else:
        md_path.write_text(f"# Benchmark results (not published)\n\n{section}")
    written.append(md_path)
    return written


def _verdicts(
    runs: Sequence[Mapping[str, Any]],
    hello: Mapping[str, Any] | None,
    failed: Sequence[tuple[str, str]],
) -> tuple[list[analysis.Target], list[str], str]:
    checked = analysis.targets(runs, hello)
    checked += [analysis.Target(s, f"{label} came up", None, 0) for s, label in failed]
    best_lines = [analysis.best_line(best) for best in analysis.best_ceilings(runs)]
    failures = [t for t in checked if not t.passed]
    summary = f"SUMMARY: {len(checked) - len(failures)} of {len(checked)} targets passed"
    if failures:
        summary += "; failed: " + "; ".join(f"{t.scenario} {t.what}" for t in failures)
    return checked, best_lines, summary


def _print_verdicts(results: Mapping[str, Any]) -> None:
    print()
    for target in results["targets"]:
        print(target["line"])
    for line in results["best_lines"]:
        print(line)
    print(results["summary"])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    write_docs = args.write_docs if args.write_docs is not None else not args.quick
    if args.replot:
        saved = json.loads(args.replot.read_text())
        for path in _publish(saved, write_docs):
            print(f"wrote {path.relative_to(ROOT)}")
        _print_verdicts(saved)
        return 0
    names = _csv(args.scenarios)
    unknown = [name for name in names if name not in ALL_SCENARIOS]
    if unknown:
        _parser().error(f"unknown scenario(s) {unknown}; choose from {list(ALL_SCENARIOS)}")
    duration = args.duration or (4.0 if args.quick else 15.0)
    hello_rounds = args.hello_rounds or (2 if args.quick else 5)
    hello_duration = args.hello_duration or (2.0 if args.quick else 5.0)
    scenarios = [SCENARIOS[name] for name in names if name in SCENARIOS]
    try:
        plan = [(s, spec) for s in scenarios for spec in _servers_for(s, args)]
    except ValueError as exc:
        _parser().error(str(exc))
    estimate = len(plan) * (duration + RUN_OVERHEAD_S)
    if "hello" in names:
        estimate += hello_rounds * 2 * (hello_duration + 2)
    hello_note = " + hello check" if "hello" in names else ""
    print(f"{len(plan)} runs of {duration:g} s{hello_note}: about {estimate / 60:.1f} min")

    started = datetime.now(timezone.utc)
    runs: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for scenario in scenarios:
        rate = scenario.rate(args.workers)
        print(f"\n{scenario.name}: {scenario.description}; {rate:.1f} requests/s")
        done: list[dict[str, Any]] = []
        for spec in (spec for s, spec in plan if s is scenario):
            try:
                summary = _measure(scenario, spec, args, duration)
            except ServerFailed as exc:
                print(f"  {spec.label:<16} FAILED to start: {exc}")
                failed.append((scenario.name, spec.label))
                continue
            print(_progress(summary))
            done.append(summary.as_dict())
        if done:
            print(report.console_table(done))
        runs += done

    hello = None
    if "hello" in names:
        print(f"\nhello: busy-close on/off, {hello_rounds} alternating rounds")
        try:
            hello = compare(
                rounds=hello_rounds,
                duration=hello_duration,
                connections=args.hello_connections,
                workers=args.workers,
                ceiling=1,
                log_dir=RESULTS / "logs",
            ).as_dict()
        except (ServerFailed, OSError, subprocess.SubprocessError, RuntimeError) as exc:
            print(f"  hello check failed: {exc}")
            failed.append(("hello", "asgisup c=1 under wrk"))
        else:
            print(f"  on {hello['on']}\n  off {hello['off']}")

    checked, best_lines, summary_line = _verdicts(runs, hello, failed)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join([".venv/bin/python", "-m", "benchmarks.run", *given])
    results: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": report.machine(ROOT),
        "settings": {
            "workers": args.workers,
            "duration": duration,
            "seed": args.seed,
            "mix": loadgen.DEFAULT_MIX,
            "pool_capacity": args.pool_capacity,
            "quick": args.quick,
        },
        "scenarios": {s.name: s.description for s in scenarios},
        "runs": runs,
        "hello": hello,
        "targets": [t.as_dict() for t in checked],
        "best_lines": best_lines,
        "summary": summary_line,
    }
    print()
    for path in _publish(results, write_docs):
        print(f"wrote {path.relative_to(ROOT)}")
    _print_verdicts(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
