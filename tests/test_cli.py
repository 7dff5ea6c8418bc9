"""The command line, run as users run it (``python -m asgisup``), up to the point where a
valid Config would start the server."""

from __future__ import annotations

import os
import platform

import pytest

import asgisup
import asgisup.runner
from asgisup import cli
from asgisup.config import SETTINGS, Config
from asgisup.errors import BootError, ConfigError
from tests.serverproc import READ, run_cli


def test_version() -> None:
    result = run_cli("--version")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"asgisup {asgisup.__version__} ({python} on {platform.system()})\n"


def test_help_lists_every_setting_with_default_and_variable() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == ""
    text = " ".join(result.stdout.split())  # undo argparse's line wrapping
    for setting in SETTINGS:
        assert setting.option in text or setting.kind.metavar in text, setting.name
        shown = setting.kind.show(setting.default)
        assert f"[default: {shown}; env: {setting.env}" in text, setting.name
    assert "--no-access-log" in text and "then WEB_CONCURRENCY]" in text


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "missing the application, e.g. 'asgisup main:app' (or set ASGISUP_APP)"),
        (("m:a", "--wrkers", "2"), {}, "unknown option --wrkers; did you mean --workers?"),
        (("--wrkers=2", "m:a"), {}, "unknown option --wrkers; did you mean --workers?"),
        (("m:a", "--work", "2"), {}, "unknown option --work; did you mean --workers?"),
        (
            ("m:a", "--workers", "x"),
            {},
            "--workers: expected a positive integer or 'auto', got 'x'",
        ),
        (
            ("m:a",),
            {"ASGISUP_WORKERS": "x"},
            "--workers: expected a positive integer or 'auto', got 'x' (from ASGISUP_WORKERS)",
        ),
        (("m:a", "--port"), {}, "--port: expected one argument"),
        (("m:a", "--port", "-1"), {}, "--port: expected an integer from 0 to 65535, got '-1'"),
        (("m:a", "other"), {}, "unexpected argument 'other': give one application"),
        (("main",), {}, "app: expected 'module:attribute'"),
        (("m:a", "--uds", "/tmp/s", "--fd", "3"), {}, "--uds and --fd exclude each other"),
        (("m:a",), {"ASGISUP_PROXY_HEADERS": "maybe"}, "--proxy-headers: expected true or false"),
        (("m:a", "--header", "no colon"), {}, "--header: expected 'Name: Value'"),
        (("m:a", "--header", "X: a\nb: c"), {}, "--header: expected 'Name: Value'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = run_cli(*args, **env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"asgisup: error: {message}")


def test_untyped_flags_leave_variables_alone() -> None:
    env = {"ASGISUP_PORT": "9000", "ASGISUP_ACCESS_LOG": "off", "ASGISUP_WORKERS": "3"}
    config = cli.config_from_argv(["m:a", "--workers", "2"], env)
    assert (config.port, config.access_log, config.workers) == (9000, False, 2)
    assert cli.config_from_argv(["m:a", "--access-log"], env).access_log is True


def test_flags_reach_config() -> None:
    argv = [
        *("m:a", "--factory", "--no-server-header", "--header", "X-A: 1", "--header", "X-B:2"),
        *("--workers", "auto", "--max-inflight", "1", "--timeout-keep-alive", "2.5"),
    ]
    config = cli.config_from_argv(argv, {})
    assert config == Config(
        "m:a",
        factory=True,
        server_header=False,
        headers=(("X-A", "1"), ("X-B", "2")),
        workers="auto",
        max_inflight=1,
        timeout_keep_alive=2.5,
    )


def test_application_from_the_environment() -> None:
    assert cli.config_from_argv([], {"ASGISUP_APP": "pkg:app"}).app == "pkg:app"
    assert cli.config_from_argv(["m:a"], {"ASGISUP_APP": "pkg:app"}).app == "m:a"


def test_config_from_argv_raises_config_error_for_usage_mistakes() -> None:
    with pytest.raises(ConfigError, match=r"^--port: expected one argument$"):
        cli.config_from_argv(["m:a", "--port"], {})


def test_main_returns_what_the_server_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []

    def run_config(config: Config) -> int:
        seen.append(config)
        return 7

    monkeypatch.setattr(asgisup.runner, "run_config", run_config)
    for name in [name for name in os.environ if name.startswith(READ)]:
        monkeypatch.delenv(name)
    assert cli.main(["m:a", "--port", "0"]) == 7
    assert seen == [Config("m:a", port=0)]


def test_main_reports_server_errors_with_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_config(config: Config) -> int:
        raise BootError("the app failed to boot")

    monkeypatch.setattr(asgisup.runner, "run_config", run_config)
    assert cli.main(["m:a"]) == BootError.exit_code
    assert capsys.readouterr().err == "asgisup: error: the app failed to boot\n"


def test_main_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: asgisup MODULE:ATTR [options]")
