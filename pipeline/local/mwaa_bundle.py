"""The Amazon MWAA bundle (`make mwaa`): what MWAA installs and runs, built from this repo.

    build/mwaa/dags/            the DAG files, `pipeline/` (MWAA puts the dags folder on
                                sys.path, so tasks import the library from there), campaigns/,
                                and an .airflowignore that keeps the library out of DAG parsing
    build/mwaa/requirements.txt the runtime dependencies at the project's ranges; no torch (the
                                model runs in SageMaker) and no Airflow: MWAA installs Airflow and
                                applies its constraints file to this file too, so providers are
                                named without versions
    build/mwaa/startup.sh       the settings every component needs (IMGSIM_BUCKET, table and
                                queue names, the embed queue URL, ...) and, on the scheduler,
                                the `bedrock` pool the generation tasks wait in

MWAA does not `pip install .`. The DAGs here are tested on the Airflow version MWAA runs
(MWAA_AIRFLOW_VERSION, pinned in pyproject's `airflow` extra).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from packaging.requirements import Requirement

from pipeline.local.deploy import REPO_ROOT
from pipeline.settings import Settings

MWAA_AIRFLOW_VERSION = "3.3.1"
# Not needed on MWAA: the embedding model runs in SageMaker's container, Airflow is MWAA's own.
LEFT_OUT = ("torch", "apache-airflow")
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


def requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The core dependencies and the `airflow` extra's, at their ranges; providers unpinned
    (MWAA's constraints pick their versions); torch and Airflow itself left out."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = []
    for raw in [*project["dependencies"], *project["optional-dependencies"]["airflow"]]:
        requirement = Requirement(raw)
        if requirement.name in LEFT_OUT:
            continue
        if requirement.name.startswith("apache-airflow-providers-"):
            requirement.specifier = type(requirement.specifier)("")
        lines.append(str(requirement))
    return lines


def startup_script(env: Mapping[str, str]) -> str:
    """Exports the settings for every component; the scheduler also makes the `bedrock` pool
    (retried while the metadata database comes up; a failure is logged, not fatal)."""
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise SystemExit(
            f"set {', '.join(missing)} (the deployed stack's outputs: bucket, EmbedQueueUrl, "
            "model.tar.gz URL, SageMaker role ARN) before `make mwaa`"
        )
    settings = Settings.from_env(env)
    values = {k: v for k, v in settings.to_env().items() if not k.startswith("AWS_")}
    values.update({k: env[k] for k in (*DAG_VARIABLES, *OPTIONAL) if env.get(k)})
    values["IMGSIM_CAMPAIGNS_DIR"] = f"{MWAA_DAGS}/campaigns"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(values.items()))
    name, slots, description = POOL
    return f"""#!/bin/sh
# imgsim on Amazon MWAA: the settings every Airflow component reads (pipeline.settings), written
# by `make mwaa` from the environment it ran in. MWAA runs this before each component starts.
{exports}
if [ "${{MWAA_AIRFLOW_COMPONENT:-}}" = "scheduler" ]; then
  for attempt in 1 2 3; do
    if airflow pools set {name} {slots} {shlex.quote(description)}; then break; fi
    echo "imgsim: the {name} pool is not set yet (attempt $attempt)" >&2
    sleep 10
  done
fi
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.mwaa_bundle")
    parser.add_argument("out", nargs="?", default="build/mwaa", type=Path)
    args = parser.parse_args(argv)
    built = build(args.out, os.environ)
    sys.stdout.write(f"MWAA bundle in {built}: dags/, requirements.txt, startup.sh\n")


if __name__ == "__main__":
    main()
