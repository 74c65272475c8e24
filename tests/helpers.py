"""Small test helpers: sample images made in memory, and queue readers."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil
from PIL import Image

from pipeline import aws
from pipeline.settings import Settings
from tests.polling import eventually


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: tuple = (200, 30, 60)
) -> bytes:
    buffer = io.BytesIO()
    mode = "RGB" if fmt != "GIF" else "P"
    Image.new(mode, size, color if mode == "RGB" else 1).save(buffer, format=fmt)
    return buffer.getvalue()


def gradient_jpeg(size: tuple[int, int] = (128, 96)) -> bytes:
    """A JPEG with real content (so truncating it really cuts pixel data)."""
    image = Image.new("RGB", size)
    image.putdata(
        [(x * 2 % 256, y * 2 % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def queue_url(settings: Settings, name: str) -> str:
    return aws.client(settings, "sqs").get_queue_url(QueueName=name)["QueueUrl"]


def drain_messages(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Receive and delete every visible message of a queue; return their JSON bodies."""
    sqs = aws.client(settings, "sqs")
    url = queue_url(settings, name)
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def commit_shard(
    settings: Settings,
    prompt: str,
    model_id: str,
    run_id: str,
    vectors: dict[str, Any],
    embeddings_for: set[str] | None = None,
    etags: Mapping[str, str] | None = None,
) -> str:
    """What an embedding run leaves for one prompt: a shard, its manifest entry, and the
    Embeddings items (vectors are L2-normalized here), of the object versions `etags`
    (default: "etag-<id>", as `embedded_image` records)."""
    from datetime import UTC, datetime

    import numpy as np

    from pipeline.storage.embeddings_table import EmbeddingStore
    from pipeline.storage.keys import shard_key
    from pipeline.storage.manifests_table import ManifestStore
    from pipeline.storage.shards import ShardRow, ShardStore, rows_table

    normalized = {i: (np.asarray(v, np.float32) / np.linalg.norm(v)) for i, v in vectors.items()}

    def etag_of(image_id: str) -> str:
        return etags[image_id] if etags is not None else "etag-" + image_id

    dim = len(next(iter(normalized.values())))
    key = shard_key(model_id, prompt, run_id)
    created = datetime(2026, 11, 1, tzinfo=UTC)
    table = rows_table(
        [ShardRow(i, v, created, f"uploads/{i}.jpg", etag_of(i)) for i, v in normalized.items()],
        dim,
        model_id,
        prompt,
    )
    ShardStore(settings).write(key, table)
    ManifestStore(settings).update(
        prompt, model_id, lambda m: m.with_shard(key, table.num_rows, normalized)
    )
    store = EmbeddingStore(settings)
    for image_id, vector in normalized.items():
        if embeddings_for is not None and image_id not in embeddings_for:
            continue
        store.put(image_id, model_id, vector, key, etag_of(image_id), "2026-11-01T00:00:00Z")
    return key


def commit_upgrade_rows(
    settings: Settings, prompt: str, model_id: str, names: list[str], dim: int, seed: int
) -> None:
    """An upgrade's batch for every image of `names`: one shard of `model_id`'s (random)
    vectors, and each record noting that model's vector beside its own (versions "etag-<id>")."""
    import numpy as np

    from pipeline.storage.images_table import ImageStore

    rng = np.random.default_rng(seed)
    vectors = {n: rng.standard_normal(dim) for n in names}
    commit_shard(
        settings, prompt, model_id, "upgrade-0", vectors, etags={n: "etag-" + n for n in names}
    )
    images = ImageStore(settings)
    for name in names:
        assert images.add_embedded_models(name, "etag-" + name, {model_id})


def embedded_image(
    image_id: str, prompt: str, status: str = "embedded", error: str | None = None
) -> Any:
    """The Images record of an image `commit_shard` embedded (etag "etag-<id>")."""
    from pipeline.storage.images_table import ImageRecord

    return ImageRecord(
        image_id=image_id,
        created_at="2026-11-01T00:00:00.000Z",
        s3_key=f"uploads/{image_id}.jpg",
        source="uploaded",
        status=status,
        etag="etag-" + image_id,
        size_bytes=1,
        prompt=prompt,
        error=error,
    )


def embedded_record(
    settings: Settings,
    image_id: str,
    prompt: str,
    status: str = "embedded",
    error: str | None = None,
) -> None:
    """Write `embedded_image` through the table's conditional put."""
    from pipeline.storage.images_table import ImageStore

    ImageStore(settings).put_version(embedded_image(image_id, prompt, status, error))


def embedded_records(settings: Settings, image_ids: Iterable[str], prompt: str) -> None:
    """`embedded_image` for many images, 25 to a BatchWriteItem (fixtures with thousands)."""
    from pipeline.storage.dynamodb_codec import serialize_item

    client = aws.client(settings, "dynamodb")
    ids = list(image_ids)
    for start in range(0, len(ids), 25):
        batch = [
            {"PutRequest": {"Item": serialize_item(embedded_image(i, prompt).to_item())}}
            for i in ids[start : start + 25]
        ]
        while batch:
            response = client.batch_write_item(RequestItems={settings.images_table: batch})
            batch = response.get("UnprocessedItems", {}).get(settings.images_table, [])


def run_embedding(
    settings: Settings,
    sagemaker_url: str,
    model_uri: str,
    run_id: str,
    before_commit: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One embedding run through the real code path without Airflow: gather every pending
    image, the batch transform on the SageMaker emulator, then `before_commit()` (what happens
    while the job runs) and the commit; returns the commit's summary."""
    from pipeline.embedding.run import EmbeddingRun

    run = EmbeddingRun(settings, run_id)
    run.gather([], pending_before="9999", run_at="2026-11-22T00:00:00.000Z")
    transform(settings, sagemaker_url, model_uri, run)
    if before_commit is not None:
        before_commit()
    return run.commit()


def transform(
    settings: Settings,
    sagemaker_url: str,
    model_uri: str,
    run: Any,
    environment: dict[str, str] | None = None,
) -> str:
    """The batch transform job of an embedding run (or of a backfill's batch run, an
    EmbeddingRun too) on the SageMaker emulator, waited for; returns its model's name."""
    import boto3

    from pipeline.embedding.transform_config import transform_config

    config = transform_config(
        run, model_uri, "arn:aws:iam::123456789012:role/sm", environment=environment
    )
    sm = boto3.client("sagemaker", endpoint_url=sagemaker_url, region_name=settings.region)
    sm.create_model(**config["Model"])
    sm.create_transform_job(**config["Transform"])
    name = config["Transform"]["TransformJobName"]
    job = transform_job_done(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    return str(config["Model"]["ModelName"])


def transform_job_done(sm: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    """The transform job's description once it is no longer in progress (or stopping)."""

    def done() -> dict[str, Any] | None:
        job = sm.describe_transform_job(TransformJobName=name)
        return None if job["TransformJobStatus"] in ("InProgress", "Stopping") else job

    return eventually(done, timeout, 0.3, f"transform job {name} finished")


def sagemaker_emulator_answers(client: Any, timeout: float = 60) -> None:
    """Wait for a SageMaker emulator just started to answer `client` (refused until it
    listens)."""
    from botocore.exceptions import BotoCoreError

    eventually(
        lambda: client.list_transform_jobs() is not None,
        timeout,
        0.1,
        "the SageMaker emulator answering",
        ignoring=(BotoCoreError,),
    )


def still_running(process: psutil.Process) -> bool:
    """Alive and not a zombie: an exited process whose parent (here, often init in a
    container that does not reap) has not collected it yet runs nothing."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def policy_statements(resources: Mapping[str, Any], logical_id: str) -> list[dict[str, Any]]:
    """Every statement of an IAM role's inline policies, or of a managed policy, in a
    template's Resources."""
    properties = resources[logical_id]["Properties"]
    documents = (
        [properties["PolicyDocument"]]
        if "PolicyDocument" in properties
        else [p["PolicyDocument"] for p in properties.get("Policies", [])]
    )
    return [s for d in documents for s in d["Statement"]]


def attached_statements(resources: Mapping[str, Any], logical_id: str) -> list[dict[str, Any]]:
    """Every statement of `logical_id` (a role or managed policy) and of the template's managed
    policies that attach themselves to it (their `Roles`), whatever their Condition: what the
    identity may do when every optional part of the stack is on."""
    attached = [
        name
        for name, resource in resources.items()
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")
        and {"Ref": logical_id} in resource["Properties"].get("Roles", [])
    ]
    return [s for name in (logical_id, *attached) for s in policy_statements(resources, name)]


# A deployment's values for the MWAA bundle's environment (the bundle tests build with them)
MWAA_BUNDLE_ENV = {
    "AWS_REGION": "us-west-2",
    "IMGSIM_BUCKET": "imgsim-prod-123",
    "IMGSIM_IMAGES_TABLE": "Images-prod",
    "IMGSIM_EMBED_QUEUE_URL": "https://sqs.us-west-2.amazonaws.com/123/imgsim-embed",
    "IMGSIM_MODEL_DATA_URL": "s3://imgsim-prod-123/models/clip/model.tar.gz",
    "IMGSIM_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123:role/imgsim-sagemaker",
}


def fresh_dag(dag):
    """A copy of a module-level DAG for one test. `dag.test(run_conf=...)` resolves the run's
    conf into the DAG's own Param objects (Airflow's `process_params` updates them in place),
    so a conf one test passes would otherwise be the next test's default in this process."""
    import copy

    return copy.deepcopy(dag)
