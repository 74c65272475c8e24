"""Pure parts of the embedding run."""

import json

from pipeline.embedding.embed_requests import messages_from_asset_events, requested_ids
from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.transform_config import transform_config as build_config
from pipeline.settings import Settings


def test_requested_ids_from_sqs_asset_events():
    extras = [
        {
            "from_trigger": True,
            "payload": {
                "status": "success",
                "message_batch": [
                    {
                        "MessageId": "1",
                        "Body": json.dumps({"image_id": "a", "s3_key": "uploads/a.jpg"}),
                    },
                    {"MessageId": "2", "Body": "not json"},
                    {"MessageId": "3", "Body": json.dumps({"image_id": "b", "priority": True})},
                ],
            },
        },
        {
            "from_trigger": True,
            "payload": {"message_batch": [{"Body": json.dumps({"image_id": "a"})}]},
        },
        {},
    ]
    assert requested_ids(messages_from_asset_events(extras)) == ["a", "b"]


def test_transform_config_is_deterministic_per_run_and_valid_for_sagemaker():
    run = EmbeddingRun(
        Settings(bucket="bkt"),
        "manual__2026-11-22T00:30:00.123456+00:00",
        s3=object(),
        images=object(),
        embeddings=object(),
        manifests=object(),
        shards=object(),
    )
    config = build_config(run, "s3://bkt/models/m.tar.gz", "arn:aws:iam::1:role/r")
    again = build_config(run, "s3://bkt/models/m.tar.gz", "arn:aws:iam::1:role/r")
    assert config == again
    name = config["Transform"]["TransformJobName"]
    assert len(name) <= 63 and all(c.isalnum() or c == "-" for c in name)
    assert config["Transform"]["ModelName"] == config["Model"]["ModelName"] == name
    source = config["Transform"]["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == "s3://bkt/embed-runs/manual__2026-11-22T00_30_00.123456_00_00/input/"
    other = EmbeddingRun(
        Settings(bucket="bkt"),
        "manual__2026-11-22T00:30:00.123457+00:00",
        s3=object(),
        images=object(),
        embeddings=object(),
        manifests=object(),
        shards=object(),
    )
    assert build_config(other, "s3://x/m", "r")["Transform"]["TransformJobName"] != name
