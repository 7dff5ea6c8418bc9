"""How many CPUs this process may really use: the basis of ``--workers auto``.

``os.cpu_count()`` counts the machine's CPUs; a container usually gets fewer. Two limits apply,
and the smaller one wins: the CPU affinity mask (``taskset``, ``docker --cpuset-cpus``), and the
cgroup v2 bandwidth quota (``docker --cpus``, Kubernetes CPU limits), which leaves every CPU in
the mask but throttles the group once it has used ``quota`` microseconds per ``period``. Starting
more workers than the quota allows only makes them take turns.
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"


def parse_cpu_max(text: str) -> int | None:
    """The whole CPUs a cgroup v2 ``cpu.max`` grants ("150000 100000" -> 2), at least 1.

    Returns None when there is no quota ("max 100000") or the text is not in that format.
    Raises nothing.
    """
    fields = text.split()
    if not 1 <= len(fields) <= 2 or fields[0] == "max":
        return None
    try:
        # The kernel accepts "QUOTA" alone and keeps the period, which defaults to 100000 us.
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) == 2 else 100_000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    # A fractional CPU (--cpus 1.5) still runs a second worker part of the time: round up.
    return max(1, -(-quota // period))


def usable_cpus(cgroup_root: str = CGROUP_ROOT) -> int:
    """The CPUs this process may use: its affinity mask, limited by the cgroup's ``cpu.max``.

    Reads ``cpu.max`` under ``cgroup_root`` (in a container with a cgroup namespace, its own
    cgroup). Never raises: a missing or unreadable file means no quota.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    try:
        with open(os.path.join(cgroup_root, "cpu.max")) as file:
            quota = parse_cpu_max(file.read())
    except (OSError, UnicodeDecodeError):
        quota = None
    return max(1, min(count, quota) if quota is not None else count)
