"""The MWAA bundle: requirements MWAA can install under its constraints, and a startup script
that gives every component the settings (IMGSIM_BUCKET first of all, the serving images) and
makes the `bedrock` pool wherever MWAA runs a scheduler."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.aws_build.mwaa_bundle import MWAA_AIRFLOW_VERSION, build, requirements
from pipeline.embedding.transform_config import serving_image_uris
from tests.dags.mwaa_venv import AIRFLOW_CONSTRAINTS, ESSENTIAL_CONSTRAINTS
from tests.helpers import MWAA_BUNDLE_ENV

ENV = MWAA_BUNDLE_ENV
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
# Every value MWAA's entrypoint takes (python/mwaa/entrypoint.py, AVAILABLE_COMMANDS), each
# of which it hands the startup script as MWAA_AIRFLOW_COMPONENT; `scheduler` and `hybrid`
# run the scheduler (python/mwaa/execute_command.py).
MWAA_COMPONENTS = (
    "webserver",
    "scheduler",
    "worker",
    "migrate-db",
    "hybrid",
    "shell",
    "resetdb",
    "spy",
    "test-requirements",
    "test-startup-script",
)


def _pins() -> dict[str, str]:
    """MWAA 3.3.1's pins: its Airflow constraints and its essential constraints."""
    pins = {}
    for path in (AIRFLOW_CONSTRAINTS, ESSENTIAL_CONSTRAINTS):
        for line in path.read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                name, version = line.strip().split("==")
                pins[canonicalize_name(name)] = version
    return pins


def _extra(name: str) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(x) for x in project["optional-dependencies"][name]]


def test_the_project_runs_the_airflow_version_and_providers_mwaa_runs():
    from importlib import metadata

    pins = _pins()
    assert metadata.version("apache-airflow") == MWAA_AIRFLOW_VERSION == pins["apache-airflow"]
    pinned = {r.name: str(r.specifier) for r in _extra("airflow") if r.specifier}
    for name, specifier in pinned.items():
        assert specifier == f"=={pins[canonicalize_name(name)]}", name
        assert metadata.version(name) == pins[canonicalize_name(name)], name
    assert {
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-common-messaging",
        "apache-airflow-providers-standard",
    } <= set(pinned)


def test_every_requirement_admits_mwaas_pins():
    pins = _pins()
    names = set()
    for line in requirements():
        requirement = Requirement(line)
        names.add(canonicalize_name(requirement.name))
        if canonicalize_name(requirement.name) in pins:
            pin = pins[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(pin), (line, pin)
    assert {"numpy", "pyarrow", "boto3", "apache-airflow-providers-common-messaging"} <= names
    providers = [Requirement(x) for x in requirements() if x.startswith("apache-airflow-prov")]
    assert providers and all(not p.specifier for p in providers)  # MWAA's constraints decide


def test_the_requirements_are_the_mwaa_extra_without_cli_sdk_or_constraints(tmp_path):
    assert [Requirement(x) for x in requirements()] == _extra("mwaa")
    names = {Requirement(x).name for x in requirements()}
    # no CLI, no SageMaker SDK (it needs boto3 >= 1.43.90, MWAA has 1.43.56), no model, no Airflow
    assert not names & {"typer", "rich", "sagemaker-core", "torch", "apache-airflow", "pydantic"}
    text = (build(tmp_path / "mwaa", ENV) / "requirements.txt").read_text()
    # MWAA adds `-c` its constraints only where the file names none (any "-c " or "--constraint ")
    assert "-c " not in text and "--constraint " not in text


def test_the_cli_is_an_extra_of_its_own():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert {Requirement(x).name for x in project["dependencies"]}.isdisjoint({"typer", "rich"})
    assert {r.name for r in _extra("cli")} == {"typer", "rich"}
    assert all("cli" in r.extras for r in _extra("test") if r.name == "imgsim")


def test_the_startup_script_exports_the_settings(tmp_path):
    bundle = build(tmp_path / "mwaa", ENV)
    script = bundle / "startup.sh"
    printed = subprocess.run(
        ["sh", "-c", f". {script} && env"],
        env={"PATH": "/usr/bin:/bin", "MWAA_AIRFLOW_COMPONENT": "worker"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    exported = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    assert exported["IMGSIM_BUCKET"] == "imgsim-prod-123"
    assert exported["IMGSIM_IMAGES_TABLE"] == "Images-prod"
    assert exported["IMGSIM_EMBED_QUEUE_URL"] == ENV["IMGSIM_EMBED_QUEUE_URL"]
    assert exported["IMGSIM_CAMPAIGNS_DIR"] == "/usr/local/airflow/dags/campaigns"
    assert exported["IMGSIM_EMBEDDINGS_TABLE"] == "Embeddings"  # every setting, defaults too
    requirements_txt = (bundle / "requirements.txt").read_text()
    assert "torch" not in requirements_txt and "\napache-airflow==" not in requirements_txt
    assert (bundle / "dags" / "pipeline" / "settings.py").exists()
    assert (bundle / "dags" / ".airflowignore").read_text().startswith("pipeline/")
    # the serving images of the stack's region, looked up here: MWAA's workers cannot
    images = serving_image_uris("us-west-2")
    assert exported["IMGSIM_SERVING_IMAGE_CPU"] == images["cpu"]
    assert exported["IMGSIM_SERVING_IMAGE_GPU"] == images["gpu"]
    assert images["gpu"].endswith("-gpu-py312") and ".us-west-2." in images["gpu"]


def test_serving_images_given_to_make_mwaa_are_kept(tmp_path):
    env = {
        **ENV,
        "IMGSIM_SERVING_IMAGE_CPU": "1.dkr/cpu:1",
        "IMGSIM_SERVING_IMAGE_GPU": "1.dkr/gpu:1",
    }
    script = (build(tmp_path / "mwaa", env) / "startup.sh").read_text()
    assert "export IMGSIM_SERVING_IMAGE_CPU=1.dkr/cpu:1\n" in script
    assert "export IMGSIM_SERVING_IMAGE_GPU=1.dkr/gpu:1\n" in script


def test_a_bundle_without_a_region_is_refused(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "AWS_REGION"}
    with pytest.raises(SystemExit, match="AWS_REGION"):
        build(tmp_path / "mwaa", env)


@pytest.mark.parametrize("component", [*MWAA_COMPONENTS, ""])
def test_the_bedrock_pool_is_made_wherever_a_scheduler_runs(tmp_path, component):
    """MWAA sources startup.sh with bash (bin/airflow-user/execute-user-startup-script); a stub
    `airflow` on PATH records what the script asks of the Airflow CLI."""
    script = build(tmp_path / "mwaa", ENV) / "startup.sh"
    stub = tmp_path / "bin" / "airflow"
    stub.parent.mkdir()
    calls = tmp_path / "calls"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    stub.chmod(0o755)
    for shell in (["bash", "-c", f"source {script}"], ["sh", str(script)]):
        subprocess.run(
            shell,
            env={
                "PATH": f"{stub.parent}:{os.environ['PATH']}",
                "MWAA_AIRFLOW_COMPONENT": component,
            },
            check=True,
            timeout=30,
        )
    recorded = calls.read_text().splitlines() if calls.exists() else []
    if component in ("scheduler", "hybrid"):
        made = "pools set bedrock 2 Bedrock InvokeModel: generation campaigns' concurrency"
        assert recorded == [made, made]
    else:
        assert recorded == []


def test_a_bundle_without_the_bucket_is_refused_with_what_is_missing(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "IMGSIM_BUCKET"}
    with pytest.raises(SystemExit, match="IMGSIM_BUCKET"):
        build(tmp_path / "mwaa", env)


def test_the_vector_index_s_stack_outputs_given_to_make_mwaa_reach_every_component(tmp_path):
    """VectorIndex=aurora: the outputs VectorDbClusterArn and VectorDbSecretArn, exported before
    `make mwaa`, are written into startup.sh (the managed secret's name has a `!` in it)."""
    secret = "arn:aws:secretsmanager:us-west-2:123:secret:rds!cluster-0a1b-AbCdEf"
    env = {
        **ENV,
        "IMGSIM_VECTOR_DB_CLUSTER_ARN": "arn:aws:rds:us-west-2:123:cluster:imgsim-vectordb",
        "IMGSIM_VECTOR_DB_SECRET_ARN": secret,
        "IMGSIM_VECTOR_DB_NAME": "imgsim",
    }
    script = build(tmp_path / "mwaa", env) / "startup.sh"
    printed = subprocess.run(
        ["sh", "-c", f". {script} && env"],
        env={"PATH": "/usr/bin:/bin", "MWAA_AIRFLOW_COMPONENT": "worker"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    exported = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    assert exported["IMGSIM_VECTOR_DB_CLUSTER_ARN"] == env["IMGSIM_VECTOR_DB_CLUSTER_ARN"]
    assert exported["IMGSIM_VECTOR_DB_SECRET_ARN"] == secret
    assert exported["IMGSIM_VECTOR_DB_NAME"] == "imgsim"
