"""``asgisup status``: the figures of a running server, as a table.

The supervisor listens on a control socket, ``$XDG_RUNTIME_DIR/asgisup-PID.sock`` (else in the
temporary directory), and answers ``GET /status`` with its snapshot; this command reads it.
The server is found by ``--pid``, ``--pid-file`` (as written by the server's ``--pid-file``),
or, when neither is given, as the only control socket there.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import sys
import time

from asgisup.errors import ConfigError
from asgisup.supervisor.control import control_socket_path, runtime_dir
from asgisup.supervisor.metrics import Snapshot, table


def fetch(path: str, timeout: float = 5.0) -> Snapshot:
    """The snapshot the supervisor listening on control socket ``path`` gives.

    Raises OSError when it cannot be reached.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: asgisup\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected answer: {head[:60]!r}")
    return Snapshot.from_json(json.loads(body))


def find_socket(pid: int | None, pid_file: str | None) -> str:
    """The control socket to ask; raises ConfigError when it cannot be told."""
    if pid_file is not None:
        try:
            with open(pid_file) as file:
                pid = int(file.read().strip())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--pid-file {pid_file}: no pid in it ({exc})") from None
    if pid is not None:
        return control_socket_path(pid)
    found = [
        path
        for path in sorted(glob.glob(os.path.join(runtime_dir(), "asgisup-*.sock")))
        if _alive(path)  # a supervisor killed hard leaves its socket file behind
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"no running asgisup server found in {runtime_dir()}")
    pids = ", ".join(path.rsplit("-", 1)[1].removesuffix(".sock") for path in found)
    raise ConfigError(f"several servers are running (pids {pids}): choose one with --pid")


def _alive(path: str) -> bool:
    try:
        os.kill(int(path.rsplit("-", 1)[1].removesuffix(".sock")), 0)
    except ValueError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="asgisup status", description="Show the workers of a running asgisup server."
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--pid", type=int, help="the supervisor's pid")
    which.add_argument("--pid-file", help="the file the server's --pid-file wrote")
    parser.add_argument(
        "--watch", nargs="?", const=1.0, type=float, metavar="SECONDS",
        help="refresh in place every SECONDS (default 1) until Ctrl-C",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        path = find_socket(args.pid, args.pid_file)
    except ConfigError as exc:
        print(f"asgisup status: error: {exc}", file=sys.stderr)
        return 2
    try:
        while True:
            try:
                text = table(fetch(path))
            except OSError as exc:
                print(f"asgisup status: error: cannot reach {path}: {exc}", file=sys.stderr)
                return 1
            if args.watch is None:
                print(text)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")  # home, clear, redraw
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
