"""What operators see: Prometheus metrics, the health path, `asgisup status`, process titles."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asgisup.scoreboard import LATENCY_BUCKETS
from asgisup.supervisor.metrics import Snapshot, WorkerFigures, render, table
from tests.serverproc import ROOT, TIMEOUT, ServerProcess, free_port, run_cli, wait_until


def _metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus-client: {(name, labels): value}."""
    text = httpx.get(base + "/metrics", timeout=TIMEOUT).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _total(samples: dict[Any, float], name: str, **match: str) -> float:
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and all(dict(labels).get(k) == v for k, v in match.items())
    )


def _serve(*args: str) -> tuple[ServerProcess, str]:
    port = free_port()
    server = ServerProcess("tests.apps:app", "--metrics-bind", f"127.0.0.1:{port}", *args)
    return server, f"http://127.0.0.1:{port}"


def test_metrics_count_the_traffic_sent() -> None:
    server, metrics = _serve("--workers", "2", "--max-inflight", "1")
    with server:
        server.start(wait_ready=2)
        sent = 12
        for _ in range(sent):
            httpx.get(server.url + "/pid", timeout=TIMEOUT)
        httpx.get(server.url + "/status?code=404", timeout=TIMEOUT)

        def counted() -> bool:  # workers publish once a second
            samples = _metrics(metrics)
            return _total(samples, "asgisup_worker_responses_total", status_class="2xx") == sent

        wait_until(counted)
        samples = _metrics(metrics)
        assert _total(samples, "asgisup_worker_requests_total") == sent + 1
        assert _total(samples, "asgisup_worker_accepted_total") == sent + 1
        assert _total(samples, "asgisup_worker_responses_total", status_class="4xx") == 1
        assert _total(samples, "asgisup_request_duration_seconds_count") == sent + 1
        assert _total(samples, "asgisup_request_duration_seconds_bucket", le="+Inf") == sent + 1
        assert _total(samples, "asgisup_worker_info", state="ready") == 2
        assert _total(samples, "asgisup_worker_ceiling") == 2
        assert _total(samples, "asgisup_accept_queue_limit") > 0
        assert all(samples[key] > 0 for key in samples if key[0] == "asgisup_worker_resident_bytes")
        assert server.stop() == 0


def _hold(server: ServerProcess, marker: Path) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: httpx.get(f"{server.url}/hold?f={marker}", timeout=TIMEOUT), daemon=True
    )
    thread.start()
    wait_until(Path(f"{marker}.started").exists)
    return thread


def test_a_full_worker_the_queue_and_the_health_path(tmp_path: Path) -> None:
    marker = tmp_path / "release"
    server, metrics = _serve("--max-inflight", "1", "--health-path", "/healthz")
    with server:
        server.start()
        assert httpx.get(metrics + "/healthz", timeout=TIMEOUT).status_code == 200
        holder = _hold(server, marker)
        host, port = server.url.removeprefix("http://").split(":")
        queued = [socket.create_connection((host, int(port)), timeout=TIMEOUT) for _ in range(3)]
        for sock in queued:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")

        def full_and_queued() -> bool:
            samples = _metrics(metrics)
            return (
                _total(samples, "asgisup_worker_load") == 1
                and _total(samples, "asgisup_worker_connections") == 1  # the held one
                and _total(samples, "asgisup_accept_queue_length") == 3
            )

        wait_until(full_and_queued)
        answer = httpx.get(metrics + "/healthz", timeout=TIMEOUT)
        assert (answer.status_code, answer.text) == (503, "busy\n")
        marker.touch()
        holder.join(TIMEOUT)
        for sock in queued:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.close()
        wait_until(lambda: httpx.get(metrics + "/healthz", timeout=TIMEOUT).status_code == 200)
        wait_until(lambda: _total(_metrics(metrics), "asgisup_worker_full_seconds_total") > 0)
        # On the server's own port the path is answered by a worker, without the app.
        on_port = httpx.get(server.url + "/healthz", timeout=TIMEOUT)
        assert (on_port.status_code, on_port.text) == (200, "ok\n")
        assert server.stop() == 0


def test_restarts_are_counted_by_reason() -> None:
    server, metrics = _serve("--workers", "2")
    with server:
        server.start(wait_ready=2)
        os.kill(server.ready_pids[0], signal.SIGKILL)
        server.wait_for(r"Worker \d \[pid \d+\] ready")
        samples = _metrics(metrics)
        assert samples[("asgisup_worker_restarts_total", (("reason", "crash"),))] == 1
        assert server.stop() == 0


def test_status_command_shows_a_live_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "asgisup.pid"
    args = ("--workers", "2", "--max-inflight", "1", "--pid-file", str(pid_file))
    with ServerProcess("tests.apps:app", *args) as server:
        server.start(wait_ready=2)
        assert server.proc is not None
        assert int(pid_file.read_text()) == server.proc.pid
        httpx.get(server.url + "/pid", timeout=TIMEOUT)
        result = run_cli("status", "--pid-file", str(pid_file))
        assert result.returncode == 0, result.stderr
        assert "tests.apps:app: 2 worker(s) of 2 wanted, generation 1" in result.stdout
        rows = [line.split() for line in result.stdout.splitlines()[3:]]
        assert {int(row[1]) for row in rows} == set(server.ready_pids)
        assert all(row[3] == "ready" and row[4].endswith("/1") for row in rows)
        assert server.stop() == 0
    assert not pid_file.exists()


def test_status_without_a_server_says_so() -> None:
    result = run_cli("status", "--pid", "999999999")
    assert result.returncode == 1
    assert result.stderr.startswith("asgisup status: error: cannot reach ")


def test_process_titles_tell_supervisor_and_workers_apart() -> None:
    pytest.importorskip("setproctitle", reason="process titles need the standard extra")
    with ServerProcess("tests.apps:app", "--workers", "2") as server:
        server.start(wait_ready=2)
        assert server.proc is not None
        titles = [
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            for pid in (server.proc.pid, *server.ready_pids)
        ]
        assert titles[0] == "asgisup: supervisor [tests.apps:app]"
        assert sorted(titles[1:]) == [
            "asgisup: worker 1 [tests.apps:app]",
            "asgisup: worker 2 [tests.apps:app]",
        ]
        assert server.stop() == 0


def test_metrics_bind_that_cannot_be_bound_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("tests.apps:app", "--port", "0", "--metrics-bind", f"127.0.0.1:{port}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"asgisup: error: --metrics-bind 127.0.0.1:{port}: Address already in use"]


def test_render_and_table_of_a_snapshot() -> None:
    figures = WorkerFigures(
        index=1, pid=42, generation=2, state="ready", load=1, ceiling=1, accepted=3,
        requests=3, responses=(0, 2, 0, 1, 0), heartbeat_age=0.5, resident_bytes=2**25,
        full_seconds=1.5, latency_buckets=(1, 1) + (0,) * (len(LATENCY_BUCKETS) - 2) + (1,),
        latency_sum=12.0, connections=7,
    )  # fmt: skip
    snapshot = Snapshot("m:a", 1, 2, False, 4, 128, [figures], {"crash": 2})
    families = {f.name: f for f in text_string_to_metric_families(render(snapshot))}
    buckets = [s for s in families["asgisup_request_duration_seconds"].samples]
    assert [s.value for s in buckets if s.name.endswith("_bucket")][-1] == 3  # cumulative
    assert families["asgisup_worker_restarts"].samples[0].value == 2
    assert Snapshot.from_json(snapshot.as_json()) == snapshot
    assert snapshot.ready(queue_threshold=4) and not snapshot.ready(queue_threshold=3)
    shown = table(snapshot)
    assert "generation 2, accept queue 4 of 128" in shown and "restarts: crash 2" in shown
    assert families["asgisup_worker_connections"].samples[0].value == 7
    header, row = shown.splitlines()[2:4]
    assert row.split()[header.split().index("conns")] == "7"


def test_json_logs_parse_line_by_line() -> None:
    with ServerProcess("tests.apps:app", "--workers", "2", "--log-format", "json") as server:
        server.start(wait_ready=2)
        httpx.get(server.url + "/pid?x=1", timeout=TIMEOUT)
        server.wait_for(r'"logger": "asgisup.access"')
        assert server.stop() == 0
        records = [json.loads(line) for line in server.log.splitlines()]
    assert {"time", "level", "logger", "pid", "worker", "message"} <= set(records[0])
    assert records[0]["worker"] is None and "listening on" in records[0]["message"]
    (access,) = [r for r in records if r["logger"] == "asgisup.access"]
    assert access["worker"] in (1, 2) and access["pid"] in server.ready_pids
    assert (access["method"], access["path"], access["status"]) == ("GET", "/pid?x=1", 200)
    assert access["duration_ms"] >= 0 and access["message"].endswith(
        '"GET /pid?x=1 HTTP/1.1" 200 OK'
    )
    assert records[-1]["message"] == "Stopped."


def test_access_log_format() -> None:
    fmt = "{method} {path} -> {status} in {duration_ms}ms"
    with ServerProcess("tests.apps:app", "--access-log-format", fmt) as server:
        server.start()
        httpx.get(server.url + "/pid", timeout=TIMEOUT)
        line = server.wait_for(r"GET /pid -> 200 in [\d.]+ms")
        assert line.string.startswith("INFO:")
        assert server.stop() == 0


def test_bad_access_log_format_is_refused() -> None:
    result = run_cli("tests.apps:app", "--access-log-format", "{nope}")
    assert result.returncode == 2
    assert result.stderr.startswith("asgisup: error: --access-log-format: expected a format")
    assert len(result.stderr.splitlines()) == 1


def test_log_config_file_replaces_the_setup(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    config = {
        "version": 1,
        "formatters": {"plain": {"format": "%(name)s|%(levelname)s|%(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(out), "formatter": "plain"}
        },
        "loggers": {
            "asgisup.error": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "asgisup.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
        },
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    port = free_port()
    command = [sys.executable, "-m", "asgisup", "tests.apps:app", "--port", str(port)]
    command += ["--log-config", str(path)]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: out.exists() and " ready" in out.read_text())
        httpx.get(f"http://127.0.0.1:{port}/pid", timeout=TIMEOUT)
        wait_until(lambda: "asgisup.access|INFO|" in out.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0 and stderr == ""
    assert "asgisup.error|INFO|Stopped." in out.read_text()


def test_unreadable_log_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "logging.json"
    bad.write_text("[1, 2]")
    result = run_cli("tests.apps:app", "--log-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"asgisup: error: --log-config {bad}: expected a mapping "
        "(logging.config.dictConfig's schema)"
    ]


def test_status_finds_the_only_live_server(tmp_path: Path) -> None:
    """Without --pid: the one control socket of a live supervisor; stale ones are skipped."""
    (tmp_path / "asgisup-999999999.sock").touch()  # left behind by a supervisor killed hard
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    with ServerProcess("tests.apps:app", env=env) as server:
        server.start()
        result = run_cli("status", **env)
        assert result.returncode == 0, result.stderr
        assert "1 worker(s) of 1 wanted" in result.stdout
        assert server.stop() == 0
