"""Every setting, declared once: the table behind the command line, the ASGISUP_* variables,
``asgisup.run()``'s keywords and docs/configuration.md.

A row of SETTINGS gives a setting its name (the ``run()`` keyword and the Config attribute),
its ``--flag``, its ``ASGISUP_*`` variable, its default, its help and its Kind: the one parser
that turns text from the command line or the environment, or a value already typed in Python,
into the value the server uses. Precedence, highest first:

    1. explicit options (command line flags the user typed, or ``run()`` keywords)
    2. ``ASGISUP_<NAME>`` variables
    3. the variables other servers read, for drop-in use (WEB_CONCURRENCY, FORWARDED_ALLOW_IPS)
    4. the default

Nothing here does I/O: the environment arrives as a mapping, and sockets, imports and CPU
counts belong to the caller (``asgisup.runner``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any, Literal

from asgisup.errors import ConfigError
from asgisup.kinds import (
    ACCESS_FORMAT_KIND,
    ADDRESSES,
    APP_KIND,
    C_INT_MAX,
    FLAG,
    HEADERS,
    URL_PATH,
    Kind,
    Rejected,
    choice,
    integer,
    nullable,
    or_auto,
    quote,
    seconds,
    text,
    to_cert_reqs,
)
from asgisup.logs import ACCESS_FIELDS, ACCESS_FORMAT

Origin = Literal["cli", "python"]
App = str | Callable[..., Any]
# --defer-accept auto with a ceiling: long enough that a pre-opened idle connection stays with
# the kernel (at 1 and 5 s a request still stalled behind one; docs/admission.md).
DEFER_ACCEPT_AUTO = 30


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the table. ``flag`` overrides the derived ``--kebab-name``."""

    name: str
    kind: Kind
    default: object
    help: str
    flag: str = ""
    fallbacks: tuple[str, ...] = ()
    positional: bool = False
    aliases: tuple[str, ...] = ()  # other flags (uvicorn's or gunicorn's name), same meaning

    @property
    def option(self) -> str:
        """The command line flag (``--max-inflight``); the name for the positional."""
        if self.positional:
            return self.name
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "ASGISUP_" + self.name.upper()

    def label(self, origin: Origin) -> str:
        return self.option if origin == "cli" else f"{self.name}="

    def parse(self, value: object, origin: Origin, source: str | None = None) -> object:
        """The typed value. Raises ConfigError naming the option (and ``source``, a variable)."""
        try:
            return self.kind.convert(value)
        except Rejected as exc:
            got = quote(value if exc.part is None else exc.part)
            where = f" (from {source})" if source else ""
            raise ConfigError(
                f"{self.label(origin)}: expected {self.kind.accepted}, got {got}{where}"
            ) from None


# One row per setting, in --help order; kept in columns by hand, hence no formatter here.
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("app", APP_KIND, None, "The ASGI application.", positional=True),
    Setting("host", text("a host name or address", "HOST", empty=False), "127.0.0.1",
            "Bind the socket to this host."),
    Setting("port", integer("an integer from 0 to 65535", 0, 65535), 8000,
            "Bind the socket to this port (0: any free port)."),
    Setting("uds", nullable(text("a socket path", "PATH", empty=False)), None,
            "Bind to this Unix domain socket instead of host and port."),
    Setting("fd", nullable(integer("a file descriptor (an integer >= 0)", 0, C_INT_MAX)), None,
            "Serve on this inherited listening file descriptor instead of host and port."),
    Setting("backlog", integer("a positive integer (at most 2147483647)", 1, C_INT_MAX), 2048,
            "Length of the kernel's accept queue (capped by net.core.somaxconn)."),
    Setting("workers", or_auto(integer("a positive integer", 1)), 1,
            "Number of worker processes; 'auto' is one per usable CPU (affinity and cgroup "
            "quota).", fallbacks=("WEB_CONCURRENCY",)),
    Setting("max_inflight", integer("an integer >= 0", 0), 0,
            "In-flight requests per worker; at this many it stops accepting (0: no ceiling)."),
    Setting("busy_close", FLAG, True,
            "With a ceiling: answer 'Connection: close' rather than keep a connection alive "
            "when the worker is still full or connections wait in the accept queue, so the "
            "client's next request goes through the shared queue to a free worker."),
    Setting("busy_close_min_service", seconds("a number of seconds >= 0", zero=True), 0.001,
            "Apply --busy-close only while the worker's recent mean service time is at least "
            "this many seconds, so cheap requests keep their keep-alive (0: always)."),
    Setting("defer_accept", or_auto(integer("an integer >= 0 (seconds)", 0, 3600)), "auto",
            "TCP_DEFER_ACCEPT: the kernel hands a connection to a worker only once its first "
            "bytes arrived (or after this many seconds), so an idle pre-opened connection "
            "takes no worker's slot (0: off; 'auto': 30 with --max-inflight, else off; see "
            "docs/admission.md for what it protects and costs)."),
    Setting("loop", choice("auto", "asyncio", "uvloop"), "auto",
            "Event loop; 'auto' is uvloop when installed."),
    Setting("http", choice("auto", "h11", "httptools"), "auto",
            "HTTP/1.1 parser; 'auto' is httptools when installed."),
    Setting("ws", choice("auto", "none", "websockets", "wsproto"), "auto",
            "WebSocket implementation; 'auto' is websockets, else wsproto, when installed; "
            "'none': handshakes reach the app as plain HTTP requests."),
    Setting("ws_max_size", integer("a positive integer (bytes)", 1), 16 * 1024 * 1024,
            "Largest incoming WebSocket message in bytes; larger closes with 1009."),
    Setting("ws_max_queue", integer("a positive integer", 1), 32,
            "Incoming WebSocket messages held for an app that does not receive them; at this "
            "many the socket is not read (the client is slowed down, nothing is dropped)."),
    Setting("ws_ping_interval", seconds("a number of seconds >= 0", zero=True), 20.0,
            "Send a WebSocket ping this often (0: never)."),
    Setting("ws_ping_timeout", seconds("a number of seconds >= 0", zero=True), 20.0,
            "Close a WebSocket (1011) whose client has not answered a ping within this many "
            "seconds (0: do not wait for answers)."),
    Setting("ws_per_message_deflate", FLAG, True,
            "Offer WebSocket per-message deflate compression (RFC 7692) to clients that ask."),
    Setting("max_websockets", integer("an integer >= 0", 0), 0,
            "Open WebSockets per worker; a handshake beyond this gets 503 (0: no limit). "
            "An open WebSocket holds no request slot of --max-inflight."),
    Setting("lifespan", choice("auto", "on", "off"), "auto",
            "ASGI lifespan events; 'auto' runs them when the app supports them."),
    Setting("factory", FLAG, False,
            "Treat the application as a factory: call it with no arguments to get the app."),
    Setting("app_dir", text("a directory", "DIR"), ".",
            "Look for the application's module in this directory (put first on sys.path)."),
    Setting("preload", FLAG, False,
            "Import the application once in the supervisor, before forking: workers share its "
            "memory copy-on-write and start faster, but SIGHUP no longer loads new code."),
    Setting("reload", FLAG, False,
            "Development: restart the workers (one by one, like SIGHUP) when a .py file under "
            "--reload-dir changes (needs watchfiles, in the standard extra)."),
    Setting("reload_dir", text("a directory", "DIR"), "",
            "Where --reload watches (default: --app-dir)."),
    Setting("ssl_certfile", nullable(text("a file path", "PATH", empty=False)), None,
            "Serve HTTPS with this certificate (PEM; the chain after the certificate)."),
    Setting("ssl_keyfile", nullable(text("a file path", "PATH", empty=False)), None,
            "The certificate's private key (PEM), if not in --ssl-certfile."),
    Setting("ssl_keyfile_password", nullable(text("a string", "PASSWORD")), None,
            "The password of an encrypted --ssl-keyfile."),
    Setting("ssl_ca_certs", nullable(text("a file path", "PATH", empty=False)), None,
            "CA certificates (PEM) to verify client certificates with (see --ssl-cert-reqs)."),
    Setting("ssl_cert_reqs", Kind("one of none, optional, required (or 0, 1, 2)",
            to_cert_reqs, "{none,optional,required}"), "none",
            "Whether clients must present a certificate."),
    Setting("ssl_ciphers", nullable(text("an OpenSSL cipher list", "CIPHERS", empty=False)),
            None, "Allowed ciphers for TLS 1.2 and below (default: Python's secure defaults)."),
    Setting("timeout_keep_alive", seconds("a number of seconds > 0", zero=False), 5.0,
            "Close an idle keep-alive connection after this many seconds."),
    Setting("timeout_request_head", seconds("a number of seconds > 0", zero=False), 10.0,
            "A client that has begun a request must complete its line and headers within this "
            "many seconds of the connection opening or of the previous response (slowloris); "
            "else 408 and close."),
    Setting("timeout_client_stall", seconds("a number of seconds > 0", zero=False), 60.0,
            "Close a connection whose client sends none of an awaited request body, or reads "
            "none of a response held back by flow control, for this many seconds."),
    Setting("max_request_head_size", integer("an integer from 1024 to 1048576 (bytes)",
            1024, 1024 * 1024), 64 * 1024,
            "Largest request line plus headers, in bytes; larger gets 431.",
            aliases=("--h11-max-incomplete-event-size",)),
    Setting("max_request_headers", integer("an integer from 1 to 10000", 1, 10000), 100,
            "Most header fields in a request; more gets 431."),
    Setting("max_request_body_size", integer("an integer >= 0 (bytes)", 0), 0,
            "Largest request body in bytes; larger gets 413 (0: no limit)."),
    Setting("timeout_graceful_shutdown", seconds("a number of seconds >= 0", zero=True), 30.0,
            "On stop, wait this long for in-flight requests before closing them (uvicorn waits "
            "forever by default; 30 is gunicorn's graceful_timeout)."),
    Setting("timeout_worker", seconds("a number of seconds >= 0", zero=True), 60.0,
            "A worker whose event loop has been blocked this long is replaced: SIGTERM, then "
            "SIGKILL 5 s later (0: never)."),
    Setting("timeout_worker_boot", seconds("a number of seconds >= 0", zero=True), 120.0,
            "A worker not ready this long after it started (importing the app and lifespan "
            "startup) is killed and started again (0: wait forever)."),
    Setting("max_requests", integer("an integer >= 0", 0), 0,
            "Replace a worker after it has served about this many requests; its replacement "
            "starts first (0: never).", aliases=("--limit-max-requests",)),
    Setting("max_requests_jitter", integer("an integer >= 0", 0), 0,
            "Vary --max-requests by up to this many per worker, so workers do not all recycle "
            "at once.", aliases=("--limit-max-requests-jitter",)),
    Setting("max_worker_memory", integer("an integer >= 0 (MiB)", 0), 0,
            "Replace a worker whose resident memory exceeds this many MiB; its replacement "
            "starts first (0: never)."),
    Setting("metrics_bind", nullable(text("HOST:PORT or a Unix socket path", "ADDRESS",
            empty=False)), None,
            "Serve /metrics (Prometheus), /status and the --health-path from the supervisor "
            "on this address (it answers while every worker is busy)."),
    Setting("health_path", nullable(URL_PATH), None,
            "Answer this path without calling the app: on --metrics-bind 200 while the "
            "server can take work, else 503; on the server's own port 200."),
    Setting("health_queue_threshold", integer("an integer >= 0", 0), 0,
            "The --health-path says 503 when every worker is full and more than this many "
            "connections wait in the accept queue."),
    Setting("pid_file", nullable(text("a file path", "PATH", empty=False)), None,
            "Write the supervisor's pid to this file (for 'asgisup status' and scripts)."),
    Setting("log_level", choice("critical", "error", "warning", "info", "debug", "trace"),
            "info", "Log level."),
    Setting("access_log", FLAG, True, "Log one line per request."),
    Setting("access_log_format", ACCESS_FORMAT_KIND, ACCESS_FORMAT,
            "The access log line, a Python format string of: " + ", ".join(ACCESS_FIELDS)
            + " (the default is uvicorn's line)."),
    Setting("log_format", choice("text", "json"), "text",
            "'json': one JSON object a line, with pid, worker and each request's fields."),
    Setting("log_config", nullable(text("a file path", "PATH", empty=False)), None,
            "A logging.config.dictConfig file (JSON, or YAML with PyYAML) to use instead of "
            "asgisup's own log setup."),
    Setting("log_file", nullable(text("a file path", "PATH", empty=False)), None,
            "Append the log to this file instead of stderr; SIGUSR1 reopens it (logrotate)."),
    Setting("root_path", text("a string", "PATH"), "",
            "The ASGI root_path, for an app mounted below a path prefix by a proxy."),
    Setting("proxy_headers", FLAG, True,
            "Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto "
            "when the peer is in --forwarded-allow-ips."),
    Setting("forwarded_allow_ips", ADDRESSES, ("127.0.0.1",),
            "Proxies trusted for the proxy headers.", fallbacks=("FORWARDED_ALLOW_IPS",)),
    Setting("server_header", FLAG, True, "Send 'server: asgisup' unless the app sets one."),
    Setting("date_header", FLAG, True, "Send a 'date' header unless the app sets one."),
    Setting("headers", HEADERS, (), "Add this header to every response (repeatable).",
            flag="--header"),
)
# fmt: on

BY_NAME: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}
# asgisup.run()'s names for the aliases: limit_max_requests= for max_requests=.
ALIASES: Mapping[str, str] = {
    alias.removeprefix("--").replace("-", "_"): setting.name
    for setting in SETTINGS
    for alias in setting.aliases
}
_APP = BY_NAME["app"]


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class Config:
    """A complete, valid configuration; immutable (derive another with :meth:`replace`).

    ``Config("main:app", workers=8, max_inflight="1")`` validates every option through SETTINGS;
    strings are parsed like the command line's. Raises ConfigError for an unknown option or a
    value a setting does not accept.
    """

    app: App
    host: str
    port: int
    uds: str | None
    fd: int | None
    backlog: int
    workers: int | Literal["auto"]
    max_inflight: int
    busy_close: bool
    busy_close_min_service: float
    defer_accept: int | Literal["auto"]
    loop: str
    http: str
    ws: str
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    max_websockets: int
    lifespan: str
    factory: bool
    app_dir: str
    preload: bool
    reload: bool
    reload_dir: str
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_keyfile_password: str | None
    ssl_ca_certs: str | None
    ssl_cert_reqs: str
    ssl_ciphers: str | None
    timeout_keep_alive: float
    timeout_request_head: float
    timeout_client_stall: float
    max_request_head_size: int
    max_request_headers: int
    max_request_body_size: int
    timeout_graceful_shutdown: float
    timeout_worker: float
    timeout_worker_boot: float
    max_requests: int
    max_requests_jitter: int
    max_worker_memory: int
    metrics_bind: str | None
    health_path: str | None
    health_queue_threshold: int
    pid_file: str | None
    log_level: str
    access_log: bool
    access_log_format: str
    log_format: str
    log_config: str | None
    log_file: str | None
    root_path: str
    proxy_headers: bool
    forwarded_allow_ips: tuple[str, ...]
    server_header: bool
    date_header: bool
    headers: tuple[tuple[str, str], ...]

    def __init__(self, app: object, **options: object) -> None:
        self._assign(_resolve(app, options, {}, "python"))

    @classmethod
    def from_sources(
        cls,
        app: object,
        options: Mapping[str, object],
        environ: Mapping[str, str],
        *,
        origin: Origin = "python",
    ) -> Config:
        """The configuration from explicit ``options``, then ASGISUP_* variables in ``environ``,
        then fallback variables, then defaults. ``app`` None means ASGISUP_APP. ``origin`` says
        how errors name options (``--workers`` or ``workers=``).

        Raises ConfigError for an unknown option, a bad value (naming the variable it came
        from), a missing application, or options that exclude each other.
        """
        config = cls.__new__(cls)
        config._assign(_resolve(app, options, environ, origin))
        return config

    def _assign(self, values: Mapping[str, object]) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)  # the frozen dataclass's own escape hatch

    def options(self) -> dict[str, object]:
        """Every setting except ``app``, as ``run()`` keywords."""
        return {setting.name: getattr(self, setting.name) for setting in SETTINGS[1:]}

    def replace(self, **changes: object) -> Config:
        """A copy with ``changes`` applied and validated. Raises ConfigError like Config()."""
        return Config(changes.pop("app", self.app), **{**self.options(), **changes})

    def resolved_workers(self, cpus: int) -> int:
        """The number of workers to start, given the usable CPU count for 'auto'."""
        return self.workers if isinstance(self.workers, int) else max(1, cpus)

    def resolved_defer_accept(self) -> int:
        """TCP_DEFER_ACCEPT seconds (0: off). 'auto' defers only where a silent connection
        could take a slot, with a ceiling: without one it would protect nothing, and it costs
        new-connection throughput with several workers (docs/admission.md)."""
        if isinstance(self.defer_accept, int):
            return self.defer_accept
        return DEFER_ACCEPT_AUTO if self.max_inflight > 0 else 0

    def bind_description(self) -> str:
        """Where the server will listen: ``http://host:port``, ``unix:PATH`` or ``fd://N``."""
        if self.fd is not None:
            return f"fd://{self.fd}"
        if self.uds is not None:
            return f"unix:{self.uds}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        options = self.options().items()
        changed = [f"{k}={v!r}" for k, v in options if v != BY_NAME[k].default]
        return f"Config({', '.join([repr(self.app), *changed])})"


def _resolve(
    app: object, options: Mapping[str, object], environ: Mapping[str, str], origin: Origin
) -> dict[str, object]:
    renamed: dict[str, object] = {}
    for name, value in options.items():
        if name == "app":
            raise ConfigError("the application is the first argument, not an option")
        name = ALIASES.get(name, name)
        if name not in BY_NAME:
            raise ConfigError(_unknown(name, origin))
        if name in renamed:
            raise ConfigError(f"{name}= is given twice (once by another name)")
        renamed[name] = value
    options = renamed
    values: dict[str, object] = {}
    sources: dict[str, str | None] = {}
    for setting in SETTINGS:
        given = app if setting is _APP else options.get(setting.name)
        source = None
        if given is None:
            # An empty variable counts as unset: compose files and templates often render
            # "ASGISUP_UDS=" for "not set".
            names = (setting.env, *setting.fallbacks)
            found = [var for var in names if environ.get(var, "").strip()]
            if found:
                source = found[0]
                given = environ[source]
        if given is None:
            if setting is _APP:
                example = "'asgisup main:app'" if origin == "cli" else "asgisup.run('main:app')"
                raise ConfigError(f"missing the application, e.g. {example} (or set ASGISUP_APP)")
            values[setting.name] = setting.default
        else:
            values[setting.name] = setting.parse(given, origin, source)
        sources[setting.name] = source
    if values["uds"] is not None and values["fd"] is not None:
        uds, fd = (
            BY_NAME[name].label(origin) + (f" (from {sources[name]})" if sources[name] else "")
            for name in ("uds", "fd")
        )
        raise ConfigError(
            f"{uds} and {fd} exclude each other: listen on one (host and port are ignored "
            "with either)"
        )
    if values["reload"] and values["preload"]:
        reload, preload = (
            BY_NAME[name].label(origin) + (f" (from {sources[name]})" if sources[name] else "")
            for name in ("reload", "preload")
        )
        raise ConfigError(
            f"{reload} and {preload} exclude each other: preloaded code is never reloaded"
        )
    return values


def _unknown(name: str, origin: Origin) -> str:
    spelled = "--" + name.replace("_", "-") if origin == "cli" else f"{name}="
    close = difflib.get_close_matches(name, [setting.name for setting in SETTINGS[1:]], n=1)
    hint = f"; did you mean {BY_NAME[close[0]].label(origin)}?" if close else ""
    return f"unknown option {spelled}{hint}"


def reference_markdown() -> str:
    """The reference table of every setting, as docs/configuration.md holds it."""
    rows = [
        "| Option | Environment | Default | Accepted values | Description |",
        "|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        if setting.positional:
            option = f"`{setting.kind.metavar}` (positional)"
        elif setting.kind.boolean:
            option = f"`{setting.option}` / `--no-{setting.option[2:]}`"
        else:
            option = f"`{setting.option} {setting.kind.metavar}`"
        if setting.aliases:
            option += " (also " + ", ".join(f"`{alias}`" for alias in setting.aliases) + ")"
        env = ", then ".join(f"`{var}`" for var in (setting.env, *setting.fallbacks))
        default = "required" if setting.positional else f"`{setting.kind.show(setting.default)}`"
        cells = [option, env, default, setting.kind.accepted, setting.help]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"
