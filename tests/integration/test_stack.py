"""The local stack is created from infra/template.yaml, as on AWS."""

import json

from pipeline import aws


def test_template_deploys_with_every_resource_the_design_names(stack):
    settings = stack.settings
    for logical in (
        "ImagesBucket",
        "IngestQueue",
        "IngestDeadLetterQueue",
        "EmbedQueue",
        "ImagesTable",
        "EmbeddingsTable",
        "ShardManifestsTable",
        "IngestFunction",
        "ApiFunction",
        "IngestFunctionRole",
        "ApiFunctionRole",
        "RestApi",
    ):
        assert logical in stack.resources
    assert "IngestEventSourceMapping" not in stack.resources  # the pump plays it locally

    ddb = aws.client(settings, "dynamodb")
    table = ddb.describe_table(TableName=settings.images_table)["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == [
        "Prompt_GSI",
        "Sha256_GSI",
        "Pending_GSI",
    ]

    sqs = aws.client(settings, "sqs")
    url = sqs.get_queue_url(QueueName=settings.ingest_queue)["QueueUrl"]
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert int(redrive["maxReceiveCount"]) == 5
    assert redrive["deadLetterTargetArn"].endswith(f":{settings.ingest_queue}-dlq")

    s3 = aws.client(settings, "s3")
    notifications = s3.get_bucket_notification_configuration(Bucket=settings.bucket)
    assert {
        c["Filter"]["Key"]["FilterRules"][0]["Value"] for c in notifications["QueueConfigurations"]
    } == {"uploads/", "generated/"}
