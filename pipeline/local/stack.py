"""`up`, `down` and `status` of the local stack, with its state kept across restarts."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from pipeline.local.deploy import REPO_ROOT, StackSpec, deploy
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import is_alive, start_group, stop_group, wait_until
from pipeline.local.recording import filter_recording
from pipeline.settings import Settings

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


@dataclass(frozen=True)
class LocalConfig:
    """Where the local stack listens and keeps its files (IMGSIM_LOCAL_* variables)."""

    state_dir: Path
    host: str = "127.0.0.1"
    moto_port: int = 4566
    api_port: int = 8000
    stack_name: str = "imgsim-local"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalConfig:
        env = dict(os.environ if env is None else env)
        return cls(
            state_dir=Path(env.get("IMGSIM_LOCAL_DIR", REPO_ROOT / ".local")),
            moto_port=int(env.get("IMGSIM_LOCAL_MOTO_PORT", 4566)),
            api_port=int(env.get("IMGSIM_LOCAL_API_PORT", 8000)),
        )

    @property
    def moto_url(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def recording(self) -> Path:
        return self.state_dir / "moto-recording.jsonl"


@dataclass
class StackState:
    moto_pid: int
    services_pid: int
    moto_url: str
    api_url: str


def local_settings(config: LocalConfig, env: dict[str, str] | None = None) -> Settings:
    return Settings.from_env(env).with_endpoint(config.moto_url)


def child_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.to_env()}
    for key, value in LOCAL_CREDENTIALS.items():
        env.setdefault(key, value)
    return env


def read_state(config: LocalConfig) -> StackState | None:
    if not config.state_file.exists():
        return None
    return StackState(**json.loads(config.state_file.read_text()))


def up(config: LocalConfig) -> StackState:
    """Start moto (replaying the recorded state), deploy the template, start the services."""
    state = read_state(config)
    if state and is_alive(state.moto_pid) and is_alive(state.services_pid):
        return state
    if state:
        down(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    settings = local_settings(config)
    os.environ.update({k: v for k, v in LOCAL_CREDENTIALS.items() if k not in os.environ})
    moto = MotoServer(config.host, config.moto_port).start(
        config.state_dir / "moto.log", recording=config.recording)
    try:
        if config.recording.exists() and config.recording.stat().st_size:
            kept = filter_recording(config.recording.read_text().splitlines())
            config.recording.write_text("".join(line + "\n" for line in kept))
            moto.recorder("replay-recording")
        moto.recorder("start-recording")
        deploy(settings, StackSpec(name=config.stack_name, code_bucket=f"{settings.bucket}-code"))
        services = start_group(
            [sys.executable, "-m", "pipeline.local", "services", "--port", str(config.api_port)],
            config.state_dir / "services.log", env=child_env(settings), cwd=REPO_ROOT)
        wait_until(lambda: requests.get(f"{config.api_url}/health", timeout=2).ok, 60,
                   f"the local API on {config.api_url}")
    except BaseException:
        moto.stop()
        raise
    assert moto.pid is not None
    state = StackState(moto_pid=moto.pid, services_pid=services.pid, moto_url=config.moto_url,
                       api_url=config.api_url)
    config.state_file.write_text(json.dumps(asdict(state)))
    return state


def down(config: LocalConfig) -> bool:
    """Stop what `up` started (by the process groups it recorded). The recording stays."""
    state = read_state(config)
    if state is None:
        return False
    stop_group(state.services_pid)
    stop_group(state.moto_pid)
    config.state_file.unlink(missing_ok=True)
    return True


def status(config: LocalConfig) -> dict[str, object]:
    state = read_state(config)
    if state is None:
        return {"running": False}
    return {"running": is_alive(state.moto_pid) and is_alive(state.services_pid),
            "moto": {"pid": state.moto_pid, "url": state.moto_url,
                     "alive": is_alive(state.moto_pid)},
            "api": {"pid": state.services_pid, "url": state.api_url,
                    "alive": is_alive(state.services_pid)}}
