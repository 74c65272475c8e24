"""The local PostgreSQL's lifecycle (pipeline/local/postgres.py): data kept across a stop and a
start, the whole process group gone after stop, and a clear error for a data directory the
unprivileged server user cannot reach."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from pipeline.local import postgres
from pipeline.local.processes import free_port, is_alive


def test_data_survives_a_stop_and_start_and_stop_ends_the_group() -> None:
    base = Path(tempfile.mkdtemp(prefix="imgsim-pg-"))
    base.chmod(0o755)
    try:
        server = postgres.start(base / "data", free_port(), log_path=base / "pg.log")
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v vector(3))")
            conn.execute("INSERT INTO kept VALUES ('[1,2,3]')")
        children = psutil.Process(server.pid).children(recursive=True)
        assert children  # the postmaster's checkpointer, writer, ...
        if os.geteuid() == 0:
            assert psutil.Process(server.pid).username() == postgres.SERVER_USER
        postgres.stop(server)
        assert not is_alive(server.pid)
        assert not any(is_alive(c.pid) for c in children)

        again = postgres.start(base / "data", free_port(), log_path=base / "pg.log")
        try:
            with psycopg.connect(again.dsn) as conn:
                row = conn.execute("SELECT v::text FROM kept").fetchone()
            assert row == ("[1,2,3]",)
        finally:
            postgres.stop(again)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_a_data_directory_the_server_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(postgres.PostgresError, match="not searchable by imgsim-pg"):
        postgres.init(private / "data")
