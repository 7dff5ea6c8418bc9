"""PNG plots of the results (matplotlib's object API with the Agg canvas: no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from benchmarks.analysis import BLOCKING_LIMITS, STATS

_COLOURS = ("#4c72b0", "#55a868", "#dd8452", "#c44e52")


def _grouped(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(run["scenario"], []).append(run)
    return grouped


def _figure(rows: int) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(10, 2.9 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return figure, axes


# Candidate ticks of the log-scale ratio axis, most wanted first.
_RATIO_TICKS = (1, 1.1, 2, 10, 5, 100, 1.5, 3, 20, 50, 200, 500, 1.25, 0.9, 0.8, 0.5)


def _ratio_ticks(low: float, high: float) -> list[float]:
    """Ticks between low and high, no two closer than a tenth of the axis (log scale)."""
    gap = math.log(high / low) / 10
    ticks: list[float] = []
    for tick in _RATIO_TICKS:
        if low <= tick <= high and all(abs(math.log(tick / t)) >= gap for t in ticks):
            ticks.append(tick)
    return sorted(ticks)


def _ratio_axis(ax: Axes, scenario: str, runs: Sequence[Mapping[str, Any]]) -> None:
    width = 0.8 / len(STATS)
    values: list[float] = [1.0]
    for k, stat in enumerate(STATS):
        xs = [i + (k - (len(STATS) - 1) / 2) * width for i in range(len(runs))]
        ys = [run["ratio"][stat] if run["ratio"] else float("nan") for run in runs]
        values += [y for y in ys if y == y]  # NaN: no request of that run succeeded
        bars = ax.bar(xs, ys, width, label=stat, color=_COLOURS[k])
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    if scenario in BLOCKING_LIMITS:
        limit = BLOCKING_LIMITS[scenario]
        ax.axhline(limit, color="#c44e52", linestyle="--", linewidth=0.8, label=f"{limit:g}x")
    low, high = min(0.9, min(values) * 0.95), max(values) * 1.3
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.yaxis.set_major_locator(FixedLocator(_ratio_ticks(low, high)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(runs)), [run["label"] for run in runs])
    ax.set_title(f"{scenario}: measured latency / M/G/c ideal (log scale)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)


def latency(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Bars of measured/ideal at mean, p50, p99, p99.9: one panel per scenario."""
    grouped = _grouped(runs)
    figure, axes = _figure(len(grouped))
    for ax, (scenario, scenario_runs) in zip(axes, grouped.items(), strict=True):
        _ratio_axis(ax, scenario, scenario_runs)
    figure.savefig(path, dpi=100)


def workers(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Each worker's share of the requests, most first: one panel per scenario."""
    grouped = _grouped(runs)
    figure, axes = _figure(len(grouped))
    for ax, (scenario, scenario_runs) in zip(axes, grouped.items(), strict=True):
        n = max(run["workers"] for run in scenario_runs)
        width = 0.8 / n
        for i, run in enumerate(scenario_runs):
            counts = [*run["per_worker"], *[0] * (n - len(run["per_worker"]))]
            total = sum(counts) or 1
            xs = [i + (k - (n - 1) / 2) * width for k in range(n)]
            shares = [100 * c / total for c in counts]
            ax.bar(xs, shares, width, color="#4c72b0", edgecolor="white", linewidth=0.5)
        ax.axhline(100 / n, color="black", linestyle="--", linewidth=0.8, label="even share")
        ax.set_xticks(range(len(scenario_runs)), [run["label"] for run in scenario_runs])
        ax.set_ylabel("% of requests")
        ax.set_ylim(0, max(35.0, ax.get_ylim()[1]))
        ax.set_title(f"{scenario}: share of requests per worker, busiest first", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=100)
