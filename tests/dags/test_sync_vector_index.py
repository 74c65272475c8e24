"""The sync_vector_index DAG with dag.test() on the local stack and the local PostgreSQL behind
the Data API emulator: it builds a prompt's index once the prompt reaches the threshold, syncs
a later commit, rebuilds on request, and finds nothing to do with the index off."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

from pipeline.storage.manifests_table import ManifestStore
from tests.helpers import commit_shard, embedded_records

MODEL = "clip-tiny-random-init-seed0"


@pytest.fixture
def synced(airflow_stack, rds_data, monkeypatch):
    """The environment and connection of airflow_stack, plus the Data API and a threshold of 50."""
    settings = rds_data.settings(airflow_stack[0])
    for key, value in settings.to_env().items():
        if key.startswith("IMGSIM_VECTOR"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMGSIM_VECTOR_INDEX_THRESHOLD", "50")
    connection = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    connection["extra"]["service_config"]["rds-data"] = {"endpoint_url": rds_data.url}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    from dags.sync_vector_index import sync_vector_index_dag

    return settings, sync_vector_index_dag


def _conf(prompt, rebuild=False):
    """Every param (a run's conf updates the DAG's Param objects in place: a mapped DAG cannot
    be deep-copied for a test, so no param is left to a previous run's value)."""
    return {"prompt": prompt, "model_id": None, "rebuild": rebuild}


def _returned(run, task_id):
    return [
        ti.xcom_pull(task_ids=task_id, map_indexes=ti.map_index)
        for ti in run.get_task_instances()
        if ti.task_id == task_id
    ]


def test_the_dag_builds_syncs_and_rebuilds_a_prompts_index(synced):
    settings, dag = synced
    prompt = f"a shoe catalogue {uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    names = [f"shoe{i:03d}" for i in range(60)]
    commit_shard(settings, prompt, MODEL, "run-0", {n: rng.standard_normal(8) for n in names})
    embedded_records(settings, names, prompt)

    run = dag.test(run_conf=_conf(prompt))
    assert run.state == "success"
    [built] = _returned(run, "sync")
    assert (built["action"], built["index_rows"]) == ("build", 60)
    manifests = ManifestStore(settings)
    assert manifests.get(prompt, MODEL).index_table == built["table"]

    commit_shard(settings, prompt, MODEL, "run-1", {"shoe999": rng.standard_normal(8)})
    embedded_records(settings, ["shoe999"], prompt)
    run = dag.test(run_conf=_conf(prompt))
    [synced_now] = _returned(run, "sync")
    assert (synced_now["action"], synced_now["rows_sent"], synced_now["index_rows"]) == (
        "sync",
        1,
        61,
    )
    assert manifests.get(prompt, MODEL).pending == ()

    run = dag.test(run_conf=_conf(prompt, rebuild=True))
    [rebuilt] = _returned(run, "sync")
    assert rebuilt["action"] == "build" and rebuilt["table"] != built["table"]
    assert manifests.get(prompt, MODEL).index_table == rebuilt["table"]


def test_with_the_index_off_the_dag_finds_nothing(synced, monkeypatch):
    settings, dag = synced
    monkeypatch.setenv("IMGSIM_VECTOR_INDEX", "off")
    prompt = f"a face data set {uuid.uuid4().hex[:8]}"
    names = [f"face{i:03d}" for i in range(60)]
    rng = np.random.default_rng(1)
    commit_shard(settings, prompt, MODEL, "run-0", {n: rng.standard_normal(8) for n in names})
    run = dag.test(run_conf=_conf(prompt))
    assert run.state == "success" and _returned(run, "plan") == [[]]
    assert ManifestStore(settings).get(prompt, MODEL).index_table is None
