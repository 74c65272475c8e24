"""The template's IAM policies, enforced: the ingest handler, the API's routes and the DAG tasks
run under IAM users that carry exactly the policies of IngestFunctionRole, ApiFunctionRole and
AirflowTasksPolicy (tests/iam_identities.py) on a moto server of this module's own with IAM
enforced, so a permission the code needs and the template lacks fails here."""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError

from lambdas.api.handler import make_handler as make_api_handler
from lambdas.ingest.handler import make_handler as make_ingest_handler
from pipeline import aws
from pipeline.aws_build.cfn_template import load_template
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import proxy_event
from pipeline.local.bedrock.server import BedrockEmulator
from pipeline.local.config import isolated_settings
from pipeline.local.deploy import StackSpec, deploy, parameters
from pipeline.local.event_pump import EventPump, sqs_event
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port, start_group, stop_group
from pipeline.settings import Settings
from pipeline.storage.images_table import ImageStore
from tests.helpers import (
    commit_shard,
    drain_messages,
    embedded_record,
    gradient_jpeg,
    sagemaker_emulator_answers,
)
from tests.iam_identities import (
    Identity,
    StackValues,
    create_identity,
    enforce_iam,
    policy_documents,
    stack_values,
    without_actions,
)

IDENTITIES = (
    "IngestFunctionRole",
    "ApiFunctionRole",
    "AirflowTasksPolicy",
    "SageMakerExecutionRole",
)
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass
class EnforcedStack:
    moto: MotoServer
    admin: Settings  # the test's own view: every permission
    identities: dict[str, Identity]
    template: dict[str, Any]
    values: StackValues

    def settings_of(self, identity: Identity) -> Settings:
        return replace(self.admin, session=identity.session(self.admin.region))

    def as_role(self, logical_id: str) -> Settings:
        return self.settings_of(self.identities[logical_id])

    def identity_without(self, logical_id: str, *actions: str) -> Identity:
        documents = policy_documents(self.template, logical_id, self.values)
        assert self.admin.session is not None
        iam = self.admin.session.client("iam", endpoint_url=self.moto.url)
        name = f"{logical_id}-without-{uuid.uuid4().hex[:6]}"
        return create_identity(iam, name, without_actions(documents, *actions))


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnforcedStack]:
    moto = MotoServer("127.0.0.1", free_port()).start(tmp_path_factory.mktemp("moto") / "log")
    try:
        suffix = uuid.uuid4().hex[:8]
        settings = isolated_settings(moto.url, f"iam-{suffix}")
        spec = StackSpec(name=f"imgsim-{suffix}", code_bucket=f"code-{suffix}")
        resources = deploy(settings, spec)
        template = load_template()
        sts = boto3.client("sts", endpoint_url=moto.url, region_name=settings.region)
        account = sts.get_caller_identity()["Account"]
        given = {p["ParameterKey"]: p["ParameterValue"] for p in parameters(settings, spec)}
        values = stack_values(template, given, resources, settings.region, account, spec.name)
        iam = boto3.client("iam", endpoint_url=moto.url, region_name=settings.region)
        identities = {
            name: create_identity(iam, name, policy_documents(template, name, values))
            for name in IDENTITIES
        }
        admin = create_identity(iam, "admin", [ADMIN_POLICY])
        enforce_iam(moto.url)
        admin_settings = replace(settings, session=admin.session(settings.region))
        yield EnforcedStack(moto, admin_settings, identities, template, values)
    finally:
        moto.stop()


def test_iam_is_enforced_and_the_default_credentials_are_refused(enforced: EnforcedStack) -> None:
    plain = replace(enforced.admin, session=boto3.Session(region_name=enforced.admin.region))
    with pytest.raises(aws.client(plain, "s3").exceptions.ClientError) as refused:
        aws.client(plain, "s3").list_objects_v2(Bucket=plain.bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# ---------------------------------------------------------------- ingest


def _put(settings: Settings, key: str, data: bytes, prompt: str | None = None) -> None:
    metadata = {"prompt": prompt} if prompt else {}
    aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key=key, Body=data, Metadata=metadata
    )


def _ingest_as(enforced: EnforcedStack, identity: Identity) -> None:
    """The event pump plays the event source mapping; the handler runs as `identity`."""
    handler = make_ingest_handler(Ingestor.from_settings(enforced.settings_of(identity)))
    EventPump(enforced.admin, handler).drain()


def test_ingest_records_and_queues_under_the_ingest_role(enforced: EnforcedStack) -> None:
    admin = enforced.admin
    image_id = f"ing{uuid.uuid4().hex[:8]}"
    _put(admin, f"uploads/{image_id}.jpg", gradient_jpeg(), "an iam fox")
    _put(admin, f"uploads/{image_id}-gone.jpg", gradient_jpeg())
    aws.client(admin, "s3").delete_object(Bucket=admin.bucket, Key=f"uploads/{image_id}-gone.jpg")

    _ingest_as(enforced, enforced.identities["IngestFunctionRole"])

    record = ImageStore(admin).get(image_id)
    assert record is not None and record["status"] == "pending"
    # the created event of a key gone since: S3 said 404 (not 403), the event was ignored;
    # then its removed event, if the bucket sends those, leaves no live record either
    gone = ImageStore(admin).get(f"{image_id}-gone")
    assert gone is None or gone["status"] == "deleted"
    queued = [m["image_id"] for m in drain_messages(admin, admin.embed_queue)]
    assert queued == [image_id]
    # the object is removed: the removal event deletes the record, as the ingest role
    aws.client(admin, "s3").delete_object(Bucket=admin.bucket, Key=f"uploads/{image_id}.jpg")
    _ingest_as(enforced, enforced.identities["IngestFunctionRole"])
    removed = ImageStore(admin).get(image_id)
    assert removed is not None and removed["status"] == "deleted"
    dlq = aws.client(admin, "sqs").get_queue_url(QueueName=f"{admin.ingest_queue}-dlq")
    attributes = aws.client(admin, "sqs").get_queue_attributes(
        QueueUrl=dlq["QueueUrl"], AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_the_health_probe_reads_the_pending_index_and_the_queues_under_the_airflow_tasks_policy(
    enforced: EnforcedStack,
) -> None:
    """pipeline_health's reads: a Query per Pending_GSI shard (authorized on the index's ARN),
    the pending records, the queues' depths; the whole-table tally on request (a Scan)."""
    from datetime import UTC, datetime

    from pipeline.monitoring.health import PipelineProbe

    admin = enforced.admin
    image_id = f"hp{uuid.uuid4().hex[:8]}"
    _put(admin, f"uploads/{image_id}.jpg", gradient_jpeg(), "an iam owl")
    _ingest_as(enforced, enforced.identities["IngestFunctionRole"])
    drain_messages(admin, admin.embed_queue)

    probe = PipelineProbe(enforced.as_role("AirflowTasksPolicy"))
    report = probe.report(datetime.now(UTC))
    assert report.images["pending"]["uploaded"] >= 1
    assert set(report.queues) == {
        admin.ingest_queue,
        admin.embed_queue,
        f"{admin.ingest_queue}-dlq",
    }
    assert probe.report(datetime.now(UTC), all_images=True).images["pending"]["uploaded"] >= 1
    without_query = enforced.identity_without("AirflowTasksPolicy", "dynamodb:Query")
    with pytest.raises(ClientError, match="AccessDenied"):
        PipelineProbe(enforced.settings_of(without_query)).report(datetime.now(UTC))


@pytest.mark.parametrize("missing", ["sqs:GetQueueUrl", "s3:ListBucket"])
def test_the_ingest_role_without_a_permission_fails_the_message(
    enforced: EnforcedStack, missing: str
) -> None:
    admin = enforced.admin
    key = f"uploads/neg{uuid.uuid4().hex[:8]}.jpg"
    _put(admin, key, gradient_jpeg(), "an iam owl")
    if missing == "s3:ListBucket":  # the object is gone before its event is handled
        aws.client(admin, "s3").delete_object(Bucket=admin.bucket, Key=key)
    settings = enforced.settings_of(enforced.identity_without("IngestFunctionRole", missing))
    handler = make_ingest_handler(Ingestor.from_settings(settings))
    messages = _receive_all(admin, admin.ingest_queue)
    arn = enforced.values.attributes["IngestQueue.Arn"]
    try:
        response = handler(sqs_event(messages, arn, admin.region), LocalLambdaContext("ingest"))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    except BatchProcessingError:  # every message failed: the whole batch comes back
        failed = {m["MessageId"] for m in messages}
    created = [m["MessageId"] for m in messages if "ObjectCreated" in m["Body"]]
    # the created event failed: it would come back, then reach the DLQ
    assert created and set(created) <= failed
    drain_messages(admin, admin.embed_queue)


def _ingest_batch(enforced: EnforcedStack, identity: Identity) -> tuple[int, set[str]]:
    """One batch of the ingest queue's messages through the handler as `identity`: how many,
    and the ids of those it reported failed (they would come back, then reach the DLQ)."""
    admin = enforced.admin
    handler = make_ingest_handler(Ingestor.from_settings(enforced.settings_of(identity)))
    messages = _receive_all(admin, admin.ingest_queue)
    arn = enforced.values.attributes["IngestQueue.Arn"]
    try:
        response = handler(sqs_event(messages, arn, admin.region), LocalLambdaContext("ingest"))
        return len(messages), {f["itemIdentifier"] for f in response["batchItemFailures"]}
    except BatchProcessingError:  # every message failed
        return len(messages), {m["MessageId"] for m in messages}


@pytest.mark.parametrize("without", [None, "dynamodb:BatchGetItem"])
def test_an_exact_copy_after_a_model_upgrade_is_a_duplicate_under_the_ingest_role(
    enforced: EnforcedStack, without: str | None
) -> None:
    """Upload A, embed it, switch its prompt to a new model (the upgrade's backfill wrote A's
    vector of that model), upload A's bytes again: the ingest takes both of A's vectors for the
    copy (EmbeddingStore.get_for_model: BatchGetItem on Embeddings), it is not refused into the
    DLQ."""
    import numpy as np

    from pipeline.storage.active_models import ActiveModels
    from pipeline.storage.embeddings_table import EmbeddingStore

    admin = enforced.admin
    prompt, original, copy = "an iam stoat", f"a{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:8]}"
    data = gradient_jpeg((129, 77) if without is None else (130, 77))  # bytes of its own
    ingest = enforced.identities["IngestFunctionRole"]
    _put(admin, f"uploads/{original}.jpg", data, prompt)
    assert _ingest_batch(enforced, ingest)[1] == set()
    drain_messages(admin, admin.embed_queue)
    etag = ImageStore(admin).get(original)["etag"]  # type: ignore[index]
    # the embedding run's commit, then the upgrade's backfill and switch
    commit_shard(admin, prompt, "m-old", "run-1", {original: np.ones(6)}, etags={original: etag})
    now = "2026-11-22T00:00:00.000Z"
    outcome = {"status": "embedded", "embedding_model_id": "m-old", "embedded_at": now}
    assert ImageStore(admin).set_outcome(original, etag, outcome)
    upgraded = np.linspace(-1, 1, 6).astype(np.float32)
    EmbeddingStore(admin).put_model_vector(original, "m-new", upgraded, etag, now)
    assert ImageStore(admin).add_embedded_models(original, etag, {"m-old", "m-new"})
    assert ActiveModels(admin).pin(prompt, "m-new", now) == "m-new"

    identity = enforced.identity_without("IngestFunctionRole", without) if without else ingest
    _put(admin, f"uploads/{copy}.jpg", data, prompt)
    count, failed = _ingest_batch(enforced, identity)
    record = ImageStore(admin).get(copy)
    assert record is not None and record["duplicate_of"] == original
    if without:  # the template without the grant: the message fails (retried, then the DLQ)
        assert (count, len(failed), record["status"]) == (1, 1, "pending")
        drain_messages(admin, admin.embed_queue)
        return
    assert (count, failed) == (1, set())
    assert record["status"] == "embedded" and set(record["embedded_models"]) == {"m-old", "m-new"}
    vector = EmbeddingStore(admin).get_for_model(copy, "m-new")
    assert vector is not None and np.array_equal(vector["embedding"], upgraded)
    assert drain_messages(admin, admin.embed_queue) == []  # nothing to embed again


def _receive_all(settings: Settings, queue: str) -> list[dict[str, Any]]:
    sqs = aws.client(settings, "sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        messages += batch
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


# ---------------------------------------------------------------- API


def _call(handler: Any, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": ["application/json"]} if body is not None else {}
    event = proxy_event(method, path, headers, raw, "127.0.0.1")
    response = handler(event, LocalLambdaContext("api"))
    text = response["body"]
    return response["statusCode"], json.loads(text) if text.startswith("{") else {}


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockEmulator]:
    emulator = BedrockEmulator().start()
    yield emulator
    emulator.stop()


def _api_as(enforced: EnforcedStack, identity: Identity, bedrock: BedrockEmulator) -> Any:
    settings = enforced.settings_of(identity).with_endpoint(
        bedrock.url, ("bedrock", "bedrock-runtime")
    )
    return make_api_handler(Ingestor.from_settings(settings))


def test_api_routes_work_under_the_api_role(
    enforced: EnforcedStack, bedrock: BedrockEmulator
) -> None:
    admin = enforced.admin
    api = _api_as(enforced, enforced.identities["ApiFunctionRole"], bedrock)
    image = base64.b64encode(gradient_jpeg()).decode()

    status, posted = _call(api, "POST", "/images", {"image_data": image, "prompt": "an iam cat"})
    assert status == 200, posted
    image_id = posted["image_id"]
    status, view = _call(api, "GET", f"/images/{image_id}")
    assert (status, view["status"]) == (200, "pending")
    assert _call(api, "GET", f"/embeddings/{image_id}")[0] == 202
    assert _call(api, "GET", "/images/0123456789abcdef0123456789abcdef")[0] == 404
    status, generated = _call(api, "GET", "/images?prompt=an%20iam%20owl")
    assert status == 200, generated
    queued = {m["image_id"] for m in drain_messages(admin, admin.embed_queue)}
    assert {image_id, generated["image_id"]} <= queued

    for other in ("iam-a", "iam-b"):
        embedded_record(admin, other, "an iam dog")
    commit_shard(
        admin, "an iam dog", "color-layout-v1", "run-1", {"iam-a": [1, 0], "iam-b": [1, 1]}
    )
    status, similar = _call(api, "GET", "/similarity?image_id=iam-a&prompt=an%20iam%20dog")
    assert status == 200, similar
    assert [r["image_id"] for r in similar["results"]] == ["iam-b"]
    status, prompts = _call(api, "GET", "/prompts")
    assert status == 200, prompts
    assert "an iam dog" in [p["prompt"] for p in prompts["prompts"]]
    status, deleted = _call(api, "DELETE", "/images/iam-b")
    assert (status, deleted.get("status")) == (200, "deleted"), deleted
    status, similar = _call(api, "GET", "/similarity?image_id=iam-a&prompt=an%20iam%20dog")
    assert (status, similar["results"]) == (200, [])

    # a missing s3:// key is the caller's mistake (404 from S3, which needs s3:ListBucket)
    status, error = _call(api, "POST", "/embed", {"url": f"s3://{admin.bucket}/uploads/none.jpg"})
    assert (status, error["error"]["message"]) == (400, "url names no object")


@pytest.mark.parametrize(
    ("missing", "route", "expected"),
    [
        ("sqs:GetQueueUrl", "POST /images", 500),
        ("s3:PutObject", "POST /images", 500),
        ("dynamodb:BatchGetItem", "GET /similarity", 500),
    ],
)
def test_the_api_role_without_a_permission_fails_its_route(
    enforced: EnforcedStack, bedrock: BedrockEmulator, missing: str, route: str, expected: int
) -> None:
    api = _api_as(enforced, enforced.identity_without("ApiFunctionRole", missing), bedrock)
    image = base64.b64encode(gradient_jpeg()).decode()
    if route == "POST /images":
        status, _ = _call(api, "POST", "/images", {"image_data": image, "prompt": "an iam bat"})
    else:
        status, _ = _call(api, "GET", "/similarity?image_id=iam-a&prompt=an%20iam%20dog")
    assert status == expected
    drain_messages(enforced.admin, enforced.admin.embed_queue)


# ---------------------------------------------------------------- DAG tasks


@pytest.fixture
def airflow_as(enforced: EnforcedStack, airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets the Airflow AWS connection to an identity's keys (the stack's names in the
    environment, every service at its local endpoint); returns that setter."""
    for name, value in enforced.admin.to_env().items():
        if not name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.setenv(name, value)

    def connect(identity: Identity, **endpoints: str) -> None:
        services = {s: {"endpoint_url": enforced.moto.url} for s in ("s3", "dynamodb", "sqs")}
        services.update({s.replace("_", "-"): {"endpoint_url": u} for s, u in endpoints.items()})
        connection = {
            "conn_type": "aws",
            "login": identity.access_key_id,
            "password": identity.secret_access_key,
            "extra": {"region_name": enforced.admin.region, "service_config": services},
        }
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))

    return connect


def _compaction_run(enforced: EnforcedStack, prompt: str) -> Any:
    from dags.compact_shards import compact_shards_dag

    for run_id, image_id in (("run-1", f"{prompt}-a"), ("run-2", f"{prompt}-b")):
        commit_shard(enforced.admin, prompt, "color-layout-v1", run_id, {image_id: [1.0, 0.5]})
    for task in compact_shards_dag.tasks:
        task.retries = 0  # a refused call fails the run at once
    return compact_shards_dag.test(run_conf={"orphan_age_hours": 0})


def test_compaction_runs_under_the_airflow_tasks_policy(
    enforced: EnforcedStack, airflow_as: Any
) -> None:
    from pipeline.storage.manifests_table import ManifestStore

    airflow_as(enforced.identities["AirflowTasksPolicy"])
    run = _compaction_run(enforced, "an iam hen")
    assert run.state == "success"
    manifest = ManifestStore(enforced.admin).get("an iam hen", "color-layout-v1")
    assert manifest is not None and len(manifest.shards) == 1 and manifest.rows == 2
    listing = aws.client(enforced.admin, "s3").list_objects_v2(
        Bucket=enforced.admin.bucket, Prefix="embeddings/"
    )
    shard_keys = {o["Key"] for o in listing["Contents"]}
    assert set(manifest.shards) <= shard_keys  # the merged-away shards are deleted
    assert not any("an-iam-hen" in k and k not in manifest.shards for k in shard_keys)


def test_compaction_without_s3_delete_object_fails(
    enforced: EnforcedStack, airflow_as: Any
) -> None:
    airflow_as(enforced.identity_without("AirflowTasksPolicy", "s3:DeleteObject"))
    run = _compaction_run(enforced, "an iam yak")
    assert run.state == "failed"
    failed = [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"]
    assert failed == ["compact"]


def test_a_reembed_commit_s_batch_write_and_the_redrive_run_under_the_airflow_tasks_policy(
    enforced: EnforcedStack,
) -> None:
    """What the reembed commit and the redrive_dlq task call, called as the Airflow identity
    (no DAG run): vectors 25 to a BatchWriteItem; the ingest DLQ moved back to its queue (the
    move-task calls are authorized before moto answers that it lacks them); an image that gave
    up reopened; and without sqs:ListMessageMoveTasks the redrive stops at AccessDenied instead
    of taking the refusal for a missing feature."""
    import numpy as np

    from pipeline.monitoring.redrive import redrive, reopen_given_up
    from pipeline.storage.embeddings_table import EmbeddingStore

    airflow = enforced.as_role("AirflowTasksPolicy")
    ids = [f"bw{uuid.uuid4().hex[:8]}" for _ in range(30)]  # two BatchWriteItem calls
    vectors = [(i, np.full(4, n, np.float32), f"etag-{i}") for n, i in enumerate(ids)]
    EmbeddingStore(airflow).put_model_vectors("m-iam", vectors, "2026-11-02T00:00:00.000Z")
    stored = EmbeddingStore(enforced.admin).get_for_model(ids[-1], "m-iam")
    assert stored is not None and stored["embedding"].tolist() == [29.0] * 4

    sqs = aws.client(enforced.admin, "sqs")
    queue = enforced.admin.ingest_queue
    dlq_url = sqs.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"]
    body = {"redriven": uuid.uuid4().hex}
    sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(body))
    without = enforced.settings_of(
        enforced.identity_without("AirflowTasksPolicy", "sqs:ListMessageMoveTasks")
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        redrive(without)
    result = redrive(airflow)
    assert (result.method, result.moved) == ("receive_send_delete", 1)
    assert body in drain_messages(enforced.admin, queue)
    assert drain_messages(enforced.admin, f"{queue}-dlq") == []

    image_id = f"gaveup{uuid.uuid4().hex[:8]}"
    embedded_record(enforced.admin, image_id, "an iam gull", "failed", "embedding_gave_up: x")
    assert reopen_given_up(airflow).moved == 1
    assert ImageStore(enforced.admin).get(image_id)["status"] == "pending"
    requests = drain_messages(enforced.admin, enforced.admin.embed_queue)
    assert image_id in [r["image_id"] for r in requests]


CAMPAIGN = """
name: iam
schedule: null
model_id: {model}
width: 256
height: 256
images_per_prompt: 2
prompts: ["an iam heron"]
budget: {{max_images: 4, max_dollars: 1.0}}
"""


def test_a_campaign_runs_under_the_airflow_tasks_policy(
    enforced: EnforcedStack,
    airflow_as: Any,
    bedrock: BedrockEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.models.pool import Pool

    from dags.generate_campaign import build

    airflow_as(
        enforced.identities["AirflowTasksPolicy"], bedrock=bedrock.url, bedrock_runtime=bedrock.url
    )
    monkeypatch.setenv("IMGSIM_CAMPAIGNS_DIR", str(tmp_path))
    Pool.create_or_update_pool("bedrock", 2, "Bedrock InvokeModel", include_deferred=False)
    path = tmp_path / "iam.yaml"
    path.write_text(CAMPAIGN.format(model=enforced.admin.image_model_id))
    run = build(path).test()
    assert run.state == "success"
    listing = aws.client(enforced.admin, "s3").list_objects_v2(
        Bucket=enforced.admin.bucket, Prefix="generated/"
    )
    keys = [o["Key"] for o in listing["Contents"]]
    records = [ImageStore(enforced.admin).get(Path(k).stem) for k in keys]
    assert sum(1 for r in records if r and r["prompt"] == "an iam heron") == 2
    drain_messages(enforced.admin, enforced.admin.embed_queue)


@pytest.fixture(scope="module")
def sagemaker_as_its_role(
    enforced: EnforcedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A SageMaker emulator of this module's own whose S3 calls (model, inputs, outputs) carry
    the SageMakerExecutionRole identity's keys, as a real job runs with its role."""
    identity = enforced.identities["SageMakerExecutionRole"]
    logs = tmp_path_factory.mktemp("sagemaker")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": enforced.moto.url,
        "AWS_ACCESS_KEY_ID": identity.access_key_id,
        "AWS_SECRET_ACCESS_KEY": identity.secret_access_key,
    }
    port = free_port()
    argv = [sys.executable, "-m", "pipeline.local.sagemaker", "--port", str(port)]
    proc = start_group([*argv, "--work-dir", str(logs / "work")], logs / "log", env=env)
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("sagemaker", endpoint_url=url, region_name=enforced.admin.region)
    try:
        sagemaker_emulator_answers(client)
        yield url
    finally:
        stop_group(proc.pid)


def test_an_embedding_run_works_under_the_airflow_and_sagemaker_roles(
    enforced: EnforcedStack,
    airflow_as: Any,
    sagemaker_as_its_role: str,
    tiny_clip_artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = enforced.admin
    key = "models/tiny-clip/model.tar.gz"
    aws.client(admin, "s3").upload_file(str(tiny_clip_artifact), admin.bucket, key)
    prompt, image_id = "an iam lynx", f"emb{uuid.uuid4().hex[:8]}"
    _put(admin, f"uploads/{image_id}.jpg", gradient_jpeg(), prompt)
    _ingest_as(enforced, enforced.identities["IngestFunctionRole"])
    drain_messages(admin, admin.embed_queue)  # the run gathers pending records itself

    queue = aws.client(admin, "sqs").get_queue_url(QueueName=admin.embed_queue)["QueueUrl"]
    monkeypatch.setenv("IMGSIM_EMBED_QUEUE_URL", queue)
    monkeypatch.setenv("IMGSIM_TRANSFORM_POLL_SECONDS", "1")
    role_arn = enforced.values.attributes["SageMakerExecutionRole.Arn"]
    airflow_as(
        enforced.identities["AirflowTasksPolicy"],
        sagemaker=sagemaker_as_its_role,
        sagemaker_runtime=sagemaker_as_its_role,
    )
    # parsed with this environment (it reads the queue URL and the poll interval at parse time)
    loaded = sys.modules.get("dags.embed_images")
    module = importlib.reload(loaded) if loaded else importlib.import_module("dags.embed_images")
    dag = module.embed_images_dag
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(
        run_conf={
            "model_data_url": f"s3://{admin.bucket}/{key}",
            "role_arn": role_arn,
            "grace_minutes": 0,
        }
    )
    assert run.state == "success"
    record = ImageStore(admin).get(image_id)
    assert record is not None and record["status"] == "embedded"
