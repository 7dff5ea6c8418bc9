"""The documentation site builds without a warning (broken links and anchors included)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.serverproc import ROOT


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.html").exists() and (tmp_path / "faq" / "index.html").exists()


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    assert [page for page in pages if page not in nav] == []


# `uvicorn --help` of uvicorn 0.54, the version the migration table was written against.
UVICORN_OPTIONS = [
    "--host",
    "--port",
    "--uds",
    "--fd",
    "--reload",
    "--reload-dir",
    "--reload-include",
    "--reload-exclude",
    "--reload-delay",
    "--workers",
    "--loop",
    "--http",
    "--http2",
    "--ws",
    "--ws-max-size",
    "--ws-max-queue",
    "--ws-ping-interval",
    "--ws-ping-timeout",
    "--ws-per-message-deflate",
    "--lifespan",
    "--interface",
    "--env-file",
    "--log-config",
    "--log-level",
    "--access-log",
    "--no-access-log",
    "--use-colors",
    "--proxy-headers",
    "--server-header",
    "--date-header",
    "--forwarded-allow-ips",
    "--root-path",
    "--limit-concurrency",
    "--backlog",
    "--limit-max-requests",
    "--limit-max-requests-jitter",
    "--timeout-keep-alive",
    "--timeout-graceful-shutdown",
    "--timeout-worker-healthcheck",
    "--ssl-keyfile",
    "--ssl-certfile",
    "--ssl-keyfile-password",
    "--ssl-version",
    "--ssl-cert-reqs",
    "--ssl-ca-certs",
    "--ssl-ciphers",
    "--header",
    "--version",
    "--app-dir",
    "--h11-max-incomplete-event-size",
    "--reset-contextvars",
    "--factory",
]


def test_migration_table_covers_every_uvicorn_option() -> None:
    from asgisup.cli import build_parser

    text = (ROOT / "docs" / "migration.md").read_text()
    table = text.split("## uvicorn's options", 1)[1].split("\n## ", 1)[0]
    listed: set[str] = set()
    ours = {flag for action in build_parser()._actions for flag in action.option_strings}
    for row in table.splitlines()[4:]:
        uvicorn_cell, asgisup_cell = row.split(" | ")[0], row.split(" | ")[1]
        flags = set(re.findall(r"--[a-z0-9-]+", uvicorn_cell))
        listed |= flags
        if asgisup_cell.startswith("same"):  # same name and meaning: the flag must exist
            assert flags <= ours, flags - ours
    assert set(UVICORN_OPTIONS) - {"--no-access-log"} <= listed
