"""Airflow as the pipeline's monitor, with dag.test() on the local stack: pipeline_health green
with nothing stuck (the pending images counted, every image on request), red with a stuck image
or a dead-letter message, green again after the redrive_dlq DAG; and the reports embed and
campaign runs leave as asset-event extras."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import aws
from pipeline.local.bedrock.server import BedrockEmulator
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.storage.images_table import ImageRecord, ImageStore
from tests.helpers import drain_messages, embedded_record, gradient_jpeg, queue_url


@pytest.fixture
def dags(airflow_stack):
    from dags.pipeline_health import pipeline_health_dag
    from dags.redrive_dlq import redrive_dlq_dag

    return pipeline_health_dag, redrive_dlq_dag


def _pending(settings, image_id: str, age: timedelta) -> None:
    created = (datetime.now(UTC) - age).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ImageStore(settings).put_version(
        ImageRecord(
            image_id=image_id,
            created_at=created,
            s3_key=f"uploads/{image_id}.jpg",
            source="uploaded",
            status="pending",
            etag="etag-" + image_id,
            size_bytes=1,
        )
    )


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _health_extra() -> dict:
    return _latest_extra("imgsim_pipeline_health")


def _latest_extra(asset_name: str) -> dict:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name)
            .order_by(AssetEvent.id.desc())
        ).first()
        assert event is not None
        return dict(event.extra)


def _one_of_each_status(settings) -> None:
    """An embedded image, a failed one and one pending for two minutes."""
    embedded_record(settings, "done", "a cat")
    embedded_record(settings, "broken", "a cat", status="failed", error="not_an_image: x")
    _pending(settings, "fresh", timedelta(minutes=2))


def test_healthy_pipeline_is_green_and_records_its_counts(dags, airflow_stack):
    settings, _ = airflow_stack
    health, _ = dags
    _one_of_each_status(settings)

    run = health.test(run_conf={"max_pending_minutes": 60})

    assert run.state == "success", _states(run)
    extra = _health_extra()
    # the 5-minute run counts the pending images only (Pending_GSI, no Scan of the table)
    assert (extra["images_counted"], extra["images"]) == ("pending", {"pending": {"uploaded": 1}})
    assert extra["oldest_pending"]["image_id"] == "fresh"
    assert extra["queues"][f"{settings.ingest_queue}-dlq"] == 0
    # the embed queue's messages are deleted on reception: it has no DLQ to watch
    assert extra["dead_letter_queues"] == [f"{settings.ingest_queue}-dlq"]
    assert set(extra["queues"]) == {
        settings.ingest_queue,
        settings.embed_queue,
        *extra["dead_letter_queues"],
    }


def test_count_all_images_counts_every_image_by_status(dags, airflow_stack):
    settings, _ = airflow_stack
    health, _ = dags
    _one_of_each_status(settings)

    run = health.test(run_conf={"count_all_images": True})

    assert run.state == "success", _states(run)
    extra = _health_extra()
    assert extra["images_counted"] == "all"
    assert extra["images"] == {
        "embedded": {"uploaded": 1},
        "failed": {"uploaded": 1},
        "pending": {"uploaded": 1},
    }
    assert extra["oldest_pending"]["image_id"] == "fresh"


def test_a_stuck_image_turns_the_run_red(dags, airflow_stack):
    settings, _ = airflow_stack
    health, _ = dags
    _pending(settings, "stuck", timedelta(hours=3))
    _pending(settings, "fresh", timedelta(minutes=1))

    run = health.test(run_conf={"max_pending_minutes": 60})

    assert _states(run) == {"measure": "success", "assess": "failed"}
    assert run.state == "failed"
    oldest = _health_extra()["oldest_pending"]
    assert oldest["image_id"] == "stuck" and oldest["age_minutes"] >= 180


def test_a_dead_letter_message_turns_it_red_until_redriven(dags, airflow_stack):
    settings, _ = airflow_stack
    health, redrive = dags
    sqs = aws.client(settings, "sqs")
    dlq = f"{settings.ingest_queue}-dlq"
    sqs.send_message(QueueUrl=queue_url(settings, dlq), MessageBody=json.dumps({"poison": 1}))

    red = health.test()
    assert _states(red)["assess"] == "failed"
    assert _health_extra()["queues"][dlq] == 1

    moved = redrive.test(run_conf={"queue": "ingest"})
    assert moved.state == "success"
    (task,) = moved.get_task_instances()
    assert task.xcom_pull(task_ids="redrive")["method"] == "receive_send_delete"  # moto: no task
    assert drain_messages(settings, dlq) == []
    assert {"poison": 1} in drain_messages(settings, settings.ingest_queue)

    assert health.test().state == "success"


def test_an_embed_run_reports_embedded_and_failed_images_with_reasons(airflow_stack):
    from dags.embed_images import embed_images_dag

    settings, model_uri = airflow_stack
    s3 = aws.client(settings, "s3")
    for image_id, body in (("good", gradient_jpeg()), ("spoiled", b"junk, not a jpeg")):
        s3.put_object(Bucket=settings.bucket, Key=f"uploads/{image_id}.jpg", Body=body)
        etag = s3.head_object(Bucket=settings.bucket, Key=f"uploads/{image_id}.jpg")["ETag"]
        ImageStore(settings).put_version(
            ImageRecord(
                image_id=image_id,
                created_at="2026-11-01T00:00:00.000Z",
                s3_key=f"uploads/{image_id}.jpg",
                source="uploaded",
                status="pending",
                etag=etag.strip('"'),
                size_bytes=len(body),
                prompt="a report",
            )
        )
    for task in embed_images_dag.tasks:
        task.retries = 0

    run = embed_images_dag.test(
        run_conf={"model_data_url": model_uri, "role_arn": LOCAL_SAGEMAKER_ROLE, "grace_minutes": 0}
    )

    assert run.state == "success", _states(run)
    report = _latest_extra("imgsim_embeddings")
    assert (report["embedded"], report["failed"]) == (1, 1)
    assert [f["image_id"] for f in report["failures"]] == ["spoiled"]
    assert report["failures"][0]["error"]
    assert len(report["shards"]) == 1


def test_a_campaign_run_reports_generated_and_refused_images(airflow_stack, monkeypatch, tmp_path):
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("bedrock", 2, "Bedrock InvokeModel", include_deferred=False)
    bedrock = BedrockEmulator().start()
    try:
        connection = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
        for service in ("bedrock-runtime", "bedrock"):  # the emulator serves both
            connection["extra"]["service_config"][service] = {"endpoint_url": bedrock.url}
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        monkeypatch.setenv("IMGSIM_CAMPAIGNS_DIR", str(tmp_path))
        path = tmp_path / "report.yaml"
        path.write_text(CAMPAIGN)
        from dags.generate_campaign import build

        run = build(path).test()
    finally:
        bedrock.stop()

    assert run.state == "success", _states(run)
    report = _latest_extra("imgsim_campaign_images")
    assert report["campaign"] == "report"
    assert (report["generated"], report["refused"], report["failed"]) == (2, 2, 0)
    refused = report["not_generated"]
    assert {r["prompt"] for r in refused} == {"something forbidden"}
    assert all(r["status"] == "refused" and r["reason"] for r in refused)


CAMPAIGN = """
name: report
schedule: null
model_id: stability.stable-image-core-v1:1
width: 256
height: 256
images_per_prompt: 2
prompts: ["a fox", "something forbidden"]
budget: {max_images: 10, max_dollars: 1.0}
"""
