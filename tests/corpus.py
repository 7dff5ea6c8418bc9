"""The byte-level request corpus in tests/http_corpus/.

Each ``*.http`` file is a header, ``---``, then the request. The header says what the server
must answer (``status: 400``) and whether it then closes the connection (``close: yes``); a
line ``h11: 200 no (why)`` or ``httptools: ...`` records where one parser knowingly differs.
The request part is written for people: newlines in the file are ignored, and the escapes
``\\r``, ``\\n``, ``\\t``, ``\\\\`` and ``\\xNN`` stand for those bytes, so every byte is explicit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).parent / "http_corpus"
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|r|n|t|\\)")
_NAMED = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes
    status: int
    close: bool
    exceptions: dict[str, tuple[int, bool]]

    def expect(self, parser: str) -> tuple[int, bool]:
        """(status, closes) that ``parser`` ("h11" or "httptools") must give."""
        return self.exceptions.get(parser, (self.status, self.close))


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    return bytes([int(code[1:], 16)]) if code.startswith(b"x") else _NAMED[code]


def load(path: Path) -> Case:
    header, _, body = path.read_bytes().partition(b"\n---\n")
    fields = dict(line.split(": ", 1) for line in header.decode().splitlines())
    request = _ESCAPE.sub(_unescape, body.replace(b"\n", b""))
    exceptions = {}
    for parser in ("h11", "httptools"):
        if parser in fields:
            status, close = fields[parser].split()[:2]
            exceptions[parser] = (int(status), close == "yes")
    return Case(path.stem, request, int(fields["status"]), fields["close"] == "yes", exceptions)


def cases() -> list[Case]:
    return [load(path) for path in sorted(CORPUS.glob("*.http"))]
