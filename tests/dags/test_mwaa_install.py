"""The MWAA bundle installed and run the way Amazon MWAA 3.3.1 does it: in a Python 3.12 venv with
MWAA's packages under its constraints, the bundle's requirements added the way its entrypoint
adds them (tests/dags/mwaa_venv.py), the settings from the bundle's startup.sh (sourced with
bash, as MWAA does); every DAG file imports there and an `embed_images` run embeds images
against the local stack (moto and the SageMaker emulator run from this venv, as elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.aws_build.mwaa_bundle import build
from pipeline.embedding.transform_config import serving_image_uris
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.event_pump import EventPump
from pipeline.storage.images_table import ImageStore
from tests.dags import mwaa_venv
from tests.helpers import gradient_jpeg

pytestmark = pytest.mark.mwaa

# Run inside the MWAA venv: parse the bundle's dags folder, run embed_images once, report.
RUN = """
import json, sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

dags, conf = Path(sys.argv[1]), json.loads(sys.argv[2])
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=str(dags))
report = {
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "files": sorted({Path(d.fileloc).name for d in bag.dags.values()}),
    "dags": sorted(bag.dag_ids),
    "pipeline": __import__("pipeline").__file__,
    "installed": sorted(d.metadata["Name"].lower() for d in metadata.distributions()),
    "versions": {n: metadata.version(n) for n in sys.argv[3].split(",")},
}
dag = bag.dags["embed_images"]
for task in dag.tasks:
    task.retries = 0
run = dag.test(logical_date=datetime(2026, 11, 1, 12, tzinfo=UTC), run_conf=conf)
report["state"] = run.state
report["tasks"] = {ti.task_id: ti.state for ti in run.get_task_instances()}
print("MWAA-REPORT " + json.dumps(report))
"""
# What MWAA 3.3.1 ships (its constraints), and what must come out of the bundle's install.
EXPECTED_VERSIONS = {
    "apache-airflow": "3.3.1",
    "apache-airflow-providers-amazon": "9.34.0",
    "apache-airflow-providers-common-messaging": "2.0.4",
    "apache-airflow-providers-standard": "1.17.0",
    "boto3": "1.43.56",
    "pydantic": "2.13.4",
}


@pytest.fixture(scope="module")
def python312() -> Path:
    python = mwaa_venv.python312()
    if python is None:
        pytest.skip(
            "no Python 3.12 here (MWAA 3.3.1's Python; pyenv's versions/3.12.*): the MWAA "
            "install is not reproduced"
        )
    return python


def _ingest(settings, names: list[str]) -> None:
    s3 = aws.client(settings, "s3")
    for name in names:
        key = f"uploads/{name}.jpg"
        s3.put_object(
            Bucket=settings.bucket, Key=key, Body=gradient_jpeg(), Metadata={"prompt": "A fox"}
        )
    EventPump(settings, make_handler(Ingestor.from_settings(settings))).drain()


def _transform_jobs(sagemaker) -> set[str]:
    summaries = sagemaker.list_transform_jobs(MaxResults=100)["TransformJobSummaries"]
    return {job["TransformJobName"] for job in summaries}


def test_the_bundle_installs_and_runs_embed_images_as_on_mwaa(
    tmp_path, python312, airflow_stack, sagemaker_emulator
):
    settings, model_uri = airflow_stack
    env = {
        **settings.to_env(),
        "IMGSIM_EMBED_QUEUE_URL": os.environ["IMGSIM_EMBED_QUEUE_URL"],
        "IMGSIM_MODEL_DATA_URL": model_uri,
        "IMGSIM_SAGEMAKER_ROLE_ARN": LOCAL_SAGEMAKER_ROLE,
        "IMGSIM_TRANSFORM_POLL_SECONDS": "1",
    }
    bundle = build(tmp_path / "mwaa", env)
    started = time.monotonic()
    venv = mwaa_venv.mwaa_venv(python312, bundle / "requirements.txt")
    print(f"MWAA venv {venv.name}: {time.monotonic() - started:.0f} s")

    _ingest(settings, ["fox1", "fox2"])
    sagemaker = aws.client(settings.with_endpoint(sagemaker_emulator, ("sagemaker",)), "sagemaker")
    jobs_before = _transform_jobs(sagemaker)
    dags = bundle / "dags"
    home = tmp_path / "airflow"
    run_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": os.environ["AIRFLOW_CONN_AWS_DEFAULT"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # a client not made from the connection fails
        "MWAA_AIRFLOW_COMPONENT": "worker",
        "PYTHONPATH": str(dags),  # MWAA puts the dags folder on sys.path
    }
    script = tmp_path / "run_embed_images.py"
    script.write_text(RUN)
    conf = {"instance_type": "ml.g5.xlarge"}  # the image is picked at run time: the GPU one
    shell = (
        f"source {bundle / 'startup.sh'}"
        # MWAA's /usr/local/airflow/dags is the bundle's dags folder here
        f" && export IMGSIM_CAMPAIGNS_DIR={dags / 'campaigns'}"
        f" && python -m airflow db migrate > {tmp_path / 'migrate.log'} 2>&1"
        f" && exec python {script} {dags} '{json.dumps(conf)}' {','.join(EXPECTED_VERSIONS)}"
    )
    result = subprocess.run(
        ["bash", "-c", shell],
        cwd=tmp_path,  # not the repository: `pipeline` must come from the bundle
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [x for x in result.stdout.splitlines() if x.startswith("MWAA-REPORT ")]
    assert result.returncode == 0 and lines, (result.stdout[-3000:], result.stderr[-5000:])
    report = json.loads(lines[-1].removeprefix("MWAA-REPORT "))

    assert report["errors"] == {}
    assert report["files"] == sorted(p.name for p in dags.glob("*.py"))
    assert {"embed_images", "reembed", "compact_shards", "generate_demo"} <= set(report["dags"])
    assert Path(report["pipeline"]).is_relative_to(dags)
    assert report["versions"] == EXPECTED_VERSIONS
    assert not {"sagemaker-core", "sagemaker", "torch"} & set(report["installed"])

    assert report["state"] == "success", report["tasks"]
    images = ImageStore(settings)
    assert {images.get(i)["status"] for i in ("fox1", "fox2")} == {"embedded"}
    [job] = _transform_jobs(sagemaker) - jobs_before
    model = sagemaker.describe_transform_job(TransformJobName=job)["ModelName"]
    container = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]
    assert container["Image"] == serving_image_uris(settings.region)["gpu"]


def test_where_no_python_3_12_exists_the_test_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert mwaa_venv.python312() is None


def test_a_venv_is_built_once_per_requirements_digest(tmp_path):
    python = Path(sys.executable)
    a = mwaa_venv.digest(python, "numpy<2.6\n")
    assert a == mwaa_venv.digest(python, "numpy<2.6\n")
    assert a != mwaa_venv.digest(python, "numpy<2.7\n")


def test_only_the_most_recently_used_venvs_are_kept(tmp_path):
    for age, name in enumerate(["mwaa-venv-a", "mwaa-venv-b", "mwaa-venv-c"]):
        stamp = tmp_path / name / mwaa_venv.STAMP
        stamp.parent.mkdir()
        stamp.touch()
        os.utime(stamp, (1000 - age, 1000 - age))  # a: the most recently used
    (tmp_path / "mwaa-venv-d").mkdir()  # no stamp: being built, not counted
    mwaa_venv._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("mwaa-venv-*") if p.is_dir()) == [
        "mwaa-venv-a",
        "mwaa-venv-b",
        "mwaa-venv-d",
    ]
