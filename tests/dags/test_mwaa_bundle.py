"""The MWAA bundle on the Airflow version MWAA runs: its DAGs parse from the bundle alone (the
library imported from the dags folder, as on MWAA), and its startup script makes the `bedrock`
pool where MWAA runs a scheduler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.aws_build.mwaa_bundle import build
from tests.helpers import MWAA_BUNDLE_ENV as ENV

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dag_ids),
                  "pipeline": __import__("pipeline").__file__}))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    keep = {
        "PATH",
        "HOME",
        "AIRFLOW_HOME",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__UNIT_TEST_MODE",
    }
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("AIRFLOW__DATABASE")}
    return {**env, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **extra}


def test_the_bundles_dags_parse_with_the_library_from_the_bundle(tmp_path, airflow_db):
    bundle = build(tmp_path / "mwaa", ENV)
    dags = bundle / "dags"
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(dags)],
        cwd=tmp_path,  # not the repo: `pipeline` must come from the bundle
        env=_clean_env(PYTHONPATH=str(dags), **ENV),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert Path(parsed["pipeline"]).is_relative_to(dags)
    assert {"embed_images", "compact_shards", "generate_demo"} <= set(parsed["dags"])


@pytest.mark.parametrize("component", ["scheduler", "hybrid"])
def test_the_startup_script_makes_the_bedrock_pool_where_a_scheduler_runs(
    tmp_path, airflow_db, component
):
    """With the real Airflow CLI, sourced by bash as MWAA does; every other component is in
    tests/unit/test_mwaa_bundle.py (a stub CLI)."""
    bundle = build(tmp_path / "mwaa", ENV)
    airflow = Path(sys.executable).parent
    subprocess.run(  # the worker's database may have it from an earlier test
        [str(airflow / "airflow"), "pools", "delete", "bedrock"],
        env=_clean_env(),
        capture_output=True,
        timeout=300,
    )
    subprocess.run(
        ["bash", "-c", f"source {bundle / 'startup.sh'}"],
        env=_clean_env(MWAA_AIRFLOW_COMPONENT=component, PATH=f"{airflow}:{os.environ['PATH']}"),
        check=True,
        capture_output=True,
        timeout=300,
    )
    pool = subprocess.run(
        [str(airflow / "airflow"), "pools", "get", "bedrock", "--output", "json"],
        env=_clean_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(pool.stdout)[0]["slots"] == "2"
