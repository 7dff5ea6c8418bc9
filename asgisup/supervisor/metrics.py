"""What the supervisor knows, as data (a snapshot) and as Prometheus text (pure functions).

The text format (version 0.0.4) is written here rather than with prometheus-client: the
figures already live in the scoreboard, which the supervisor reads whole once per scrape, and
the format for a few families of gauges, counters and histograms is a few dozen lines, where
the library's multiprocess mode would add a directory of mmap files per worker and a second
copy of every figure. The tests parse the output with prometheus-client's own parser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from asgisup.scoreboard import LATENCY_BUCKETS

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True)
class WorkerFigures:
    index: int  # 1-based, as the log says "Worker 3"
    pid: int
    generation: int
    state: str  # booting, ready, draining
    load: int
    ceiling: int
    accepted: int
    requests: int
    responses: tuple[int, ...]  # by CLASSES
    heartbeat_age: float
    resident_bytes: int | None
    full_seconds: float
    latency_buckets: tuple[int, ...]  # per LATENCY_BUCKETS bucket, +Inf last (not cumulative)
    latency_sum: float
    websockets: int = 0  # open; they hold no slot of the ceiling
    connections: int = 0  # open, idle keep-alive ones too


@dataclass(frozen=True)
class Snapshot:
    app: str
    size: int  # workers wanted
    generation: int
    stopping: bool
    queue_depth: int | None  # the shared accept queue (TCP_INFO); None when unknown
    queue_limit: int | None
    workers: list[WorkerFigures] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)  # by reason

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Snapshot:
        workers = [
            WorkerFigures(
                **{
                    **figures,
                    "responses": tuple(figures["responses"]),
                    "latency_buckets": tuple(figures["latency_buckets"]),
                }
            )
            for figures in data["workers"]
        ]
        return Snapshot(**{**data, "workers": workers})

    def ready(self, queue_threshold: int) -> bool:
        """Whether the server can take work: some worker is ready and either one has room or
        the accept queue holds no more than ``queue_threshold`` connections."""
        ready = [w for w in self.workers if w.state == "ready"]
        if self.stopping or not ready:
            return False
        if any(w.ceiling == 0 or w.load < w.ceiling for w in ready):
            return True
        return self.queue_depth is None or self.queue_depth <= queue_threshold


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: object) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")


def render(snapshot: Snapshot) -> str:
    """The snapshot in the Prometheus text exposition format."""
    out = _Writer()
    out.family("asgisup_workers_wanted", "gauge", "Worker processes the supervisor keeps.")
    out.sample("asgisup_workers_wanted", snapshot.size)
    out.family("asgisup_generation", "gauge", "Code generation (1, then +1 per SIGHUP).")
    out.sample("asgisup_generation", snapshot.generation)
    if snapshot.queue_depth is not None:
        out.family(
            "asgisup_accept_queue_length", "gauge", "Connections waiting in the accept queue."
        )
        out.sample("asgisup_accept_queue_length", snapshot.queue_depth)
        out.family("asgisup_accept_queue_limit", "gauge", "Capacity of the accept queue.")
        out.sample("asgisup_accept_queue_limit", snapshot.queue_limit or 0)
    out.family("asgisup_worker_restarts_total", "counter", "Workers replaced, by reason.")
    for reason, count in sorted(snapshot.restarts.items()):
        out.sample("asgisup_worker_restarts_total", count, reason=reason)

    workers = sorted(snapshot.workers, key=lambda w: (w.index, w.pid))
    _per_worker(out, workers)
    return "\n".join(out.lines) + "\n"


def _per_worker(out: _Writer, workers: Iterable[WorkerFigures]) -> None:
    workers = list(workers)
    out.family("asgisup_worker_info", "gauge", "One per worker process, with its state.")
    for w in workers:
        out.sample(
            "asgisup_worker_info", 1, worker=w.index, pid=w.pid, generation=w.generation,
            state=w.state,
        )  # fmt: skip
    simple = (  # (name, type, help, WorkerFigures attribute)
        ("load", "gauge", "Connections holding work (accepted and waiting, or with a request).",
         "load"),
        ("ceiling", "gauge", "The worker's in-flight ceiling (0: none).", "ceiling"),
        ("websockets", "gauge", "Open WebSockets (not counted in load).", "websockets"),
        ("connections", "gauge", "Open connections, idle keep-alive ones too.", "connections"),
        ("heartbeat_age_seconds", "gauge", "Time since the event loop last beat.",
         "heartbeat_age"),
        ("resident_bytes", "gauge", "Resident memory.", "resident_bytes"),
        ("accepted_total", "counter", "Connections accepted.", "accepted"),
        ("requests_total", "counter", "Requests started.", "requests"),
        ("full_seconds_total", "counter", "Time spent at the ceiling, accepting nothing.",
         "full_seconds"),
    )  # fmt: skip
    for suffix, kind, help_text, attribute in simple:
        name = f"asgisup_worker_{suffix}"
        out.family(name, kind, help_text)
        for w in workers:
            value = getattr(w, attribute)
            if value is not None:  # resident memory is unknown once a process is gone
                out.sample(name, value, worker=w.index, pid=w.pid)
    out.family("asgisup_worker_responses_total", "counter", "Responses sent, by status class.")
    for w in workers:
        for status_class, count in zip(CLASSES, w.responses, strict=True):
            out.sample(
                "asgisup_worker_responses_total", count, worker=w.index, pid=w.pid,
                status_class=status_class,
            )  # fmt: skip
    name = "asgisup_request_duration_seconds"
    out.family(name, "histogram", "From the request head to the end of the response.")
    for w in workers:
        running = 0
        bounds = [_number(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
        for le, count in zip(bounds, w.latency_buckets, strict=True):
            running += count
            out.sample(f"{name}_bucket", running, worker=w.index, pid=w.pid, le=le)
        out.sample(f"{name}_sum", w.latency_sum, worker=w.index, pid=w.pid)
        out.sample(f"{name}_count", running, worker=w.index, pid=w.pid)


def table(snapshot: Snapshot) -> str:
    """The snapshot as the table ``asgisup status`` prints."""
    queue = (
        f"{snapshot.queue_depth} of {snapshot.queue_limit}"
        if snapshot.queue_depth is not None
        else "unknown"
    )
    lines = [
        f"{snapshot.app}: {len(snapshot.workers)} worker(s) of {snapshot.size} wanted, "
        f"generation {snapshot.generation}, accept queue {queue}"
        + (", stopping" if snapshot.stopping else ""),
        "",
        f"{'worker':>6} {'pid':>8} {'gen':>4} {'state':<9} {'load':>9} {'conns':>6} "
        f"{'accepted':>9} {'requests':>9} {'2xx':>8} {'4xx':>6} {'5xx':>6} {'full s':>8} "
        f"{'beat':>6} {'rss MiB':>8}",
    ]
    for w in sorted(snapshot.workers, key=lambda w: (w.index, w.pid)):
        load = f"{w.load}/{w.ceiling}" if w.ceiling else f"{w.load}/-"
        rss = f"{w.resident_bytes / 2**20:.0f}" if w.resident_bytes is not None else "-"
        lines.append(
            f"{w.index:>6} {w.pid:>8} {w.generation:>4} {w.state:<9} {load:>9} "
            f"{w.connections:>6} {w.accepted:>9} {w.requests:>9} {w.responses[1]:>8} "
            f"{w.responses[3]:>6} {w.responses[4]:>6} {w.full_seconds:>8.1f} "
            f"{w.heartbeat_age:>5.1f}s {rss:>8}"
        )
    if snapshot.restarts:
        restarts = ", ".join(f"{k} {v}" for k, v in sorted(snapshot.restarts.items()))
        lines += ["", f"restarts: {restarts}"]
    return "\n".join(lines)
