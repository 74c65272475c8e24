import json
from pathlib import Path

import pytest

from pipeline.ingest.notifications import MalformedNotification, object_created_events

EVENTS = Path(__file__).parents[1] / "events"


def _body(name: str) -> str:
    return json.loads((EVENTS / name).read_text())["Records"][0]["body"]


def test_aws_shaped_notification_is_url_decoded():
    [event] = object_created_events(_body("sqs_s3_put_aws.json"))
    assert (event.bucket, event.key) == ("imgsim-prod", "uploads/golden retriever (1).jpg")
    assert event.etag == "d41d8cd98f00b204e9800998ecf8427e" and event.size == 48213


def test_moto_notification_decodes_slashes_and_plus_signs():
    [event] = object_created_events(_body("sqs_s3_put_moto.json"))
    assert event.key == "uploads/red fox+1.jpg"


def test_test_event_has_no_records():
    assert object_created_events(_body("sqs_s3_test_event.json")) == []


def test_non_create_events_are_skipped():
    body = json.loads(_body("sqs_s3_put_aws.json"))
    body["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert object_created_events(json.dumps(body)) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '{"hello": "world"}',
        '{"Records": [{"eventName": "ObjectCreated:Put"}]}',
    ],
)
def test_malformed_bodies_are_refused(body):
    with pytest.raises(MalformedNotification):
        object_created_events(body)
