"""The S3-upload ingest path on a moto server: S3 put -> SQS -> pump -> ingest handler."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.event_pump import EventPump, sqs_event
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.settings import Limits
from pipeline.storage.images_table import ImageStore
from tests.helpers import drain_messages, gradient_jpeg, image_bytes, queue_url

CTX = LocalLambdaContext("test-ingest")


def _pump(settings, ingestor=None) -> EventPump:
    return EventPump(settings, make_handler(ingestor or Ingestor.from_settings(settings)))


def _put(settings, key, data, **metadata):
    return aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key=key, Body=data, Metadata=metadata
    )


def _receive_notifications(settings) -> list[dict]:
    """The raw SQS messages S3 sent to the ingest queue (TestEvent excluded), undeleted."""
    sqs = aws.client(settings, "sqs")
    url = queue_url(settings, settings.ingest_queue)
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
    ).get("Messages", [])
    return [m for m in messages if "Records" in json.loads(m["Body"])]


def _records(settings) -> dict[str, dict]:
    items = aws.client(settings, "dynamodb").scan(TableName=settings.images_table)["Items"]
    store = ImageStore(settings)
    return {i["image_id"]["S"]: store.get(i["image_id"]["S"]) for i in items}


def test_an_upload_is_recorded_pending_and_queued_once(stack):
    settings = stack.settings
    put = _put(settings, "uploads/fox.jpg", gradient_jpeg(), prompt="  Red   FOX ")
    handled = _pump(settings).drain()
    assert handled >= 1
    record = ImageStore(settings).get("fox")
    assert record["status"] == "pending" and record["prompt"] == "red fox"
    assert record["etag"] == put["ETag"].strip('"')
    assert (record["width"], record["height"], record["content_type"]) == (128, 96, "image/jpeg")
    assert record["source"] == "uploaded" and record["created_at"].endswith("Z")
    assert drain_messages(settings, settings.embed_queue) == [
        {"image_id": "fox", "s3_key": "uploads/fox.jpg", "etag": record["etag"]}
    ]
    # the record is queryable by prompt through the GSI
    found = aws.client(settings, "dynamodb").query(
        TableName=settings.images_table,
        IndexName="Prompt_GSI",
        KeyConditionExpression="prompt = :p",
        ExpressionAttributeValues={":p": {"S": "red fox"}},
    )
    assert [i["image_id"]["S"] for i in found["Items"]] == ["fox"]


def test_the_same_event_delivered_three_times_yields_one_item_and_one_message(stack):
    settings = stack.settings
    _put(settings, "uploads/cat.png", image_bytes("PNG"))
    [message] = _receive_notifications(settings)
    handler = make_handler(Ingestor.from_settings(settings))
    event = sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:q", settings.region)
    for _ in range(3):
        assert handler(event, CTX) == {"batchItemFailures": []}
    assert list(_records(settings)) == ["cat"]
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["cat"]


def test_a_retry_after_a_crash_between_the_two_writes_ends_with_both(deploy_stack):
    settings = deploy_stack(ingest_visibility_timeout=1).settings
    _put(settings, "uploads/crash.jpg", gradient_jpeg())
    # first delivery: the record is written, then the embed queue is unreachable
    broken = Ingestor.from_settings(replace(settings, embed_queue="no-such-queue"))
    assert _pump(settings, broken).drain() >= 1
    record = ImageStore(settings).get("crash")
    assert record["status"] == "pending" and "embed_requested_at" not in record
    assert drain_messages(settings, settings.embed_queue) == []
    # the message was not deleted: it comes back, and the retry completes the second write
    pump = _pump(settings)
    deadline = time.monotonic() + 20
    while "embed_requested_at" not in ImageStore(settings).get("crash"):
        assert time.monotonic() < deadline, "the failed message was never redelivered"
        pump.poll_once(wait_seconds=1)
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["crash"]
    # one more redelivery of the same event changes nothing
    assert (
        Ingestor.from_settings(settings)
        .ingest_event(settings.bucket, "uploads/crash.jpg", None)
        .outcome
        == "duplicate"
    )
    assert drain_messages(settings, settings.embed_queue) == []


def test_a_mixed_batch_keeps_good_images_apart_from_bad_ones(stack):
    settings = stack.settings
    _put(settings, "uploads/good1.jpg", gradient_jpeg())
    _put(settings, "uploads/bad.jpg", b"this is not an image at all")
    _put(settings, "uploads/good2.webp", image_bytes("WEBP"))
    messages = []
    for _ in range(5):
        messages += _receive_notifications(settings)
        if len(messages) == 3:
            break
    poison = {"MessageId": "poison-1", "ReceiptHandle": "x", "Body": "not an S3 event"}
    event = sqs_event([*messages, poison], "arn:aws:sqs:us-east-1:123456789012:q", settings.region)
    result = make_handler(Ingestor.from_settings(settings))(event, CTX)
    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}
    records = _records(settings)
    assert {k: v["status"] for k, v in records.items()} == {
        "good1": "pending",
        "good2": "pending",
        "bad": "failed",
    }
    assert records["bad"]["error"].startswith("not_an_image:")
    queued = sorted(m["image_id"] for m in drain_messages(settings, settings.embed_queue))
    assert queued == ["good1", "good2"]


def test_every_bad_input_kind_is_recorded_failed_with_its_reason(stack):
    settings = replace(stack.settings, limits=Limits(max_object_bytes=200_000))
    jpeg = gradient_jpeg()
    bad = {
        "empty.jpg": (b"", "empty"),
        "text.jpg": (b"hello, world", "not_an_image"),
        "anim.jpg": (image_bytes("GIF"), "unsupported_format"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "wide.png": (image_bytes("PNG", (5000, 10)), "dimensions_too_large"),
        "huge.bmp": (image_bytes("BMP", (300, 300)), "too_large"),
    }
    for name, (data, _) in bad.items():
        _put(settings, f"uploads/{name}", data)
    _put(settings, "uploads/ok.jpg", jpeg)
    _pump(settings, Ingestor.from_settings(settings)).drain()
    records = _records(settings)
    for name, (_, code) in bad.items():
        record = records[name.rsplit(".", 1)[0]]
        assert record["status"] == "failed", name
        assert record["error"].split(":")[0] == code, (name, record["error"])
    assert records["ok"]["status"] == "pending"
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["ok"]


def test_a_poison_message_reaches_the_dlq_after_five_tries(deploy_stack):
    settings = deploy_stack(ingest_visibility_timeout=1).settings
    sqs = aws.client(settings, "sqs")
    sqs.send_message(
        QueueUrl=queue_url(settings, settings.ingest_queue), MessageBody='{"Records": "garbage"}'
    )
    _put(settings, "uploads/fine.jpg", gradient_jpeg())
    pump = _pump(settings)
    dlq = queue_url(settings, f"{settings.ingest_queue}-dlq")
    deadline = time.monotonic() + 30
    dead = []
    while time.monotonic() < deadline and not dead:
        pump.poll_once(wait_seconds=1)
        dead = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"]).get("Messages", [])
    assert [m["Body"] for m in dead] == ['{"Records": "garbage"}']
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= 5
    assert ImageStore(settings).get("fine")["status"] == "pending"  # unaffected


def test_overwriting_a_key_records_the_new_version_and_queues_it(stack):
    settings = stack.settings
    _put(settings, "uploads/pic.jpg", gradient_jpeg())
    pump = _pump(settings)
    pump.drain()
    first = ImageStore(settings).get("pic")
    _put(settings, "uploads/pic.jpg", image_bytes("JPEG", (10, 10)))
    pump.drain()
    second = ImageStore(settings).get("pic")
    assert second["etag"] != first["etag"] and (second["width"], second["height"]) == (10, 10)
    assert [m["etag"] for m in drain_messages(settings, settings.embed_queue)] == [
        first["etag"],
        second["etag"],
    ]


def test_a_stale_event_for_a_replaced_object_changes_nothing(stack):
    settings = stack.settings
    old = _put(settings, "uploads/v.jpg", gradient_jpeg())["ETag"].strip('"')
    _put(settings, "uploads/v.jpg", image_bytes("JPEG", (12, 12)))
    ingestor = Ingestor.from_settings(settings)
    result = ingestor.ingest_event(settings.bucket, "uploads/v.jpg", old)
    assert result.outcome == "ignored" and "replaced" in result.reason
    assert ImageStore(settings).get("v") is None


def test_same_stem_with_another_extension_does_not_overwrite_the_first(stack):
    settings = stack.settings
    _put(settings, "uploads/dog.jpg", gradient_jpeg())
    _put(settings, "uploads/dog.png", image_bytes("PNG"))
    _pump(settings).drain()
    records = _records(settings)
    assert records["dog"]["s3_key"] == "uploads/dog.jpg"
    [other] = [r for k, r in records.items() if k != "dog"]
    assert other["s3_key"] == "uploads/dog.png" and other["status"] == "pending"


def test_generated_images_keep_their_generation_metadata(stack):
    settings = stack.settings
    generation = {
        "model_id": "amazon.titan-image-generator-v2:0",
        "seed": 42,
        "modifiers": {"camera": "low angle", "style": "watercolor"},
    }
    _put(
        settings,
        "generated/g1.png",
        image_bytes("PNG"),
        prompt="Fork",
        **{"modified-prompt": "fork, low angle, watercolor", "generation": json.dumps(generation)},
    )
    _pump(settings).drain()
    record = ImageStore(settings).get("g1")
    assert record["source"] == "generated" and record["generation"] == generation
    assert record["prompt"] == "fork" and record["modified_prompt"].startswith("fork, low")


def test_objects_outside_the_prefixes_are_ignored(stack):
    settings = stack.settings
    ingestor = Ingestor.from_settings(settings)
    _put(settings, "embeddings/x.parquet", b"PAR1")
    assert ingestor.ingest_event(settings.bucket, "embeddings/x.parquet", None).outcome == (
        "ignored"
    )
    assert ingestor.ingest_event("another-bucket", "uploads/x.jpg", None).outcome == "ignored"
    assert _records(settings) == {}
