"""The settings table and Config: parsing, precedence, errors and the generated reference.

Run ``python -m tests.test_config`` to rewrite docs/configuration.md from the table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisup.config import BY_NAME, SETTINGS, Config, reference_markdown
from asgisup.errors import ConfigError

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- settings:start -->\n", "<!-- settings:end -->"
REGENERATE = "python -m tests.test_config"


def update_reference(document: str) -> str:
    """``document`` with the table between the markers replaced by the current one.

    Raises ValueError when the markers are missing.
    """
    head, found, rest = document.partition(START)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"{DOC} lacks the markers {START.strip()} and {END}")
    return head + START + reference_markdown() + END + tail


def app(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for an application object."""


def config_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        Config(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_table_and_config_fields_agree() -> None:
    assert [field.name for field in dataclasses.fields(Config)] == [s.name for s in SETTINGS]


def test_every_default_passes_its_own_parser() -> None:
    for setting in SETTINGS[1:]:
        assert setting.kind.convert(setting.default) == setting.default, setting.name


def test_defaults() -> None:
    config = Config("main:app")
    assert config.options() == {setting.name: setting.default for setting in SETTINGS[1:]}
    assert (config.host, config.port, config.workers, config.max_inflight) == (
        "127.0.0.1",
        8000,
        1,
        0,
    )
    assert config.timeout_graceful_shutdown == 30.0
    assert config.forwarded_allow_ips == ("127.0.0.1",) and config.headers == ()


@pytest.mark.parametrize(
    ("name", "text", "typed"),
    [
        ("port", "8001", 8001),
        ("port", " 0 ", 0),
        ("fd", "3", 3),
        ("backlog", "1", 1),
        ("workers", "8", 8),
        ("workers", "auto", "auto"),
        ("workers", "AUTO", "auto"),
        ("max_inflight", "0", 0),
        ("defer_accept", "auto", "auto"),
        ("defer_accept", "0", 0),
        ("defer_accept", "30", 30),
        ("loop", "UVLOOP", "uvloop"),
        ("http", "h11", "h11"),
        ("lifespan", "off", "off"),
        ("log_level", "trace", "trace"),
        ("timeout_keep_alive", "0.5", 0.5),
        ("timeout_keep_alive", "5", 5.0),
        ("timeout_graceful_shutdown", "0", 0.0),
        ("uds", "/tmp/a.sock", "/tmp/a.sock"),
        ("root_path", "/api", "/api"),
        ("forwarded_allow_ips", "10.0.0.0/8, ::1,unix:", ("10.0.0.0/8", "::1", "unix:")),
        ("forwarded_allow_ips", "*", ("*",)),
        ("forwarded_allow_ips", "", ()),
        ("headers", "X-A: 1\nX-B:two; three, four\n", (("X-A", "1"), ("X-B", "two; three, four"))),
    ],
)
def test_text_and_typed_values_agree(name: str, text: str, typed: object) -> None:
    assert getattr(Config("m:a", **{name: text}), name) == typed
    assert getattr(Config("m:a", **{name: typed}), name) == typed


@pytest.mark.parametrize("word", ["1", "true", "Yes", "ON", " on "])
def test_boolean_words_true(word: str) -> None:
    assert Config("m:a", factory=word).factory is True


@pytest.mark.parametrize("word", ["0", "FALSE", "no", "off"])
def test_boolean_words_false(word: str) -> None:
    assert Config("m:a", access_log=word).access_log is False


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("port", "x", "an integer from 0 to 65535"),
        ("port", 65536, "an integer from 0 to 65535"),
        ("port", -1, "an integer from 0 to 65535"),
        ("port", True, "an integer from 0 to 65535"),
        ("port", 80.0, "an integer from 0 to 65535"),
        ("backlog", 0, "a positive integer"),
        ("backlog", 2**31, "a positive integer"),
        ("fd", -1, "a file descriptor"),
        ("workers", "0", "a positive integer or 'auto'"),
        ("workers", "x", "a positive integer or 'auto'"),
        ("max_inflight", "-1", "an integer >= 0"),
        ("defer_accept", "-1", "an integer >= 0 (seconds) or 'auto'"),
        ("defer_accept", "3601", "an integer >= 0 (seconds) or 'auto'"),
        ("loop", "trio", "one of auto, asyncio, uvloop"),
        ("log_level", "verbose", "one of critical, error"),
        ("factory", "maybe", "true or false"),
        ("factory", 1, "true or false"),
        ("timeout_keep_alive", "0", "a number of seconds > 0"),
        ("timeout_keep_alive", "nan", "a number of seconds > 0"),
        ("timeout_graceful_shutdown", "-1", "a number of seconds >= 0"),
        ("timeout_graceful_shutdown", "inf", "a number of seconds >= 0"),
        ("host", "", "a host name or address"),
        ("uds", "", "a socket path"),
        ("root_path", 5, "a string"),
    ],
)
def test_bad_values_name_the_keyword_and_the_accepted_values(
    name: str, value: object, accepted: str
) -> None:
    message = config_error("m:a", **{name: value})
    assert message.startswith(f"{name}=: expected {accepted}")
    assert message.endswith(f"got {value!r}")


@pytest.mark.parametrize(
    ("value", "culprit"),
    [
        ("10.0.0.300", "10.0.0.300"),
        ("127.0.0.1,localhost", "localhost"),
        (["127.0.0.1", 5], ["127.0.0.1", 5]),
    ],
)
def test_bad_forwarded_allow_ips_quote_the_culprit(value: object, culprit: object) -> None:
    message = config_error("m:a", forwarded_allow_ips=value)
    assert message.endswith(f"got {culprit!r}") and "IP addresses or networks" in message


@pytest.mark.parametrize(
    "header",
    ["no colon", ": empty name", "bad name: x", "X-A: a\rb", "X-A: caf\u00e9\u20ac", ("X", 1), 5],
)
def test_bad_headers_are_refused(header: object) -> None:
    message = config_error("m:a", headers=[header])
    assert message.startswith("headers=: expected 'Name: Value'")


def test_headers_must_be_text_or_a_list() -> None:
    assert config_error("m:a", headers=5) == (
        "headers=: expected 'Name: Value' (one per line in the environment), got 5"
    )


def test_headers_take_pairs_and_keep_latin1() -> None:
    config = Config("m:a", headers=[("X-A", " 1 "), "X-B: caf\u00e9"])
    assert config.headers == (("X-A", "1"), ("X-B", "caf\u00e9"))


def test_paths_accept_path_objects(tmp_path: Path) -> None:
    config = Config("m:a", uds=tmp_path / "s.sock", app_dir=tmp_path)
    assert config.uds == str(tmp_path / "s.sock") and config.app_dir == str(tmp_path)


def test_unknown_keyword_suggests_the_closest_name() -> None:
    assert config_error("m:a", wrkers=2) == "unknown option wrkers=; did you mean workers=?"
    assert config_error("m:a", zzz=1) == "unknown option zzz="
    with pytest.raises(ConfigError) as caught:
        Config.from_sources("m:a", {"max_inflite": 1}, {}, origin="cli")
    assert str(caught.value) == "unknown option --max-inflite; did you mean --max-inflight?"
    with pytest.raises(ConfigError, match="the application is the first argument"):
        Config.from_sources("m:a", {"app": "x:y"}, {})


@pytest.mark.parametrize("bad", ["main", ":app", "main:", 42, None])
def test_app_must_be_an_import_string_or_callable(bad: object) -> None:
    message = config_error(bad)
    assert message.startswith(("app=: expected 'module:attribute'", "missing the application"))


def test_app_object_is_kept() -> None:
    assert Config(app).app is app
    assert Config(" pkg.mod:obj.attr ").app == "pkg.mod:obj.attr"


def test_uds_and_fd_exclude_each_other() -> None:
    message = config_error("m:a", uds="/tmp/s", fd=3)
    assert message.startswith("uds= and fd= exclude each other")
    with pytest.raises(ConfigError) as caught:
        Config.from_sources("m:a", {"fd": "3"}, {"ASGISUP_UDS": "/tmp/s"}, origin="cli")
    assert str(caught.value).startswith("--uds (from ASGISUP_UDS) and --fd exclude each other")


def test_precedence_options_then_asgisup_then_fallback_then_default() -> None:
    env = {"ASGISUP_WORKERS": "3", "WEB_CONCURRENCY": "5"}
    assert Config.from_sources("m:a", {"workers": 2}, env).workers == 2
    assert Config.from_sources("m:a", {}, env).workers == 3
    assert Config.from_sources("m:a", {}, {"WEB_CONCURRENCY": "5"}).workers == 5
    assert Config.from_sources("m:a", {}, {}).workers == 1
    ips = {"ASGISUP_FORWARDED_ALLOW_IPS": "10.0.0.1", "FORWARDED_ALLOW_IPS": "*"}
    assert Config.from_sources("m:a", {}, ips).forwarded_allow_ips == ("10.0.0.1",)
    assert Config.from_sources("m:a", {}, {"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == (
        "*",
    )


def test_none_and_empty_variables_count_as_unset() -> None:
    env = {"ASGISUP_PORT": "9000", "ASGISUP_UDS": "", "ASGISUP_WORKERS": "  "}
    config = Config.from_sources("m:a", {"port": None}, env)
    assert (config.port, config.uds, config.workers) == (9000, None, 1)


# A value other than the default for every setting, as a variable would hold it.
NON_DEFAULT = {
    "app": "pkg:app",
    "host": "::1",
    "port": "9000",
    "uds": "/tmp/s.sock",
    "fd": "3",
    "backlog": "16",
    "workers": "auto",
    "max_inflight": "2",
    "busy_close": "off",
    "busy_close_min_service": "0.01",
    "defer_accept": "0",
    "loop": "asyncio",
    "http": "h11",
    "ws": "wsproto",
    "ws_max_size": "1024",
    "ws_max_queue": "4",
    "ws_ping_interval": "5",
    "ws_ping_timeout": "0",
    "ws_per_message_deflate": "false",
    "max_websockets": "100",
    "lifespan": "on",
    "factory": "yes",
    "app_dir": "/srv/app",
    "preload": "yes",
    "reload": "true",
    "reload_dir": "/srv/app/src",
    "ssl_certfile": "/etc/tls/cert.pem",
    "ssl_keyfile": "/etc/tls/key.pem",
    "ssl_keyfile_password": "secret",
    "ssl_ca_certs": "/etc/tls/ca.pem",
    "ssl_cert_reqs": "2",
    "ssl_ciphers": "ECDHE+AESGCM",
    "timeout_keep_alive": "1.5",
    "timeout_request_head": "2.5",
    "timeout_client_stall": "15",
    "max_request_head_size": "8192",
    "max_request_headers": "50",
    "max_request_body_size": "1048576",
    "timeout_graceful_shutdown": "0",
    "timeout_worker": "0",
    "timeout_worker_boot": "10",
    "max_requests": "1000",
    "max_requests_jitter": "50",
    "max_worker_memory": "512",
    "metrics_bind": "127.0.0.1:9100",
    "health_path": "/healthz",
    "health_queue_threshold": "10",
    "pid_file": "/run/asgisup.pid",
    "log_level": "debug",
    "access_log": "off",
    "access_log_format": "{method} {path} {status}",
    "log_format": "json",
    "log_config": "/etc/asgisup/logging.json",
    "log_file": "/var/log/asgisup.log",
    "root_path": "/api",
    "proxy_headers": "0",
    "forwarded_allow_ips": "*",
    "server_header": "false",
    "date_header": "no",
    "headers": "X-A: 1\r\nX-B: 2",
}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.env)
def test_every_setting_reads_its_variable(setting: Any) -> None:
    assert set(NON_DEFAULT) == set(BY_NAME), "give the new setting a sample in NON_DEFAULT"
    base = {"ASGISUP_APP": "m:a"}
    config = Config.from_sources(None, {}, {**base, setting.env: NON_DEFAULT[setting.name]})
    value = getattr(config, setting.name)
    assert value != setting.default and value == setting.kind.convert(NON_DEFAULT[setting.name])


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_sources("m:a", {}, {"ASGISUP_WORKERS": "x"}, origin="cli")
    assert str(caught.value) == (
        "--workers: expected a positive integer or 'auto', got 'x' (from ASGISUP_WORKERS)"
    )
    with pytest.raises(ConfigError, match=r"^workers=: .*\(from WEB_CONCURRENCY\)$"):
        Config.from_sources("m:a", {}, {"WEB_CONCURRENCY": "0"})
    with pytest.raises(ConfigError, match=r"^--access-log: .*got 'maybe' \(from ASGISUP_ACC"):
        Config.from_sources("m:a", {}, {"ASGISUP_ACCESS_LOG": "maybe"}, origin="cli")
    # A setting given explicitly is not read from the environment, bad or not.
    assert Config.from_sources("m:a", {"workers": 2}, {"ASGISUP_WORKERS": "x"}).workers == 2


def test_missing_application() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_sources(None, {}, {}, origin="cli")
    assert str(caught.value) == (
        "missing the application, e.g. 'asgisup main:app' (or set ASGISUP_APP)"
    )
    assert Config.from_sources(None, {}, {"ASGISUP_APP": "pkg:app"}).app == "pkg:app"
    assert Config.from_sources("m:a", {}, {"ASGISUP_APP": "pkg:app"}).app == "m:a"


def test_config_is_immutable_and_replace_validates() -> None:
    config = Config("m:a", workers=2)
    with pytest.raises(AttributeError):
        config.workers = 3  # type: ignore[misc]
    changed = config.replace(loop="asyncio", port="9000")
    assert (changed.loop, changed.port, changed.workers) == ("asyncio", 9000, 2)
    assert config.loop == "auto"
    with pytest.raises(ConfigError, match=r"^port="):
        config.replace(port="x")
    assert config.replace(app=app).app is app


def test_equality_and_readable_repr() -> None:
    assert Config("m:a", port="8001") == Config("m:a", port=8001)
    assert hash(Config("m:a")) == hash(Config("m:a"))
    assert repr(Config("m:a", workers=8, max_inflight=1)) == (
        "Config('m:a', workers=8, max_inflight=1)"
    )


def test_resolved_workers() -> None:
    assert Config("m:a", workers=3).resolved_workers(16) == 3
    assert Config("m:a", workers="auto").resolved_workers(6) == 6
    assert Config("m:a", workers="auto").resolved_workers(0) == 1


def test_defer_accept_auto_defers_only_with_a_ceiling() -> None:
    assert Config("m:a").defer_accept == "auto"
    assert Config("m:a").resolved_defer_accept() == 0
    assert Config("m:a", max_inflight=1).resolved_defer_accept() == 30
    assert Config("m:a", max_inflight=1, defer_accept=0).resolved_defer_accept() == 0
    assert Config("m:a", defer_accept=5).resolved_defer_accept() == 5


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"host": "::1", "port": 0}, "http://[::1]:0"),
        ({"uds": "/run/app.sock", "port": 1}, "unix:/run/app.sock"),
        ({"fd": 3}, "fd://3"),
    ],
)
def test_bind_description(options: dict[str, object], where: str) -> None:
    assert Config("m:a", **options).bind_description() == where


values = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=10), max_size=3),
    st.tuples(st.text(max_size=5), st.text(max_size=5)),
)


@given(name=st.sampled_from([s.name for s in SETTINGS[1:]]), value=values)
def test_any_value_is_accepted_or_refused_in_one_line(name: str, value: object) -> None:
    """No input escapes as another exception, and a refusal is one line naming the option."""
    try:
        config = Config("m:a", **{name: value})
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith((f"{name}=: expected ", "uds= and fd="))
    else:
        # Parsing is idempotent: the typed value passes through unchanged.
        assert Config(config.app, **config.options()) == config


def test_reference_lists_every_setting() -> None:
    table = reference_markdown()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in table
    assert "`--header 'NAME: VALUE'`" in table
    assert "`--access-log` / `--no-access-log`" in table
    assert "`WEB_CONCURRENCY`" in table and "`FORWARDED_ALLOW_IPS`" in table
    assert len(table.splitlines()) == len(SETTINGS) + 2
    assert BY_NAME["headers"].option == "--header"


def test_update_reference_needs_the_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        update_reference("# no markers\n")
    assert reference_markdown() in update_reference(f"a\n{START}old\n{END}\nb\n")


def test_docs_reference_is_up_to_date() -> None:
    text = DOC.read_text()
    assert text == update_reference(text), (
        f"{DOC.name} is out of date with the settings table; run: {REGENERATE}"
    )


def test_run_raises_config_error_before_starting_anything() -> None:
    import asgisup

    with pytest.raises(asgisup.ConfigError, match=r"^workers=: expected a positive integer"):
        asgisup.run("tests.apps:app", workers="many")
    with pytest.raises(asgisup.ConfigError, match="max_inflight"):
        asgisup.run("tests.apps:app", max_infligth=1)


def test_uvicorn_names_are_aliases() -> None:
    from asgisup.cli import config_from_argv

    config = config_from_argv(
        ["m:a", "--limit-max-requests", "500", "--h11-max-incomplete-event-size", "16384"], {}
    )
    assert (config.max_requests, config.max_request_head_size) == (500, 16384)
    assert Config("m:a", limit_max_requests_jitter=5).max_requests_jitter == 5
    with pytest.raises(ConfigError, match="given twice"):
        Config("m:a", max_requests=1, limit_max_requests=2)


def test_reload_and_preload_exclude_each_other() -> None:
    assert config_error("m:a", reload=True, preload=True) == (
        "reload= and preload= exclude each other: preloaded code is never reloaded"
    )


if __name__ == "__main__":
    DOC.write_text(update_reference(DOC.read_text()))
    print(f"rewrote {DOC}")
