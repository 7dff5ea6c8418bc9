"""The ideal a server is measured against: the M/G/c queue, replayed (pure functions, no I/O).

c workers that each serve one request at a time, fed by one shared FIFO queue, is the M/G/c
queue. Replaying the arrival times the load generator scheduled, with the service time the
app measured for each request, through that queue gives the latency every request would have
had on an ideal server with the same c workers. A request that first awaits I/O needs no
worker for that part: it joins the queue only when its I/O is done, and its latency still
counts from its arrival.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """One request as the ideal sees it (all times in seconds)."""

    arrival: float  # when the client scheduled it
    service: float  # how long it holds a worker
    delay: float = 0.0  # awaited I/O before it needs a worker (joins the queue at arrival + delay)


def replay(jobs: Sequence[Job], servers: int) -> list[float]:
    """Latency (finish - arrival) of each job on ``servers`` FIFO servers, in the jobs' order.

    Jobs are served in the order they join the queue (ties: their order in ``jobs``), each by
    the server that frees up first, which is what one shared FIFO queue does.

    Raises ValueError when ``servers`` < 1 or a service time or delay is negative.
    """
    if servers < 1:
        raise ValueError(f"need at least one server, got {servers}")
    for job in jobs:
        if job.service < 0 or job.delay < 0:
            raise ValueError(f"service time and delay must not be negative: {job}")
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival + jobs[i].delay, i))
    free_at = [-math.inf] * servers  # a min-heap: when each server is next free
    latencies = [0.0] * len(jobs)
    for i in order:
        job = jobs[i]
        start = max(job.arrival + job.delay, heapq.heappop(free_at))
        finish = start + job.service
        heapq.heappush(free_at, finish)
        latencies[i] = finish - job.arrival
    return latencies


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ascending ``ordered``, interpolating between ranks.

    Raises ValueError when ``ordered`` is empty or q is outside 0-100.
    """
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0-100, got {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Mean and tail of a set of latencies (same unit as the values)."""

    count: int
    mean: float
    p50: float
    p99: float
    p999: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.p50, "p99": self.p99, "p99.9": self.p999}


def summarize(values: Sequence[float]) -> Summary:
    """Count, mean, p50, p99 and p99.9 of ``values``.

    Raises ValueError when ``values`` is empty.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("summary of no values")
    return Summary(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        p999=percentile(ordered, 99.9),
    )
