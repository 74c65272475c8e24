"""Servers started as their own process group, so they (and their children) can be stopped
by PID without touching anything we did not start. This process remembers the groups it
started and has not stopped (`started_groups`): a test session stops them when it is
interrupted (tests/process_guard.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

_started: dict[int, None] = {}  # leaders of the groups start_group made, until stop_group


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_group(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start argv as the leader of a new session (process group), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env or os.environ),
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()
    _started[proc.pid] = None
    return proc


def started_groups() -> list[int]:
    """The groups this process started and has not stopped that are still alive, oldest first."""
    return [pid for pid in _started if is_alive(pid)]


def is_alive(pid: int) -> bool:
    """Running: a zombie (exited, not reaped yet by a parent that may never reap it) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie; a zombie child of ours is reaped on the way."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)
            return False
        return proc.is_running()
    except psutil.NoSuchProcess:
        return False


def _wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has ended (zombies count as ended); returns those still
    running. psutil.wait_procs would wait the whole timeout for another parent's zombie."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """Stop the process group led by pid and every descendant of pid (some servers, Airflow's
    task runners among them, start children in sessions of their own): SIGTERM, then SIGKILL
    whatever is still alive after timeout."""
    try:
        leader = psutil.Process(pid)
        family = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for proc in family[1:]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    alive = _wait_ended(family, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_ended(alive, timeout)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    _started.pop(pid, None)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")
