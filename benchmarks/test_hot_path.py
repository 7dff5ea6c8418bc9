"""The in-process harness of benchmarks/hot_path.py really serves requests.

.venv/bin/pytest benchmarks/test_hot_path.py
"""

from __future__ import annotations

import asyncio
import os

import pytest

from benchmarks import hot_path
from benchmarks.cpu_split import session_cpu


@pytest.mark.parametrize("pure", [False, True])
@pytest.mark.parametrize("case", sorted(hot_path.CASES))
def test_each_server_answers_every_request(case: str, pure: bool) -> None:
    pytest.importorskip("uvicorn")  # the benchmark extra, not the test one
    if not pure:
        pytest.importorskip("httptools")
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        for factory in (hot_path.asgisup_factory, hot_path.uvicorn_factory):
            make = factory(pure)
            # _settle() waits for each response; a server that dropped one would hang here.
            seconds = loop.run_until_complete(asyncio.wait_for(hot_path.CASES[case](make, 50), 30))
            assert seconds > 0
    finally:
        hot_path.close_listeners()
        loop.close()
        asyncio.set_event_loop(None)


def test_session_cpu_counts_this_session() -> None:
    user, system = session_cpu(os.getsid(0))
    assert user + system > 0  # at least this interpreter's start-up
