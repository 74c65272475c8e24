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
    filtered = filter_recording(lines)
    assert [json.loads(x)["url"][-4:] for x in filtered.kept] == ["/b/1", "/b/2"]
    assert filtered.unreadable == []


def test_an_unreadable_line_is_set_aside_not_fatal():
    good = json.dumps(_entry("PUT", path="/b/1"))
    torn = json.dumps(_entry("PUT", path="/b/2"))[:40]  # two writers interleaved mid-record
    filtered = filter_recording([good, torn + good, "[1, 2]", good])
    assert filtered.kept == [good, good]
    assert filtered.unreadable == [torn + good, "[1, 2]"]
