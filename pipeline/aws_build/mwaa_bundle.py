"""The Amazon MWAA bundle (`make mwaa`): what MWAA installs and runs, built from this repo.

    build/mwaa/dags/            the DAG files, `pipeline/` (MWAA puts the dags folder on
                                sys.path, so tasks import the library from there), campaigns/,
                                and an .airflowignore that keeps the library out of DAG parsing
    build/mwaa/requirements.txt pyproject's `mwaa` extra: what the DAG tasks import, at ranges
                                that admit MWAA's pins. It names no constraints file, so MWAA's
                                entrypoint installs it with `-c` its own Airflow constraints
                                (which pick the providers' versions) on top of its essential
                                constraints. No torch (the model runs in SageMaker), no Airflow,
                                no CLI, no sagemaker-core (it needs a newer boto3 than MWAA's)
    build/mwaa/startup.sh       the settings every component needs (IMGSIM_BUCKET, table and
                                queue names, the embed queue URL, the serving images resolved
                                here for the region, ...) and, where a scheduler runs (MWAA's
                                `scheduler` and `hybrid` components), the `bedrock` pool the
                                generation tasks wait in

MWAA does not `pip install .`. The DAGs here are tested on the Airflow version MWAA runs
(MWAA_AIRFLOW_VERSION, pinned in pyproject's `airflow` extra with MWAA's provider versions), and
tests/dags/test_mwaa_install.py installs the bundle the way MWAA does in a Python 3.12 venv.
"""

from __future__ import annotations

import shlex
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path

from packaging.requirements import Requirement

from pipeline.aws_build import REPO_ROOT
from pipeline.embedding.transform_config import serving_image_uris
from pipeline.settings import Settings

MWAA_AIRFLOW_VERSION = "3.3.1"
MWAA_EXTRA = "mwaa"  # pyproject's extra of what the DAG tasks import on MWAA
# What the DAGs read besides Settings, and what a deployment must say (stack outputs).
DAG_VARIABLES = (
    "IMGSIM_EMBED_QUEUE_URL",
    "IMGSIM_MODEL_DATA_URL",
    "IMGSIM_SAGEMAKER_ROLE_ARN",
)
REQUIRED = ("IMGSIM_BUCKET", *DAG_VARIABLES)
OPTIONAL = ("IMGSIM_SAGEMAKER_IMAGE_URI", "IMGSIM_TRANSFORM_POLL_SECONDS")
MWAA_DAGS = "/usr/local/airflow/dags"
POOL = ("bedrock", "2", "Bedrock InvokeModel: generation campaigns' concurrency")
# MWAA_AIRFLOW_COMPONENT of the containers that run a scheduler (MWAA's entrypoint: `scheduler`
# runs the scheduler, dag-processor and triggerer; `hybrid` runs those and a Celery worker).
SCHEDULER_COMPONENTS = ("scheduler", "hybrid")
SERVING_IMAGE_VARIABLES = {"cpu": "IMGSIM_SERVING_IMAGE_CPU", "gpu": "IMGSIM_SERVING_IMAGE_GPU"}


def requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The `mwaa` extra as written: ranges, providers without versions (MWAA's constraints
    pick them)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = [str(Requirement(raw)) for raw in project["optional-dependencies"][MWAA_EXTRA]]
    if any(Requirement(line).name == project["name"] for line in lines):
        raise SystemExit(f"the {MWAA_EXTRA} extra must list packages, not other extras")
    return lines


def with_serving_images(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the CPU and GPU serving images of its region (sagemaker-core's lookup), unless
    it names them already; the region must be given, since the images are per region."""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise SystemExit("set AWS_REGION (the stack's region: the serving images are per region)")
    resolved = dict(env)
    looked_up: dict[str, str] | None = None
    for kind, variable in SERVING_IMAGE_VARIABLES.items():
        if not resolved.get(variable):
            looked_up = looked_up or serving_image_uris(region)
            resolved[variable] = looked_up[kind]
    return resolved


def startup_script(env: Mapping[str, str]) -> str:
    """Exports the settings for every component; where a scheduler runs, also makes the
    `bedrock` pool (retried while the metadata database comes up; a failure is logged, not
    fatal). MWAA sources the script with bash before each component starts."""
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise SystemExit(
            f"set {', '.join(missing)} (the deployed stack's outputs: bucket, EmbedQueueUrl, "
            "model.tar.gz URL, SageMaker role ARN) before `make mwaa`"
        )
    settings = Settings.from_env(with_serving_images(env))
    values = {k: v for k, v in settings.to_env().items() if not k.startswith("AWS_")}
    values.update({k: env[k] for k in (*DAG_VARIABLES, *OPTIONAL) if env.get(k)})
    values["IMGSIM_CAMPAIGNS_DIR"] = f"{MWAA_DAGS}/campaigns"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(values.items()))
    name, slots, description = POOL
    return f"""#!/bin/sh
# imgsim on Amazon MWAA: the settings every Airflow component reads (pipeline.settings), written
# by `make mwaa` from the environment it ran in. MWAA runs this before each component starts.
{exports}
# The generation tasks wait in the {name} pool: made where a scheduler runs.
case "${{MWAA_AIRFLOW_COMPONENT:-}}" in
  {"|".join(SCHEDULER_COMPONENTS)})
    for attempt in 1 2 3; do
      if airflow pools set {name} {slots} {shlex.quote(description)}; then break; fi
      echo "imgsim: the {name} pool is not set yet (attempt $attempt)" >&2
      sleep 10
    done
    ;;
esac
"""


def build(out: Path, env: Mapping[str, str]) -> Path:
    """Write the bundle under `out` (replacing an older one); return it."""
    script = startup_script(env)
    shutil.rmtree(out, ignore_errors=True)
    dags = out / "dags"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "dags", dags, ignore=ignore)
    shutil.copytree(REPO_ROOT / "pipeline", dags / "pipeline", ignore=ignore)
    shutil.copytree(REPO_ROOT / "campaigns", dags / "campaigns", ignore=ignore)
    (dags / ".airflowignore").write_text("pipeline/\ncampaigns/\n")
    (out / "requirements.txt").write_text(
        f"# imgsim's runtime dependencies on MWAA (Airflow {MWAA_AIRFLOW_VERSION})\n"
        + "\n".join(requirements())
        + "\n"
    )
    (out / "startup.sh").write_text(script)
    (out / "startup.sh").chmod(0o755)
    return out
