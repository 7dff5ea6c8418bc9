"""The deployment examples: what can be checked without Docker or a cluster.

The Dockerfile's ENTRYPOINT and ENV are run as the container would run them (as PID 1 in a
new PID namespace, configured only by ASGISUP_* variables; the address is moved to loopback);
the compose file, nginx config and Kubernetes manifests are parsed and held to what the docs
promise.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys

import httpx
import pytest
import yaml

from asgisup.config import BY_NAME, Config
from tests.serverproc import ROOT, TIMEOUT, ServerProcess, free_port, wait_until
from tests.test_supervision import _can_unshare, _children

EXAMPLE = ROOT / "examples" / "fastapi_app"


def _dockerfile() -> tuple[dict[str, str], list[str], list[str]]:
    """(ENV, ENTRYPOINT, every instruction) of the example's Dockerfile."""
    text = re.sub(r"\\\n\s*", " ", (EXAMPLE / "Dockerfile").read_text())
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    instructions = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        instructions.append(keyword)
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)  # exec form, or this fails
    return env, entrypoint, instructions


def _server_variables(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith("ASGISUP_")}


def test_dockerfile_runs_asgisup_as_pid_1_unprivileged() -> None:
    env, entrypoint, instructions = _dockerfile()
    assert entrypoint == ["asgisup"]  # exec form: the server itself gets docker stop's SIGTERM
    assert "USER" in instructions and "CMD" not in instructions
    assert "USER app" in (EXAMPLE / "Dockerfile").read_text()
    variables = _server_variables(env)
    config = Config.from_sources(None, {}, variables)  # every variable is a valid setting
    assert (config.app, config.max_inflight, config.health_path) == ("main:app", 1, "/healthz")


@pytest.mark.skipif(_can_unshare() is not None, reason=str(_can_unshare()))
def test_the_image_entrypoint_serves_and_stops_as_pid_1() -> None:
    env, entrypoint, _ = _dockerfile()
    metrics = free_port()
    variables = {
        **_server_variables(env),
        # Tests never listen beyond loopback; the app is this checkout's copy.
        "ASGISUP_HOST": "127.0.0.1",
        "ASGISUP_PORT": "0",
        "ASGISUP_METRICS_BIND": f"127.0.0.1:{metrics}",
        "ASGISUP_APP_DIR": str(EXAMPLE),
        "ASGISUP_WORKERS": "2",
    }
    program = [sys.executable, "-m", "asgisup"] if entrypoint == ["asgisup"] else entrypoint
    command = ["unshare", "--pid", "--fork", "--mount-proc", *program]
    with ServerProcess("", command=command, env=variables) as server:
        server.start(wait_ready=2)
        assert "Supervisor [pid 1]" in server.log
        assert httpx.get(server.url + "/", timeout=TIMEOUT).json()["hello"] == "world"
        health = f"http://127.0.0.1:{metrics}/healthz"
        wait_until(lambda: httpx.get(health, timeout=TIMEOUT).status_code == 200)
        assert server.proc is not None
        (supervisor,) = [pid for pid, _, _ in _children(server.proc.pid)]
        os.kill(supervisor, signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert server.wait() == 0
        assert "Stopped." in server.log


def test_compose_puts_nginx_with_upstream_keep_alive_in_front() -> None:
    compose = yaml.safe_load((EXAMPLE / "docker-compose.yml").read_text())
    app, nginx = compose["services"]["app"], compose["services"]["nginx"]
    assert app["build"]["dockerfile"] == "examples/fastapi_app/Dockerfile"
    Config.from_sources(None, {}, {"ASGISUP_APP": "main:app", **app["environment"]})
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    conf = (EXAMPLE / "nginx.conf").read_text()
    assert re.search(r"upstream asgisup \{[^}]*keepalive \d+;", conf)
    assert "proxy_http_version 1.1;" in conf
    # Keep-alive for requests (no Connection header), "upgrade" for WebSocket handshakes.
    assert re.search(
        r'map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*"" +"";', conf
    )
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf


def test_kubernetes_manifest_has_probes_prestop_and_grace() -> None:
    documents = list(yaml.safe_load_all((EXAMPLE / "k8s" / "deployment.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    variables = {item["name"]: item["value"] for item in container["env"]}
    for name in variables:
        assert name.removeprefix("ASGISUP_").lower() in BY_NAME, name
    config = Config.from_sources(None, {}, {"ASGISUP_APP": "main:app", **variables})
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert config.metrics_bind == f"0.0.0.0:{ports['metrics']}"
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"] == {"path": config.health_path, "port": "metrics"}
    assert "tcpSocket" in liveness  # liveness is not the busy signal (docs/observability.md)
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    found = re.search(r"sleep\((\d+)\)", " ".join(pause))
    assert found is not None
    pause_seconds = float(found.group(1))
    drain = config.timeout_graceful_shutdown + 5  # the supervisor's margin before SIGKILL
    assert pod["terminationGracePeriodSeconds"] > pause_seconds + drain
    assert pod["securityContext"]["runAsNonRoot"] is True
