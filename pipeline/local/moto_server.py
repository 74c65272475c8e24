"""moto in server mode on loopback, with optional recording of every state change."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from pipeline.local.processes import start_group, stop_group, wait_until


@dataclass
class MotoServer:
    host: str
    port: int
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, log_path: Path, recording: Path | None = None) -> MotoServer:
        env = dict(os.environ)
        if recording is not None:
            env["MOTO_RECORDER_FILEPATH"] = str(recording)
        proc = start_group(
            [
                sys.executable,
                "-m",
                "pipeline.local.moto_process",
                "-H",
                self.host,
                "-p",
                str(self.port),
            ],
            log_path,
            env=env,
        )
        self.pid = proc.pid
        wait_until(self.healthy, 30, f"moto server on {self.url}")
        return self

    def healthy(self) -> bool:
        return requests.get(f"{self.url}/moto-api/", timeout=2).ok

    def stop(self) -> None:
        if self.pid is not None:
            stop_group(self.pid)
            self.pid = None

    def recorder(self, action: str) -> None:
        """start-recording, stop-recording, replay-recording or reset-recording."""
        requests.post(f"{self.url}/moto-api/recorder/{action}", timeout=600).raise_for_status()
