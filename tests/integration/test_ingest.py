"""The S3-upload ingest path on a moto server: S3 put -> SQS -> pump -> ingest handler."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from lambdas.ingest.handler import logger, make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.event_pump import EventPump
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.settings import Limits
from pipeline.storage.dynamodb_codec import utc_now
from pipeline.storage.images_table import ImageStore
from tests.events import MOTO_PUT, TEST_EVENT, batch, s3_put_record, template_record, with_body
from tests.helpers import drain_messages, gradient_jpeg, image_bytes, queue_url
from tests.polling import eventually

CTX = LocalLambdaContext("test-ingest")


def _pump(settings, ingestor=None) -> EventPump:
    return EventPump(settings, make_handler(ingestor or Ingestor.from_settings(settings)))


def _put(settings, key, data, **metadata):
    return aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key=key, Body=data, Metadata=metadata
    )


def _announce(settings, key, data, template=None, bucket=None, **metadata) -> dict[str, Any]:
    """Store an object and return the SQS record that announces it, made from the event file."""
    put = _put(settings, key, data, **metadata)
    extra = {"template": template} if template else {}
    return s3_put_record(bucket or settings.bucket, key, put["ETag"], len(data), **extra)


def _emf_counts(stdout: str) -> Counter[str]:
    """Sum of every CloudWatch EMF metric printed, by name (and `code` where it has one)."""
    counts: Counter[str] = Counter()
    for line in stdout.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if not isinstance(blob, dict) or "_aws" not in blob:
            continue
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "imgsim" and blob["service"] == "imgsim-ingest"
        for metric in directive["Metrics"]:
            assert metric["Unit"] == "Count"
            values = blob[metric["Name"]]
            name = metric["Name"] + (f"[code={blob['code']}]" if "code" in blob else "")
            counts[name] += sum(values) if isinstance(values, list) else values
    return counts


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
    event = batch(_announce(settings, "uploads/cat.png", image_bytes("PNG")))
    handler = make_handler(Ingestor.from_settings(settings))
    for _ in range(3):
        assert handler(event, CTX) == {"batchItemFailures": []}
    assert list(_records(settings)) == ["cat"]
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["cat"]


def test_moto_encoded_keys_are_decoded_before_the_object_is_read(stack):
    settings = stack.settings
    key = "uploads/red fox+1.jpg"  # moto sends uploads%2Fred+fox%2B1.jpg
    event = batch(_announce(settings, key, gradient_jpeg(), template=MOTO_PUT))
    assert make_handler(Ingestor.from_settings(settings))(event, CTX) == {"batchItemFailures": []}
    [record] = _records(settings).values()
    assert record["s3_key"] == key and record["status"] == "pending"


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

    def redelivered() -> bool:
        if "embed_requested_at" in ImageStore(settings).get("crash"):
            return True
        pump.poll_once(wait_seconds=1)
        return False

    eventually(redelivered, 20, 0.01, "the failed message redelivered")
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["crash"]
    # one more redelivery of the same event changes nothing
    assert (
        Ingestor.from_settings(settings)
        .ingest_event(settings.bucket, "uploads/crash.jpg", None)
        .outcome
        == "duplicate"
    )
    assert drain_messages(settings, settings.embed_queue) == []


def _mixed_batch(settings) -> dict[str, Any]:
    """Every outcome in one batch: two good images (one announced twice), a bad one, an object
    of another bucket, S3's TestEvent and a message that is not an S3 notification."""
    good1 = _announce(settings, "uploads/good1.jpg", gradient_jpeg())
    return batch(
        good1,
        _announce(settings, "uploads/bad.jpg", b"this is not an image at all"),
        _announce(settings, "uploads/good2.webp", image_bytes("WEBP"), template=MOTO_PUT),
        {**good1, "messageId": "redelivered-good1"},
        _announce(settings, "uploads/elsewhere.jpg", gradient_jpeg(), bucket="another-bucket"),
        template_record(TEST_EVENT),
        {**with_body("not an S3 event"), "messageId": "poison-1"},
    )


def test_a_mixed_batch_keeps_good_images_apart_from_bad_ones(stack):
    settings = stack.settings
    result = make_handler(Ingestor.from_settings(settings))(_mixed_batch(settings), CTX)
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


def test_the_handler_emits_a_count_per_outcome_and_refusal_code(stack, capsys):
    settings = stack.settings
    event = _mixed_batch(settings)
    capsys.readouterr()
    make_handler(Ingestor.from_settings(settings))(event, CTX)
    assert _emf_counts(capsys.readouterr().out) == {
        "IngestRecorded": 2,
        "IngestDuplicate": 1,
        "IngestFailed": 1,
        "IngestIgnored": 1,
        "IngestErrors": 1,
        "IngestRefused[code=not_an_image]": 1,
    }


def test_log_lines_carry_the_lambda_context_and_the_message_id(stack):
    settings = stack.settings
    record = _announce(settings, "uploads/ctx.jpg", gradient_jpeg())
    context = LocalLambdaContext("imgsim-ingest-test")
    make_handler(Ingestor.from_settings(settings))(batch(record), context)
    keys = logger.get_current_keys()
    assert keys["function_name"] == "imgsim-ingest-test"
    assert keys["function_request_id"] == context.aws_request_id
    assert keys["correlation_id"] == record["messageId"]


def test_every_bad_input_kind_is_recorded_failed_with_its_reason(stack, capsys):
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
    refused = {k: n for k, n in _emf_counts(capsys.readouterr().out).items() if "code=" in k}
    assert refused == {f"IngestRefused[code={code}]": 1 for _, code in bad.values()}


def test_a_poison_message_reaches_the_dlq_after_five_tries(deploy_stack):
    settings = deploy_stack(ingest_visibility_timeout=1).settings
    sqs = aws.client(settings, "sqs")
    sqs.send_message(
        QueueUrl=queue_url(settings, settings.ingest_queue), MessageBody='{"Records": "garbage"}'
    )
    _put(settings, "uploads/fine.jpg", gradient_jpeg())
    pump = _pump(settings)
    dlq = queue_url(settings, f"{settings.ingest_queue}-dlq")

    def dead_lettered() -> list[dict]:
        pump.poll_once(wait_seconds=1)
        return sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"]).get("Messages", [])

    dead = eventually(dead_lettered, 30, 0.01, "the garbage message in the DLQ")
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


def test_pending_reads_every_page_of_the_index(stack):
    settings = stack.settings
    for name in ("p1", "p2", "p3"):
        _put(settings, f"uploads/{name}.jpg", gradient_jpeg())
    _pump(settings).drain()
    client = aws.client(settings, "dynamodb")
    # one item per Query page: only a caller that follows LastEvaluatedKey sees all three
    client.meta.events.register(
        "before-parameter-build.dynamodb.Query", lambda params, **_: params.update(Limit=1)
    )
    store = ImageStore(settings, client)
    assert sorted(r["image_id"] for r in store.pending(utc_now())) == ["p1", "p2", "p3"]
    assert store.pending("2000-01-01T00:00:00.000Z") == []
