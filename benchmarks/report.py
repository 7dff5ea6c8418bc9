"""Turn the results (the dict run.py saves as JSON) into console tables and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.analysis import STATS

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
PACKAGES = ("asgisup", "uvicorn", "gunicorn", "uvloop", "httptools", "h11")


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.processor() or "unknown"


def machine(root: Path) -> dict[str, Any]:
    """What the numbers were measured on."""
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    except OSError:
        somaxconn = "unknown"
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "somaxconn": somaxconn,
        "revision": _first_line(["git", "-C", str(root), "describe", "--always", "--dirty"]),
    }


def _errors(run: Mapping[str, Any]) -> str:
    errors: dict[str, int] = run["errors"]
    total = sum(errors.values())
    if not total:
        return "0"
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items()))
    return f"{total} ({kinds})"


def _stat(run: Mapping[str, Any], stat: str) -> tuple[float, float] | None:
    if not run["measured"]:
        return None
    return run["measured"][stat], run["ratio"][stat]


def _workers(run: Mapping[str, Any]) -> list[int]:
    counts: list[int] = list(run["per_worker"])
    return counts + [0] * (run["workers"] - len(counts))


def console_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """One scenario's runs as a fixed-width table (ms, and x the ideal)."""
    head = f"{'server':<16}{'req':>6}{'err':>5}{'retry':>6}"
    head += "".join(f"{stat + ' ms':>17}" for stat in STATS)
    head += f"{'close%':>8}  per worker"
    lines = [head]
    for run in runs:
        row = f"{run['label']:<16}{run['requests']:>6}{sum(run['errors'].values()):>5}"
        row += f"{run['retries']:>6}"
        for stat in STATS:
            value = _stat(run, stat)
            row += f"{value[0]:>10.1f} {value[1]:>5.2f}x" if value else f"{'-':>17}"
        close = run["close_pct"]
        row += f"{close:>7.1f}%" if close is not None else f"{'-':>8}"
        row += "  " + "/".join(str(n) for n in _workers(run))
        lines.append(row)
    return "\n".join(lines)


def _by_scenario(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(run["scenario"], []).append(run)
    return grouped


def _markdown_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| server | requests | errors | retries | mean | p50 | p99 | p99.9 | ideal mean / p99 "
        "| Connection: close | requests per worker |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for run in runs:
        cells = [f"**{run['label']}**", str(run["requests"]), _errors(run), str(run["retries"])]
        for stat in STATS:
            value = _stat(run, stat)
            cells.append(f"{value[1]:.2f}x ({value[0]:.1f} ms)" if value else "-")
        ideal = run["ideal"]
        cells.append(f"{ideal['mean']:.1f} / {ideal['p99']:.1f} ms" if ideal else "-")
        close = run["close_pct"]
        cells.append(f"{close:.1f}%" if close is not None else "-")
        cells.append(" · ".join(str(n) for n in _workers(run)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _machine_lines(results: Mapping[str, Any]) -> list[str]:
    m = results["machine"]
    s = results["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    mix = " / ".join(f"{w * 100:g}% {ms:g} ms" for w, ms in s["mix"])
    return [
        f"- Command: `{results['command']}` (revision `{m['revision']}`), {results['date']}.",
        f"- Machine: {m['cpu']}, {m['cpus']} logical CPUs ({m['usable_cpus']} usable), "
        f"{m['kernel']}, {m['python']}, somaxconn {m['somaxconn']}.",
        f"- Versions: {versions}; {m['wrk'] or 'wrk not found'}.",
        f"- Settings: {s['workers']} workers per server, {s['duration']:g} s of load per run, "
        f"seed {s['seed']}, blocking mix {mix}, keep-alive pool of {s['pool_capacity']}.",
    ]


def _hello_lines(hello: Mapping[str, Any]) -> list[str]:
    lines = [
        f"asgisup, {hello['workers']} workers, ceiling {hello['ceiling']}, "
        f"`wrk -t1 -c{hello['connections']} -d{hello['duration']:g}s` on `/hello`, "
        "rounds alternating on a fresh server each:",
        "",
        "| round | busy-close on (req/s) | off (req/s) | on / off |",
        "|--:|--:|--:|--:|",
    ]
    for i, (on, off) in enumerate(zip(hello["on"], hello["off"], strict=True), 1):
        lines.append(f"| {i} | {on:.0f} | {off:.0f} | {on / off:.3f} |")
    lines.append(
        f"| median | {hello['median_on']:.0f} | {hello['median_off']:.0f} | "
        f"**{hello['ratio']:.3f}** |"
    )
    return lines


def markdown(results: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The generated section of docs/benchmarks.md; ``images`` maps plot names to links."""
    out = [*_machine_lines(results), "", "### Targets", "", "```"]
    out += [t["line"] for t in results["targets"]]
    out += results["best_lines"]
    out += [results["summary"], "```", ""]
    grouped = _by_scenario(results["runs"])
    if grouped:
        out += ["### Latency against the ideal", ""]
        out += ["Each cell: measured / ideal (measured ms) for the requests that succeeded.", ""]
        if "latency" in images:
            out += [f"![measured / ideal latency]({images['latency']})", ""]
        for name, runs in grouped.items():
            description = results["scenarios"][name]
            out += [f"#### `{name}`: {description}, {runs[0]['rate']:.1f} requests/s", ""]
            out += [*_markdown_table(runs), ""]
        if "workers" in images:
            out += ["### Requests per worker", ""]
            out += [f"![share of requests per worker]({images['workers']})", ""]
    if results["hello"]:
        out += ["### Hello-world keep-alive throughput", "", *_hello_lines(results["hello"]), ""]
    return "\n".join(out).rstrip() + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace what lies between the result markers of ``path`` (appended if missing)."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        text = before + block + after
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)
