"""A pytest plugin: servers a test session started are stopped however the session ends.

Fixtures stop their servers in their teardown, but an interrupted session may never get there:
SIGTERM (a CI timeout, `kill`) ends Python without running it, and a Ctrl-C during a long
`up` kills the `up` child before it can stop what it started. So:

- SIGTERM and SIGHUP become KeyboardInterrupt, as Ctrl-C is: pytest unwinds and runs the
  fixtures' teardown;
- when the session finishes (interrupted or not) and when the interpreter exits, every process
  group this process started (`pipeline.local.processes.started_groups`) and every group of
  the local stacks registered with `watch_stack_dir` that is still alive is stopped;
- `run_cli` runs a command (`imgsim up`, ...) in its own session, so a Ctrl-C at the
  terminal reaches only pytest, which then interrupts the command and waits for it to stop
  what it started; `run_imgsim` runs `imgsim` so, and `exports` and `services` read what its
  `env` and `--json status` print.

Only a SIGKILL leaves servers behind: CONTRIBUTING.md says how to find and stop them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pipeline.local.config import LocalConfig
from pipeline.local.processes import is_alive, started_groups, stop_group
from pipeline.local.state_file import read_state

INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CLI_GRACE_SECONDS = 60.0  # how long an interrupted `up` may take to stop what it started
# the `imgsim` console script's own entry (pipeline.cli.app:main), run by this interpreter
IMGSIM = (sys.executable, "-m", "pipeline.cli")

_stack_dirs: dict[Path, None] = {}


def watch_stack_dir(path: Path | str) -> None:
    """Stop the groups of the local stack in `path` (IMGSIM_LOCAL_DIR) if the session ends
    while it runs."""
    _stack_dirs[Path(path)] = None


def stop_leftovers() -> list[int]:
    """Stop every group started here, and every group of the watched stacks, still alive;
    returns their leaders' PIDs."""
    leaders = list(started_groups())
    for path in list(_stack_dirs):
        with contextlib.suppress(Exception):  # a half-written state file: nothing to read
            state = read_state(LocalConfig.from_env({"IMGSIM_LOCAL_DIR": str(path)}))
            if state is not None:
                leaders += [pid for pid in state.pids().values() if is_alive(pid)]
    for pid in dict.fromkeys(leaders):
        stop_group(pid)
    return leaders


def run_cli(
    argv: Sequence[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True)` with the child in its own session:
    when this process is interrupted, the child gets SIGINT and up to CLI_GRACE_SECONDS to stop
    what it started (subprocess.run would kill it after a quarter of a second)."""
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=CLI_GRACE_SECONDS)
        except BaseException:
            stop_group(proc.pid)
            raise
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def run_imgsim(
    args: Sequence[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`imgsim <args>` as a person types it, through `run_cli`."""
    return run_cli([*IMGSIM, *args], env, timeout)


def exports(env_output: str) -> dict[str, str]:
    """The variables `eval "$(imgsim env)"` sets, read as the shell reads its lines."""
    pairs = (shlex.split(line)[1].split("=", 1) for line in env_output.splitlines() if line)
    return {name: value for name, value in pairs}


def services(status_json: str) -> dict[str, Any]:
    """`imgsim --json status` (or `up`) as {"running": bool, "<service>": {url, pid, health,
    what}}."""
    status = json.loads(status_json)
    return {
        "running": status["running"],
        **{part["service"]: part for part in status.get("services", [])},
    }


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in INTERRUPT_SIGNALS:
            signal.signal(signum, _interrupt)
    atexit.register(stop_leftovers)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the fixtures' teardown (pytest's own sessionfinish runs it first)."""
    stop_leftovers()
