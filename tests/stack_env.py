"""The environment a test's own `imgsim up` needs for the vector index's PostgreSQL."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from pipeline.local.processes import free_port


def vector_db_env() -> dict[str, str]:
    """Free ports for PostgreSQL and the RDS Data API emulator, and a data directory its
    server can reach: as root PostgreSQL runs as an unprivileged user, which cannot enter
    pytest's root-private tmp_path. The directory is removed when the session ends (after the
    fixtures' `down`)."""
    base = Path(tempfile.mkdtemp(prefix="imgsim-stack-pg-"))
    base.chmod(0o755)
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return {
        "IMGSIM_LOCAL_POSTGRES_PORT": str(free_port()),
        "IMGSIM_LOCAL_RDS_DATA_PORT": str(free_port()),
        "IMGSIM_LOCAL_POSTGRES_DIR": str(base / "data"),
    }
