"""A real PostgreSQL + pgvector server for the session, on a free port, stopped by its process
group (pipeline/local/postgres.py). Its data directory is made under the system's temporary
directory, opened to others, because as root the server runs as an unprivileged user that
cannot enter pytest's root-private tmp_path."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.local import postgres
from pipeline.local.processes import free_port


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.Server]:
    base = Path(tempfile.mkdtemp(prefix="imgsim-pg-"))
    base.chmod(0o755)
    server = postgres.start(base / "data", free_port(), log_path=base / "postgres.log")
    try:
        yield server
    finally:
        postgres.stop(server)
        shutil.rmtree(base, ignore_errors=True)
