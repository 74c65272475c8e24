"""The ingest DLQ's redrive on the local stack: moto implements no SQS message move tasks, so
the redrive tells that from moto's own answer and moves the messages itself, with long
polling, until the DLQ is empty; against AWS's answers (botocore's Stubber) it starts a move
task instead and moves nothing itself."""

from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from pipeline import aws
from pipeline.monitoring.redrive import approximate_count, not_implemented, redrive
from tests.helpers import drain_messages, queue_url


def _arn(settings, name: str) -> str:
    attributes = aws.client(settings, "sqs").get_queue_attributes(
        QueueUrl=queue_url(settings, name), AttributeNames=["QueueArn"]
    )
    return attributes["Attributes"]["QueueArn"]


def test_moto_s_answer_to_a_move_task_reads_as_not_implemented_and_aws_errors_do_not(stack):
    settings = stack.settings
    sqs = aws.client(settings, "sqs", config=Config(retries={"total_max_attempts": 1}))
    dlq = _arn(settings, f"{settings.ingest_queue}-dlq")
    with pytest.raises(ClientError) as missing:
        sqs.start_message_move_task(SourceArn=dlq)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert not_implemented(missing.value)
    with pytest.raises(ClientError) as unknown_queue:
        sqs.get_queue_url(QueueName="no-such-queue")
    assert not not_implemented(unknown_queue.value)


def test_without_move_tasks_the_dlq_is_drained_with_long_polling_until_empty(stack):
    settings = stack.settings
    sqs = aws.client(settings, "sqs")
    dlq = f"{settings.ingest_queue}-dlq"
    dlq_url = queue_url(settings, dlq)
    for n in range(25):  # three receives' worth
        sqs.send_message(
            QueueUrl=dlq_url,
            MessageBody=json.dumps({"n": n}),
            MessageAttributes={"origin": {"DataType": "String", "StringValue": f"o{n}"}},
        )
    receives: list[int] = []  # each ReceiveMessage's wait, as sent
    sqs.meta.events.register(
        "provide-client-params.sqs.ReceiveMessage",
        lambda params, **_: receives.append(params.get("WaitTimeSeconds", 0)),
    )

    result = redrive(settings, sqs=sqs)

    assert receives and min(receives) >= 1  # long polling: SQS searches all its servers
    assert (result.method, result.moved, result.task_handle) == ("receive_send_delete", 25, None)
    assert (result.source, result.target) == (dlq, settings.ingest_queue)
    assert approximate_count(sqs, dlq_url) == 0 and drain_messages(settings, dlq) == []
    moved, target_url = [], queue_url(settings, settings.ingest_queue)
    while batch := sqs.receive_message(
        QueueUrl=target_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        for message in batch:
            body = json.loads(message["Body"])  # the bucket's s3:TestEvent is there too
            if "n" in body:
                moved.append((body["n"], message["MessageAttributes"]))
            sqs.delete_message(QueueUrl=target_url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(n for n, _ in moved) == list(range(25))
    assert all(a["origin"]["StringValue"] == f"o{n}" for n, a in moved)
    assert redrive(settings).moved == 0  # an empty DLQ: nothing to move


def _aws(settings):
    """A client whose move-task calls answer as AWS does (botocore's Stubber)."""
    probe = aws.client(settings, "sqs")
    return probe, Stubber(probe)


def test_on_aws_a_move_task_moves_the_dlq_back_to_its_queue_and_nothing_passes_here(stack):
    settings = stack.settings
    dlq = f"{settings.ingest_queue}-dlq"
    for n in range(3):
        aws.client(settings, "sqs").send_message(
            QueueUrl=queue_url(settings, dlq), MessageBody=json.dumps({"n": n})
        )
    source, target = _arn(settings, dlq), _arn(settings, settings.ingest_queue)
    probe, stubber = _aws(settings)
    stubber.add_response(
        "list_message_move_tasks", {"Results": []}, {"SourceArn": source, "MaxResults": 1}
    )
    stubber.add_response(
        "start_message_move_task",
        {"TaskHandle": "handle-1"},
        {"SourceArn": source, "DestinationArn": target},
    )
    with stubber:
        result = redrive(settings, probe=probe)
    stubber.assert_no_pending_responses()
    assert (result.method, result.task_handle, result.moved) == ("move_task", "handle-1", 3)
    assert len(drain_messages(settings, dlq)) == 3  # SQS moves them, not this process

    # a retried redrive finds the running task (SQS allows one per queue): no second start
    probe, stubber = _aws(settings)
    running = {"Status": "RUNNING", "TaskHandle": "handle-1", "SourceArn": source}
    stubber.add_response("list_message_move_tasks", {"Results": [running]})
    with stubber:
        again = redrive(settings, probe=probe)
    assert (again.method, again.task_handle) == ("move_task", "handle-1")
