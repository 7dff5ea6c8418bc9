"""The CPU count behind ``--workers auto``: affinity mask and cgroup v2 quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisup.supervisor.cpus import parse_cpu_max, usable_cpus


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("max", None),
        ("150000 100000\n", 2),
        ("100000 100000", 1),
        ("400000 100000", 4),
        ("50000 100000", 1),
        ("1000 100000", 1),
        ("200000 50000", 4),
        ("200000", 2),  # the period left at the kernel's default
        ("", None),
        ("garbage", None),
        ("0 100000", None),
        ("-1 100000", None),
        ("100000 0", None),
        ("1 2 3", None),
    ],
)
def test_parse_cpu_max(text: str, cpus: int | None) -> None:
    assert parse_cpu_max(text) == cpus


@given(quota=st.integers(1, 2**40), period=st.integers(1, 2**30))
def test_parse_cpu_max_rounds_up(quota: int, period: int) -> None:
    cpus = parse_cpu_max(f"{quota} {period}\n")
    assert cpus is not None and cpus >= 1
    assert (cpus - 1) * period < quota <= cpus * period


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [("200000 100000", 2), ("150000 100000", 2), ("max 100000", 8), ("1600000 100000", 8)],
)
def test_quota_limits_the_affinity_count(tmp_path: Path, cpu_max: str, cpus: int) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert usable_cpus(str(tmp_path)) == cpus


@pytest.mark.usefixtures("eight_cpus")
def test_missing_or_unreadable_cpu_max_means_no_quota(tmp_path: Path) -> None:
    assert usable_cpus(str(tmp_path)) == 8
    (tmp_path / "cpu.max").mkdir()  # reading a directory fails with an OSError
    assert usable_cpus(str(tmp_path)) == 8


def test_without_affinity_the_cpu_count_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert usable_cpus(str(tmp_path)) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus(str(tmp_path)) == 1


def test_this_machine() -> None:
    cpus = usable_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
