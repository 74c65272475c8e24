"""A test session interrupted while a fixture has servers up stops them: a tiny pytest session
in a subprocess starts a server group in a fixture (as the conftest fixtures do) and watches a
local stack whose state file names another group (as the e2e fixtures do; its `up` was cut
short, so no teardown of a fixture stops it); its process group gets SIGINT (Ctrl-C at a
terminal) or SIGTERM (a CI timeout) mid-test; then both server groups are gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import psutil
import pytest

from pipeline.local.processes import is_alive, start_group, stop_group
from tests.polling import eventually

REPO = Path(__file__).resolve().parents[2]
PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "tests.process_guard",
    "-p",
    "no:cacheprovider",
]

TINY_SESSION = """
import json, os, sys, time
from pathlib import Path

import pytest

from pipeline.local.processes import start_group, stop_group
from tests.process_guard import watch_stack_dir

OUT = Path(os.environ["GUARD_OUT"])


@pytest.fixture
def server():
    proc = start_group([sys.executable, "-c", "import time; time.sleep(600)"], OUT / "server.log")
    yield proc.pid
    stop_group(proc.pid)


def test_waits_for_the_signal(server):
    watch_stack_dir(OUT / "stack")
    (OUT / "ready.json").write_text(json.dumps({"server": server}))
    time.sleep(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_session_stops_the_servers_it_started(tmp_path, signum):
    (tmp_path / "test_tiny.py").write_text(TINY_SESSION)
    # a server the session's "stack" started, known only from its state file
    stack_dir = tmp_path / "stack"
    stack_server = start_group(
        [sys.executable, "-c", "import time; time.sleep(600)"], stack_dir / "moto.log"
    )
    state = {
        "moto_pid": stack_server.pid,
        "services_pid": stack_server.pid,
        "sagemaker_pid": stack_server.pid,
        "bedrock_pid": stack_server.pid,
        "moto_url": "",
        "api_url": "",
        "sagemaker_url": "",
        "bedrock_url": "",
    }
    (stack_dir / "stack.json").write_text(json.dumps(state))
    env = {**os.environ, "GUARD_OUT": str(tmp_path), "PYTHONPATH": str(REPO)}
    session = subprocess.Popen(
        [*PYTEST, "--rootdir", str(tmp_path), str(tmp_path / "test_tiny.py")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # a session started in the background (`make test &`) inherits SIGINT ignored, and
        # Python then never turns it into KeyboardInterrupt: the default, as at a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    server = None
    try:

        def at_its_test() -> bool:
            assert session.poll() is None, session.stdout.read().decode()[-3000:]
            return (tmp_path / "ready.json").exists()

        eventually(at_its_test, 120, message="the tiny session at its test")
        server = json.loads((tmp_path / "ready.json").read_text())["server"]
        assert is_alive(server)
        os.killpg(session.pid, signum)
        output = session.communicate(timeout=180)[0].decode()
        assert session.returncode != 0, output  # interrupted, not passed
        for pid in (server, stack_server.pid):
            eventually(partial(_gone, pid), 15, 0.1, f"{pid} gone\n{output[-3000:]}")
    finally:
        if session.poll() is None:
            stop_group(session.pid)
        for pid in (server, stack_server.pid):
            if pid is not None and is_alive(pid):
                stop_group(pid)


def _gone(pid: int) -> bool:
    """The process is gone or a zombie (exited; the tiny session's parent reaped nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
