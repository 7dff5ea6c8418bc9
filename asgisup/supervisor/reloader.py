"""``--reload``: a watcher process that asks the supervisor for a rolling restart (SIGHUP)
whenever a Python file changes.

It is a separate process (``python -m asgisup.supervisor.reloader PID DIR``), not a thread,
because the supervisor forks workers: a fork while another thread holds a lock (the logging
lock, say) can leave the child deadlocked. It exits when the supervisor is gone.
"""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> int:
    from watchfiles import PythonFilter, watch

    supervisor, directory = int(argv[0]), argv[1]
    for changes in watch(
        directory, watch_filter=PythonFilter(), rust_timeout=1000, yield_on_timeout=True
    ):
        if os.getppid() != supervisor:
            return 0  # the supervisor is gone
        if changes:
            names = sorted({os.path.relpath(path, directory) for _, path in changes})
            print(
                f"INFO:     Reload: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} "
                "changed; restarting the workers",
                file=sys.stderr,
                flush=True,
            )
            os.kill(supervisor, signal.SIGHUP)
    return 0


if __name__ == "__main__":  # pragma: no cover - runs as its own process
    sys.exit(main(sys.argv[1:]))
