"""The M/G/c replay against cases worked out by hand.

.venv/bin/pytest benchmarks/test_ideal.py
"""

from __future__ import annotations

import pytest

from benchmarks.ideal import Job, percentile, replay, summarize


def test_single_server_is_fifo() -> None:
    # arrivals 0, 1, 2, 10; services 3, 1, 2, 1: starts 0, 3, 4, 10; finishes 3, 4, 6, 11
    jobs = [Job(0, 3), Job(1, 1), Job(2, 2), Job(10, 1)]
    assert replay(jobs, 1) == pytest.approx([3, 3, 4, 1])


def test_result_follows_input_order_not_arrival_order() -> None:
    jobs = [Job(2, 2), Job(0, 3), Job(1, 1)]
    assert replay(jobs, 1) == pytest.approx([4, 3, 3])


def test_enough_servers_means_no_waiting() -> None:
    jobs = [Job(0.0, 0.5), Job(0.1, 0.2), Job(0.2, 0.01), Job(0.25, 0.3)]
    assert replay(jobs, 4) == pytest.approx([0.5, 0.2, 0.01, 0.3])


def test_each_job_goes_to_the_server_free_first() -> None:
    # two servers: job 3 waits for the short job's server (free at 1), not the long one (at 10)
    jobs = [Job(0, 10), Job(0, 1), Job(0.5, 2)]
    assert replay(jobs, 2) == pytest.approx([10, 1, 2.5])


def test_burst_on_c_servers_waits_in_rounds() -> None:
    # 6 simultaneous 10 ms jobs on 2 servers finish in three rounds
    jobs = [Job(5.0, 0.010) for _ in range(6)]
    assert replay(jobs, 2) == pytest.approx([0.010, 0.010, 0.020, 0.020, 0.030, 0.030])


def test_awaited_io_needs_no_server_and_counts_in_latency() -> None:
    # one server; job 0 awaits 20 ms of I/O first, so job 1 (arriving later, no I/O) goes first
    jobs = [Job(0.0, 0.010, delay=0.020), Job(0.005, 0.010)]
    assert replay(jobs, 1) == pytest.approx([0.030, 0.010])
    jobs = [Job(0.0, 0.010, delay=0.020), Job(0.015, 0.010)]  # job 1 holds the server until 25 ms
    assert replay(jobs, 1) == pytest.approx([0.035, 0.010])


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        replay([Job(0, 1)], 0)
    with pytest.raises(ValueError):
        replay([Job(0, -1)], 1)


def test_percentiles_interpolate() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    summary = summarize(list(reversed(values)))
    assert summary.count == 100 and summary.mean == pytest.approx(50.5)
    assert summary.p999 == pytest.approx(99.901)
