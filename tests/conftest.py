"""Fixtures: real asgisup processes on 127.0.0.1:0, one per loop and parser combination."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serverproc import ServerProcess

# Every loop with every parser: the behaviour above the parser interface must not differ.
COMBOS = [
    pytest.param(("uvloop", "httptools"), id="uvloop-httptools"),
    pytest.param(("asyncio", "h11"), id="asyncio-h11"),
    pytest.param(("asyncio", "httptools"), id="asyncio-httptools"),
    pytest.param(("uvloop", "h11"), id="uvloop-h11"),
]


@pytest.fixture(scope="module", params=COMBOS)
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    loop, http = request.param
    return loop, http


@pytest.fixture(scope="module")
def server(combo: tuple[str, str]) -> Iterator[ServerProcess]:
    """One worker, no ceiling, the test app; shared by a module's tests for one combo."""
    loop, http = combo
    with ServerProcess(
        "tests.apps:app",
        "--loop",
        loop,
        "--http",
        http,
        "--timeout-graceful-shutdown",
        "5",
    ) as proc:
        proc.start()
        yield proc
        assert proc.stop() == 0, proc.log
