"""The MWAA bundle: requirements MWAA can install under its constraints, and a startup script
that gives every component the settings (IMGSIM_BUCKET first of all)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from pipeline.local.mwaa_bundle import MWAA_AIRFLOW_VERSION, build, requirements

CONSTRAINTS = Path(__file__).parents[1] / "data" / "mwaa-constraints-3.3.1-subset.txt"
ENV = {
    "IMGSIM_BUCKET": "imgsim-prod-123",
    "IMGSIM_IMAGES_TABLE": "Images-prod",
    "IMGSIM_EMBED_QUEUE_URL": "https://sqs.us-west-2.amazonaws.com/123/imgsim-embed",
    "IMGSIM_MODEL_DATA_URL": "s3://imgsim-prod-123/models/clip/model.tar.gz",
    "IMGSIM_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123:role/imgsim-sagemaker",
}


def _pins() -> dict[str, str]:
    lines = [x.strip() for x in CONSTRAINTS.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_the_project_runs_the_airflow_version_mwaa_runs():
    import airflow

    assert airflow.__version__ == MWAA_AIRFLOW_VERSION == _pins()["apache-airflow"]


def test_every_requirement_admits_mwaas_pins():
    pins = _pins()
    names = set()
    for line in requirements():
        requirement = Requirement(line)
        names.add(requirement.name)
        if requirement.name in pins:
            assert requirement.specifier.contains(pins[requirement.name]), line
    assert {"numpy", "pyarrow"} <= names
    assert not names & {"torch", "apache-airflow"}
    providers = [Requirement(x) for x in requirements() if x.startswith("apache-airflow-prov")]
    assert providers and all(not p.specifier for p in providers)  # MWAA's constraints decide


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


def test_a_bundle_without_the_bucket_is_refused_with_what_is_missing(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "IMGSIM_BUCKET"}
    with pytest.raises(SystemExit, match="IMGSIM_BUCKET"):
        build(tmp_path / "mwaa", env)
