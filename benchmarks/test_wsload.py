"""The pure parts of the WebSocket load generator: spreading, combining, naming failures.

.venv/bin/pytest benchmarks/test_wsload.py
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from benchmarks.wsload import BadEcho, Part, combine, error_name, message_label, spread


def test_spread_is_even_with_larger_shares_first() -> None:
    assert spread(16, 1) == [16]
    assert spread(16, 2) == [8, 8]
    assert spread(5, 2) == [3, 2]
    assert spread(7, 3) == [3, 2, 2]


@pytest.mark.parametrize(("connections", "processes"), [(2, 3), (4, 0), (0, 0)])
def test_spread_refuses_idle_or_no_processes(connections: int, processes: int) -> None:
    with pytest.raises(ValueError):
        spread(connections, processes)


def test_combine_adds_echoes_and_errors_and_keeps_the_busiest_cpu() -> None:
    parts = [
        Part(echoes=300, cpu_s=1.5, errors={"timeout": 1}),
        Part(echoes=100, cpu_s=1.8, errors={"timeout": 2, "ConnectionResetError": 1}),
    ]
    result = combine(parts, 2.0)
    assert result.echoes == 400
    assert result.messages_per_s == pytest.approx(200.0)
    assert result.client_cpu == pytest.approx(0.9)
    assert result.errors == {"timeout": 3, "ConnectionResetError": 1}
    assert result.error_count == 4
    assert result.failure() == "4 errors: 1 x ConnectionResetError; 3 x timeout"


def test_a_clean_run_has_no_failure_but_an_empty_one_does() -> None:
    assert combine([Part(echoes=10)], 1.0).failure() is None
    assert combine([Part()], 1.0).failure() == "no echo received in the measured window"
    assert combine([], 1.0).failure() == "no echo received in the measured window"


def test_error_names() -> None:
    refused = InvalidStatus(Response(403, "Forbidden", Headers()))
    assert error_name(refused) == "handshake rejected: HTTP 403"
    garbled = InvalidMessage("did not receive a valid HTTP response")
    assert error_name(garbled) == "handshake failed: did not receive a valid HTTP response"
    closed = ConnectionClosedError(Close(1011, "boom"), None)
    assert error_name(closed) == "closed by the server (code 1011)"
    assert error_name(ConnectionClosedError(None, None)) == "closed by the server (no close frame)"
    assert error_name(BadEcho()) == "echo differs from the message sent"
    assert error_name(asyncio.TimeoutError()) == "timeout"
    assert error_name(ConnectionRefusedError()) == "ConnectionRefusedError"


def test_message_labels_give_the_size_in_bytes() -> None:
    assert message_label("text") == "text 32 B"
    assert message_label("binary", deflate=True) == "binary 1024 B, deflate"
