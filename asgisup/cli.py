"""The command line: ``asgisup MODULE:ATTR [options]`` -> Config -> ``runner.run_config``.

Every flag is generated from ``asgisup.config.SETTINGS``. A user error ends as one line on
stderr, ``asgisup: error: ...``, and exit code 2: argparse's usage dump is replaced, because in
a container's log the actual complaint drowns in it.
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from asgisup import __version__
from asgisup.config import SETTINGS, Config, Setting
from asgisup.errors import AsgisupError, ConfigError

PROG = "asgisup"

_DESCRIPTION = """\
Serve an ASGI application with workers that only accept the work they have room for.

Every option can also be set by its ASGISUP_* environment variable; an option on the
command line wins over the variable, which wins over the default."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse says "argument --port: expected one argument"; the option's name is enough.
        raise ConfigError(message.removeprefix("argument "))


def version_line() -> str:
    """``asgisup 0.1.0 (CPython 3.11.7 on Linux)``."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{PROG} {__version__} ({python} on {platform.system()})"


def _help(setting: Setting) -> str:
    env = ", then ".join((setting.env, *setting.fallbacks))
    text = f"{setting.help} [default: {setting.kind.show(setting.default)}; env: {env}]"
    return text.replace("%", "%%")  # argparse %-formats help strings


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for SETTINGS. Options the user did not type are absent from the
    namespace it returns (the default is SUPPRESS), so they cannot hide ASGISUP_* variables.
    Its ``error()`` raises ConfigError instead of printing usage and exiting.
    """
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} MODULE:ATTR [options]",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --work must not silently mean --workers
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=version_line())
    for setting in SETTINGS:
        metavar, help = setting.kind.metavar, _help(setting)
        if setting.positional:
            parser.add_argument(setting.name, nargs="?", metavar=metavar, help=help)
        elif setting.kind.boolean:
            action = argparse.BooleanOptionalAction
            parser.add_argument(setting.option, dest=setting.name, action=action, help=help)
        else:
            action_name = "append" if setting.kind.repeatable else "store"
            flags = (setting.option, *setting.aliases)
            parser.add_argument(
                *flags, dest=setting.name, action=action_name, metavar=metavar, help=help
            )
    return parser


def config_from_argv(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """The Config for a command line (without the program name) and an environment.

    Raises ConfigError for an unknown option, a bad value or a missing application, and
    SystemExit(0) after printing the help or the version.
    """
    parser = build_parser()
    namespace, extra = parser.parse_known_args(list(argv))
    if extra:
        raise ConfigError(_unexpected(extra, parser))
    given = vars(namespace)
    app = given.pop("app", None)
    return Config.from_sources(app, given, environ, origin="cli")


def _unexpected(extra: list[str], parser: argparse.ArgumentParser) -> str:
    for arg in extra:
        if arg.startswith("-") and arg != "-":
            name = arg.partition("=")[0]
            flags = [flag for action in parser._actions for flag in action.option_strings]
            close = difflib.get_close_matches(name, flags, n=1)
            return f"unknown option {name}" + (f"; did you mean {close[0]}?" if close else "")
    return f"unexpected argument {extra[0]!r}: give one application, e.g. 'asgisup main:app'"


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Raises nothing for a user's mistake: a bad option exits 2 and an error from the server
    (AsgisupError) exits with its ``exit_code``, each after one ``asgisup: error:`` line.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["status"]:
        from asgisup.status import main as status_main

        return status_main(argv[1:])
    try:
        config = config_from_argv(argv, os.environ)
    except ConfigError as exc:
        _fail(" ".join(str(exc).splitlines()))
        return 2
    except SystemExit as exc:  # --help or --version, already printed
        return exc.code if isinstance(exc.code, int) else 0
    # Imported only now: a mistyped option answers without loading the server's machinery.
    from asgisup.runner import run_config

    try:
        return run_config(config)
    except AsgisupError as exc:
        # A boot failure's message may carry the app's own traceback: keep its lines.
        _fail(str(exc))
        return int(getattr(exc, "exit_code", 1))
