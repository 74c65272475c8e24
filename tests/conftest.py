"""Session-wide fixtures: one moto server per test session; a freshly deployed stack (unique
names, same template) per test that needs one, so no test sees another's leftovers."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.local import postgres
from pipeline.local.config import isolated_settings, vector_db_arns
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port, start_group, stop_group
from pipeline.settings import Settings
from sagemaker_jobs.build_model import build
from tests.helpers import sagemaker_emulator_answers

HERE = Path(__file__).parent
# servers a session started are stopped even when it is interrupted (SIGINT, SIGTERM, SIGHUP)
pytest_plugins = ["tests.process_guard"]


def pytest_configure(config: pytest.Config) -> None:
    # Tests talk to loopback servers only: fixed fake credentials, no profile, no real AWS.
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    # Any client a test forgets to point at the local stack fails here, on a closed loopback
    # port, instead of reaching out to AWS.
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    # Airflow reads its configuration when first imported: give the session its own home, and
    # each pytest-xdist worker one of its own (a worker inherits the controller's environment,
    # and two workers' DAG runs in one SQLite database collide on their ids).
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker or "AIRFLOW_HOME" not in os.environ:
        os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix=f"imgsim-airflow-{worker or 'main'}-")
    os.environ.update(
        {
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(HERE.parent / "dags"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
    )


# The tiers (markers declared in pyproject.toml): a test in one of these folders, or using one of
# these fixtures, gets the markers. `make unit` runs what needs neither servers nor a model
# (`stack`, `model`); `make integration` the rest but Airflow, the browser and the whole stack.
TIER_OF_FOLDER = {
    "integration": ("stack",),
    "dags": ("stack", "airflow"),
    "browser": ("stack", "browser"),
    "e2e": ("stack", "e2e"),
}
TIER_OF_FIXTURE = {
    "moto_server": ("stack",),  # every deployed stack, the SageMaker emulator's S3
    "airflow_db": ("stack", "airflow"),
    "tiny_clip_artifact": ("model",),
    "efficientnet_artifact": ("model",),
    "pg_server": ("stack",),
    "rds_data": ("stack",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(HERE).parts if item.path.is_relative_to(HERE) else ()
        markers = set(TIER_OF_FOLDER.get(parts[0], ()) if len(parts) > 1 else ())
        for fixture in set(getattr(item, "fixturenames", ())) & TIER_OF_FIXTURE.keys():
            markers.update(TIER_OF_FIXTURE[fixture])
        for marker in sorted(markers):
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def fresh_dag_modules() -> Iterator[None]:
    """DAG files read their environment when imported (the campaigns folder, the embed queue
    URL): each test imports them afresh and leaves none behind, so no test sees a DAG module
    another test imported under its own environment."""
    _forget_dag_modules()
    yield
    _forget_dag_modules()


def _forget_dag_modules() -> None:
    for name in [n for n in sys.modules if n.startswith("dags.")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = MotoServer("127.0.0.1", free_port()).start(log)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sagemaker_emulator(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The SageMaker emulator as its own process (its S3 is the session's moto server)."""
    port = free_port()
    logs = tmp_path_factory.mktemp("sagemaker")
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_server.url}
    proc = start_group(
        [
            sys.executable,
            "-m",
            "pipeline.local.sagemaker",
            "--port",
            str(port),
            "--work-dir",
            str(logs / "work"),
        ],
        logs / "emulator.log",
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1")
    try:
        sagemaker_emulator_answers(client)
        yield url
    finally:
        stop_group(proc.pid)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.Server]:
    """A real PostgreSQL + pgvector server for the session, on a free port, stopped by its
    process group (pipeline/local/postgres.py). Its data directory is made under the system's
    temporary directory, opened to others: as root the server runs as an unprivileged user
    that cannot enter pytest's root-private tmp_path."""
    base = Path(tempfile.mkdtemp(prefix="imgsim-pg-"))
    base.chmod(0o755)
    server = postgres.start(base / "data", free_port(), log_path=base / "postgres.log")
    try:
        yield server
    finally:
        postgres.stop(server)
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class RdsData:
    """The RDS Data API emulator in front of `pg_server`: its URL, the cluster and secret ARNs
    it answers for (the local stack's, in us-east-1) and the database requests name."""

    url: str
    cluster_arn: str
    secret_arn: str
    database: str
    server: postgres.Server

    def client(self) -> Any:  # a boto3 rds-data client
        return boto3.client("rds-data", endpoint_url=self.url, region_name="us-east-1")

    def settings(self, base: Settings) -> Settings:
        """`base` pointed at this emulator, its ARNs and database (the vector index on)."""
        return replace(
            base,
            vector_db_cluster_arn=self.cluster_arn,
            vector_db_secret_arn=self.secret_arn,
            vector_db_name=self.database,
        ).with_endpoint(self.url, services=("rds-data",))


@pytest.fixture(scope="session")
def rds_data(
    pg_server: postgres.Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RdsData]:
    """`python -m pipeline.local.rds_data` on a free port in front of the session's PostgreSQL,
    with the database `imgsim` created, as `imgsim up` starts it; stopped by its group."""
    from pipeline.local.vector_db import start_rds_data

    cluster_arn, secret_arn = vector_db_arns("us-east-1")
    settings = replace(
        Settings(), vector_db_cluster_arn=cluster_arn, vector_db_secret_arn=secret_arn
    )
    postgres.create_database(pg_server, settings.vector_db_name)
    port = free_port()
    log = tmp_path_factory.mktemp("rds-data") / "emulator.log"
    pid = start_rds_data(port, pg_server, settings, log, dict(os.environ))
    try:
        yield RdsData(
            f"http://127.0.0.1:{port}", cluster_arn, secret_arn, settings.vector_db_name, pg_server
        )
    finally:
        stop_group(pid)


def _built_once(tmp_path_factory: pytest.TempPathFactory, name: str, **options: Any) -> Path:
    """A model artifact built once per test run, shared by every xdist worker (their base
    temporary folders share a parent): the first worker builds it under a lock, the others
    wait and read it. Tests only read artifacts."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "models" / name
    path.parent.mkdir(exist_ok=True)
    with open(path.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build(path.with_name(f"{name}.partial"), **options)
            path.with_name(f"{name}.partial").rename(path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised CLIP packed by the real builder (built once per run)."""
    return _built_once(tmp_path_factory, "tiny-clip.tar.gz", random_config="tiny", seed=0)


@pytest.fixture(scope="session")
def efficientnet_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ImageNet EfficientNet-Lite0 artifact (ONNX fp32) by the real builder, built once."""
    return _built_once(tmp_path_factory, "efficientnet-lite0.tar.gz", family="efficientnet-lite0")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated Airflow metadata DB (SQLite) for dag.test() runs, once per session."""
    airflow = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


@dataclass
class DeployedStack:
    settings: Settings
    resources: dict[str, str]


def _deploy(moto: MotoServer, ingest_visibility_timeout: int = 30) -> DeployedStack:
    suffix = uuid.uuid4().hex[:10]
    settings = isolated_settings(moto.url, f"test-{suffix}")
    spec = StackSpec(
        name=f"imgsim-{suffix}",
        code_bucket=f"code-{suffix}",
        ingest_visibility_timeout=ingest_visibility_timeout,
    )
    return DeployedStack(settings=settings, resources=deploy(settings, spec))


@pytest.fixture
def deploy_stack(moto_server: MotoServer):
    """Deploy infra/template.yaml under unique names; returns a factory (visibility timeout)."""
    return lambda ingest_visibility_timeout=30: _deploy(moto_server, ingest_visibility_timeout)


@pytest.fixture
def stack(moto_server: MotoServer) -> DeployedStack:
    return _deploy(moto_server)


@pytest.fixture(scope="module")
def module_stack(moto_server: MotoServer) -> DeployedStack:
    """One stack for a module whose tests only read what its fixtures wrote."""
    return _deploy(moto_server)
