"""A task's AWS session comes from its Airflow connection, keys included (STYLE 12).

A moto server of this module's own enforces IAM: the connection holds an IAM user's access
key, the environment holds keys moto does not know. Clients made from a task's settings must
work and clients made from the environment must get 403, both directly and in a DAG run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.airflow_connection import settings_from_connection
from pipeline.local.config import isolated_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port
from pipeline.settings import Settings
from pipeline.storage.images_table import ImageStore
from pipeline.storage.keys import shard_key
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardRow, ShardStore, rows_table

TASK_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "dynamodb:*", "sqs:*"], "Resource": "*"}],
}


@dataclass
class IamStack:
    moto: MotoServer
    settings: Settings  # names and endpoints, no session: the environment's keys
    access_key_id: str


@pytest.fixture
def iam_stack(
    tmp_path: Path, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[IamStack]:
    """The stack deployed on a fresh moto server, an IAM user for the tasks, then IAM enforced
    (moto's reset-auth: every later request is authenticated and authorized); the user's key
    in AIRFLOW_CONN_AWS_DEFAULT, the environment's own keys left as they are."""
    moto = MotoServer("127.0.0.1", free_port()).start(tmp_path / "moto.log")
    try:
        suffix = uuid.uuid4().hex[:10]
        settings = isolated_settings(moto.url, f"iam-{suffix}")
        deploy(settings, StackSpec(name=f"imgsim-{suffix}", code_bucket=f"code-{suffix}"))
        iam = boto3.client("iam", endpoint_url=moto.url, region_name=settings.region)
        iam.create_user(UserName="airflow-tasks")
        iam.put_user_policy(
            UserName="airflow-tasks", PolicyName="tasks", PolicyDocument=json.dumps(TASK_POLICY)
        )
        key = iam.create_access_key(UserName="airflow-tasks")["AccessKey"]
        requests.post(f"{moto.url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()

        for name, value in settings.to_env().items():
            if not name.startswith("AWS_ENDPOINT_URL"):
                monkeypatch.setenv(name, value)
        services = {s: {"endpoint_url": moto.url} for s in ("s3", "dynamodb", "sqs", "iam")}
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": key["AccessKeyId"],
                    "password": key["SecretAccessKey"],
                    "extra": {"region_name": settings.region, "service_config": services},
                }
            ),
        )
        yield IamStack(moto, settings, key["AccessKeyId"])
    finally:
        moto.stop()


def _refused(call: Callable[[], object]) -> int:
    with pytest.raises(ClientError) as refusal:
        call()
    return refusal.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_clients_from_a_task_s_settings_sign_with_the_connection_s_keys(
    iam_stack: IamStack,
) -> None:
    env_settings = iam_stack.settings
    task_settings = settings_from_connection("aws_default")
    assert task_settings.session is not None
    assert task_settings.session.get_credentials().access_key == iam_stack.access_key_id
    assert boto3.session.Session().get_credentials().access_key != iam_stack.access_key_id

    calls = {
        "s3": lambda s: aws.client(s, "s3").list_objects_v2(Bucket=s.bucket),
        "dynamodb": lambda s: aws.client(s, "dynamodb").describe_table(TableName=s.images_table),
        "sqs": lambda s: aws.client(s, "sqs").get_queue_url(QueueName=s.embed_queue),
        "adapter": lambda s: ImageStore(s).get("no-such-image"),
    }
    for call in calls.values():
        call(task_settings)
    assert {name: _refused(lambda c=call: c(env_settings)) for name, call in calls.items()} == {
        name: 403 for name in calls
    }
    # moto sees the user: its policy holds, and IAM is not in it
    iam = task_settings.session.client("iam", endpoint_url=iam_stack.moto.url)
    assert _refused(iam.list_users) == 403


def test_a_dag_run_works_with_the_connection_s_identity_alone(
    iam_stack: IamStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dags.compact_shards import compact_shards_dag

    task_settings = settings_from_connection("aws_default")
    model, prompt = "color-layout-v1", "an owl"
    when = datetime(2026, 11, 1, tzinfo=UTC)
    for run_id, image_id in (("run-1", "a"), ("run-2", "b")):
        key = shard_key(model, prompt, run_id)
        vector = np.ones(8, np.float32) / np.sqrt(8)
        table = rows_table(
            [ShardRow(image_id, vector, when, f"uploads/{image_id}.jpg", "etag-" + image_id)],
            8,
            model,
            prompt,
        )
        ShardStore(task_settings).write(key, table)
        ManifestStore(task_settings).update(
            prompt, model, lambda m, k=key, i=image_id: m.with_shard(k, 1, [i])
        )
    manifests = ManifestStore(iam_stack.settings)
    assert _refused(lambda: manifests.get(prompt, model)) == 403

    for task in compact_shards_dag.tasks:
        monkeypatch.setattr(task, "retries", 0)  # a refused call fails the run at once
    run = compact_shards_dag.test(run_conf={"orphan_age_hours": 0})
    assert run.state == "success"
    manifest = ManifestStore(task_settings).get(prompt, model)
    assert manifest is not None and len(manifest.shards) == 1 and manifest.rows == 2
