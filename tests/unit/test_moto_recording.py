import json

from pipeline.local.moto_recording import filter_recording, keep


def _entry(method="POST", target=None, body="", path="/"):
    headers = {"X-Amz-Target": target} if target else {}
    return {
        "method": method,
        "url": f"http://127.0.0.1:1{path}",
        "headers": headers,
        "body": body,
        "body_encoded": False,
    }


def test_state_changes_are_replayed():
    assert keep(_entry("PUT", path="/bucket/uploads/a.jpg"))
    assert keep(_entry(target="DynamoDB_20120810.PutItem"))
    assert keep(_entry(target="DynamoDB_20120810.UpdateItem"))
    assert keep(_entry(target="AmazonSQS.CreateQueue"))
    assert keep(_entry(body="Action=CreateStack&StackName=x"))


def test_reads_and_message_traffic_are_dropped():
    assert not keep(_entry("GET", path="/bucket/uploads/a.jpg"))
    assert not keep(_entry(target="DynamoDB_20120810.GetItem"))
    assert not keep(_entry(target="DynamoDB_20120810.Query"))
    for op in ("ReceiveMessage", "DeleteMessage", "SendMessage", "GetQueueUrl"):
        assert not keep(_entry(target=f"AmazonSQS.{op}"))
    assert not keep(_entry(body="Action=DescribeStacks&StackName=x"))


def test_filter_recording_keeps_order():
    lines = [
        json.dumps(_entry("PUT", path="/b/1")),
        json.dumps(_entry("GET", path="/b/1")),
        "",
        json.dumps(_entry("PUT", path="/b/2")),
    ]
    assert [json.loads(x)["url"][-4:] for x in filter_recording(lines)] == ["/b/1", "/b/2"]
