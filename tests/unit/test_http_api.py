from pipeline.local.api_gateway import proxy_event


def test_proxy_event_has_the_api_gateway_rest_shape():
    event = proxy_event("GET", "/images/abc?k=1&k=2&x=", {"Host": ["h"]}, b"", "127.0.0.1")
    assert event["httpMethod"] == "GET" and event["path"] == "/images/abc"
    assert event["queryStringParameters"] == {"k": "2", "x": ""}
    assert event["multiValueQueryStringParameters"] == {"k": ["1", "2"], "x": [""]}
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    # served at the root: no stage prefix in the path, so the spec's server is "/"
    assert event["requestContext"]["path"] == "/images/abc"


def test_binary_bodies_are_base64_encoded():
    event = proxy_event("POST", "/images", {}, b"\xff\xfe\x00", "127.0.0.1")
    assert event["isBase64Encoded"] is True and event["body"] == "//4A"
