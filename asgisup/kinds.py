"""The kinds of values settings take: each turns text from the command line or the
environment, or a value already typed in Python, into the value the server uses, or rejects it.

Used by the table in ``asgisup.config``; pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable

from asgisup.logs import ACCESS_FIELDS

# listen()'s backlog and file descriptors are C ints; larger values would only fail later, in
# the socket layer, with an OverflowError instead of a message naming the option.
C_INT_MAX = 2**31 - 1
# RFC 9110 section 5.1: a field name is a token.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Rejected(Exception):
    """A Kind refused a value; ``part`` is the piece to quote when it is not the whole value."""

    def __init__(self, part: object = None) -> None:
        super().__init__(part)
        self.part = part


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one setting's values are parsed and shown.

    ``convert`` takes text (from the command line or the environment) or a value already typed
    in Python, and returns the typed value; it raises Rejected. ``accepted`` words the values
    it takes for errors and docs.
    """

    accepted: str
    convert: Callable[[object], object]
    metavar: str = "VALUE"
    show: Callable[[object], str] = str
    boolean: bool = False  # a --name / --no-name pair on the command line
    repeatable: bool = False  # one value per flag on the command line: --header A:1 --header B:2


def text(accepted: str, metavar: str, *, empty: bool = True) -> Kind:
    def convert(value: object) -> object:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and (empty or value):
            return value
        raise Rejected

    return Kind(accepted, convert, metavar, show=lambda value: str(value) or '""')


def _to_int(value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise Rejected from None
    # bool is an int subclass, but workers=True is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise Rejected
    if high is not None and value > high:
        raise Rejected
    return value


def integer(accepted: str, low: int, high: int | None = None) -> Kind:
    return Kind(accepted, lambda value: _to_int(value, low, high), "INT")


def seconds(accepted: str, *, zero: bool) -> Kind:
    def convert(value: object) -> object:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise Rejected from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Rejected
        number = float(value)
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
            raise Rejected
        return number

    return Kind(accepted, convert, "SECONDS", show=lambda value: f"{value:g}")


def choice(*choices: str) -> Kind:
    def convert(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise Rejected

    return Kind("one of " + ", ".join(choices), convert, "{" + ",".join(choices) + "}")


def _to_bool(value: object) -> object:
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise Rejected


def nullable(kind: Kind) -> Kind:
    """``kind``'s values, or None: not used."""
    return dataclasses.replace(
        kind,
        convert=lambda value: None if value is None else kind.convert(value),
        show=lambda value: "none" if value is None else kind.show(value),
    )


def or_auto(kind: Kind) -> Kind:
    """``kind``'s values, or the word ``auto`` (the server decides; see the setting)."""

    def convert(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return kind.convert(value)

    metavar = "{" + kind.metavar + ",auto}"
    return dataclasses.replace(
        kind, accepted=f"{kind.accepted} or 'auto'", convert=convert, metavar=metavar
    )


def _to_addresses(value: object) -> object:
    items = value.split(",") if isinstance(value, str) else strings(value)
    entries = tuple(item.strip() for item in items if item.strip())
    for entry in entries:
        if entry not in ("*", "unix:"):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise Rejected(entry) from None
    return entries


def strings(value: object) -> list[str]:
    if isinstance(value, Iterable) and all(isinstance(item, str) for item in value):
        return list(value)
    raise Rejected


def _to_headers(value: object) -> object:
    # One header per line in the environment: a value may hold ';' or ',' (Cache-Control,
    # Content-Security-Policy), never a line break, which would split the response head.
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, Iterable):
        raise Rejected
    return tuple(_header(item) for item in value)


def _header(item: object) -> tuple[str, str]:
    if isinstance(item, str):
        name, sep, text = item.partition(":")
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        name, sep, text = item[0], ":", item[1]
    else:
        raise Rejected(item)
    if not (sep and isinstance(name, str) and isinstance(text, str)):
        raise Rejected(item)
    name, text = name.strip(), text.strip()
    if not TOKEN.fullmatch(name) or any(char in text for char in "\r\n\0"):
        raise Rejected(item)
    try:
        text.encode("latin-1")  # the bytes that go on the wire (RFC 9110 section 5.5)
    except UnicodeEncodeError:
        raise Rejected(item) from None
    return name, text


def _show_headers(value: object) -> str:
    assert isinstance(value, tuple)
    return "; ".join(f"{name}: {text}" for name, text in value) or "none"


def _to_app(value: object) -> object:
    if isinstance(value, str):
        module, sep, attr = value.strip().partition(":")
        if sep and module and attr:
            return value.strip()
    elif callable(value):
        return value
    raise Rejected


def to_cert_reqs(value: object) -> object:
    names = {"0": "none", "1": "optional", "2": "required"}
    word = str(value).strip().lower() if isinstance(value, (str, int)) else None
    word = names.get(word, word) if word is not None else None
    if word in ("none", "optional", "required"):
        return word
    raise Rejected


def _to_url_path(value: object) -> object:
    if (
        isinstance(value, str)
        and value.startswith("/")
        and value.isprintable()
        and " " not in value
    ):
        return value
    raise Rejected


def _to_access_format(value: object) -> object:
    if isinstance(value, str):
        try:
            value.format_map(ACCESS_FIELDS)
        except (KeyError, ValueError, IndexError, AttributeError):
            raise Rejected from None
        return value
    raise Rejected


ACCESS_FORMAT_KIND = Kind(
    "a format string of the fields " + ", ".join(f"{{{name}}}" for name in ACCESS_FIELDS),
    _to_access_format,
    "FORMAT",
)

URL_PATH = Kind("a path starting with /", _to_url_path, "PATH")

FLAG = Kind("true or false (1/0, yes/no, on/off)", _to_bool, boolean=True,
             show=lambda value: "true" if value else "false")  # fmt: skip


def quote(value: object) -> str:
    text = repr(value).replace("\n", "\\n")  # a hostile __repr__ must not break the one line
    return text if len(text) <= 80 else text[:77] + "..."


ADDRESSES = Kind("IP addresses or networks separated by commas, '*' (any) or 'unix:'",
                  _to_addresses, "LIST", show=lambda value: ",".join(strings(value)))  # fmt: skip
APP_KIND = Kind("'module:attribute' (e.g. 'main:app') or an ASGI application object",
                 _to_app, "MODULE:ATTR")  # fmt: skip
HEADERS = Kind("'Name: Value' (one per line in the environment)", _to_headers,
                "'NAME: VALUE'", show=_show_headers, repeatable=True)  # fmt: skip
