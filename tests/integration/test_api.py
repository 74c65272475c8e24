"""POST /images and GET /images/{id} through the local API adapter (HTTP -> proxy event ->
the Lambda handler) against the moto stack."""

from __future__ import annotations

import base64
import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler
from lambdas.ingest.handler import make_handler as make_ingest_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi, invocation_payload_bytes, proxy_event
from pipeline.local.event_pump import EventPump
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.settings import LAMBDA_SYNC_PAYLOAD_BYTES, Limits
from tests.events import api_gateway_get_image
from tests.helpers import drain_messages, gradient_jpeg, image_bytes


@pytest.fixture
def api(stack):
    server = LocalApi(make_handler(Ingestor.from_settings(stack.settings))).start()
    yield server.url
    server.stop()


def _post(api, **payload):
    return requests.post(f"{api}/images", json=payload, timeout=30)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_post_stores_records_and_queues_the_image(api, stack):
    settings = stack.settings
    png = image_bytes("PNG", (33, 22))
    response = _post(api, image_data=_b64(png), prompt="  A  Fork ")
    assert response.status_code == 200
    image_id = response.json()["image_id"]
    assert response.json()["s3_key"] == f"uploads/{image_id}.png"

    head = aws.client(settings, "s3").head_object(
        Bucket=settings.bucket, Key=f"uploads/{image_id}.png"
    )
    assert head["ContentType"] == "image/png"

    record = requests.get(f"{api}/images/{image_id}", timeout=10)
    assert record.status_code == 200
    body = record.json()
    assert (body["status"], body["prompt"], body["width"], body["height"]) == (
        "pending",
        "a fork",
        33,
        22,
    )
    assert "etag" not in body and body["url_expires_in"] == 900
    download = requests.get(body["url"], timeout=10)
    assert download.status_code == 200 and download.content == png

    # the S3 event for the same object arrives later: a duplicate, nothing new is queued
    EventPump(settings, make_ingest_handler(Ingestor.from_settings(settings))).drain()
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == [image_id]


def test_presigned_url_expiry_is_configurable(stack):
    settings = replace(stack.settings, presign_expiry_seconds=60)
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    try:
        image_id = _post(server.url, image_data=_b64(gradient_jpeg())).json()["image_id"]
        body = requests.get(f"{server.url}/images/{image_id}", timeout=10).json()
    finally:
        server.stop()
    assert body["url_expires_in"] == 60
    query = parse_qs(urlsplit(body["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4, not the deprecated SigV2
    assert query["X-Amz-Expires"] == ["60"]
    assert "prompt" not in body


def test_data_urls_are_accepted(api):
    data = "data:image/jpeg;base64," + _b64(gradient_jpeg())
    assert _post(api, image_data=data).status_code == 200


@pytest.mark.parametrize(
    "payload,status,code",
    [
        ({"image_data": "!!not base64!!"}, 400, "invalid_base64"),
        ({}, 400, "missing_image_data"),
        ({"image_data": 12}, 400, "missing_image_data"),
        ({"image_data": _b64(b"plain text")}, 415, "not_an_image"),
        ({"image_data": _b64(image_bytes("GIF"))}, 415, "unsupported_format"),
        ({"image_data": _b64(gradient_jpeg()[:900])}, 400, "truncated"),
        ({"image_data": _b64(image_bytes("PNG", (4100, 2)))}, 400, "dimensions_too_large"),
        ({"image_data": _b64(gradient_jpeg()), "prompt": "   "}, 400, "invalid_prompt"),
        ({"image_data": _b64(gradient_jpeg()), "prompt": "x" * 1001}, 400, "invalid_prompt"),
    ],
)
def test_bad_uploads_are_refused_with_a_json_reason(api, stack, payload, status, code):
    response = _post(api, **payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert (
        aws.client(stack.settings, "s3")
        .list_objects_v2(Bucket=stack.settings.bucket)
        .get("KeyCount")
        == 0
    )


def test_invalid_json_is_a_400(api):
    response = requests.post(
        f"{api}/images", data=b"{not json", timeout=10, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def _raw_post(api: str, body: bytes, extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST /images with exactly these headers (no client adds any), for byte-exact sizes."""
    url = urlsplit(api)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Content-Type": "application/json", **(extra or {})}
    try:
        connection.request("POST", "/images", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _padded(payload: dict[str, str], size: int) -> bytes:
    """The JSON of `payload` padded with trailing whitespace to exactly `size` bytes."""
    text = json.dumps(payload).encode()
    assert len(text) <= size
    return text + b" " * (size - len(text))


def test_the_largest_body_reaches_the_app_and_one_byte_more_is_its_413(api):
    limit = Limits().max_body_bytes
    png = _b64(image_bytes("PNG", (64, 48)))
    # API Gateway's largest headers (10 KiB with the request line) travel twice in the event
    headers = {"X-Padding": "p" * 9_000}
    status, _ = _raw_post(api, _padded({"image_data": png}, limit), headers)
    assert status == 200
    status, body = _raw_post(api, _padded({"image_data": png}, limit + 1), headers)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_the_image_limit_is_its_own_number(api):
    limit = Limits().max_image_bytes
    png = image_bytes("PNG", (64, 48))
    at_limit = png + b"\0" * (limit - len(png))  # bytes after IEND: still one PNG
    response = _post(api, image_data=_b64(at_limit))
    assert response.status_code == 200
    response = _post(api, image_data=_b64(at_limit + b"\0"))
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_large" and str(limit) in error["message"]


def test_an_event_over_lambdas_quota_is_refused_by_the_gateway_not_the_app(api):
    """The smallest body whose proxy event Lambda refuses: API Gateway's 413, and the body
    just below it is still the app's JSON 413 (so the app's limit sits below the quota)."""

    def event_size(n: int) -> int:
        headers = {
            "Host": [f"{urlsplit(api).netloc}"],
            "Accept-Encoding": ["identity"],
            "Content-Length": [str(n)],
            "Content-Type": ["application/json"],
        }
        event = proxy_event("POST", "/images", headers, _padded(payload, n), "127.0.0.1")
        return invocation_payload_bytes(event)

    payload = {"image_data": _b64(image_bytes("PNG", (64, 48)))}
    refused = LAMBDA_SYNC_PAYLOAD_BYTES - (event_size(6_000_000) - 6_000_000)
    assert event_size(refused) == LAMBDA_SYNC_PAYLOAD_BYTES
    assert refused > Limits().max_body_bytes
    status, body = _raw_post(api, _padded(payload, refused - 1))
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    status, body = _raw_post(api, _padded(payload, refused))
    assert status == 413 and json.loads(body) == {"message": "Request Too Long"}


def test_unknown_images_and_routes_are_json_404s(api):
    missing = requests.get(f"{api}/images/0123456789abcdef", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "image_not_found"
    route = requests.get(f"{api}/nowhere", timeout=10)
    assert route.status_code == 404 and route.json()["error"]["code"] == "route_not_found"
    bad_id = requests.get(f"{api}/images/..%2F..%2Fetc", timeout=10)
    assert bad_id.status_code in (400, 404) and "error" in bad_id.json()


def test_a_failed_upload_never_touches_other_records(api, stack):
    first = _post(api, image_data=_b64(gradient_jpeg())).json()["image_id"]
    before = requests.get(f"{api}/images/{first}", timeout=10).json()
    assert _post(api, image_data=_b64(b"junk")).status_code == 415
    after = requests.get(f"{api}/images/{first}", timeout=10).json()
    before.pop("url"), after.pop("url")
    assert before == after


def test_get_embedding_codes(api, stack):
    from pipeline.storage.embeddings_table import EmbeddingStore
    from pipeline.storage.images_table import ImageStore

    settings = stack.settings
    assert requests.get(f"{api}/embeddings/nope", timeout=10).status_code == 404

    image_id = _post(api, image_data=_b64(gradient_jpeg())).json()["image_id"]
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == [image_id]
    # ingest's request is outstanding: calls on the pending image send nothing more
    for _ in range(3):
        queued = requests.get(f"{api}/embeddings/{image_id}", timeout=10)
        assert queued.status_code == 202 and queued.json()["status"] == "queued"
    assert drain_messages(settings, settings.embed_queue) == []
    # once that request is older than the re-request interval, several calls (some at once)
    # send one priority message
    etag = ImageStore(settings).get(image_id)["etag"]
    ImageStore(settings).mark_embed_requested(image_id, etag, "2026-01-01T00:00:00.000Z")
    with ThreadPoolExecutor(4) as pool:
        codes = list(
            pool.map(
                lambda _: requests.get(f"{api}/embeddings/{image_id}", timeout=10).status_code,
                range(6),
            )
        )
    assert codes == [202] * 6
    assert drain_messages(settings, settings.embed_queue) == [
        {"image_id": image_id, "s3_key": f"uploads/{image_id}.jpg", "etag": etag, "priority": True}
    ]
    assert ImageStore(settings).get(image_id)["embed_requested_at"] > "2026-01-01T00:00:00.000Z"

    record = ImageStore(settings).get(image_id)
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    vector /= np.linalg.norm(vector)
    EmbeddingStore(settings).put(
        image_id, "color-layout-v1", vector, None, record["etag"], "2026-11-22T00:00:00.000Z"
    )
    ImageStore(settings).set_outcome(image_id, record["etag"], {"status": "embedded"})
    found = requests.get(f"{api}/embeddings/{image_id}", timeout=10)
    assert found.status_code == 200
    body = found.json()
    assert body["model_id"] == "color-layout-v1" and body["dim"] == 8
    np.testing.assert_array_equal(np.asarray(body["embedding"], np.float32), vector)

    aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key="uploads/broken.jpg", Body=b"junk"
    )
    EventPump(settings, make_ingest_handler(Ingestor.from_settings(settings))).drain()
    failed = requests.get(f"{api}/embeddings/broken", timeout=10)
    assert failed.status_code == 409 and "not_an_image" in failed.json()["error"]["message"]


def test_a_known_path_with_another_method_is_a_405_naming_the_allowed_ones(api):
    for method, path, allowed in (
        ("PUT", "/images/abc", "DELETE, GET"),
        ("PUT", "/images", "GET, POST"),
        ("POST", "/docs", "GET"),
        ("PATCH", "/similarity", "GET, POST"),
    ):
        response = requests.request(method, f"{api}{path}", timeout=10)
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_body_that_is_not_json_is_refused_in_the_error_shape(api):
    binary = requests.post(
        f"{api}/images", data=b"\xff\xfe{", timeout=10, headers={"Content-Type": "application/json"}
    )
    assert binary.status_code == 400 and binary.json()["error"]["code"] == "invalid_json"
    form = requests.post(
        f"{api}/images", data=b"{}", timeout=10, headers={"Content-Type": "multipart/form-data"}
    )
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "unsupported_media_type"


def _uploads(settings):
    listed = aws.client(settings, "s3").list_objects_v2(Bucket=settings.bucket, Prefix="uploads/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_retry_with_the_same_idempotency_key_stores_one_image(api, stack):
    settings = stack.settings
    payload = {"image_data": _b64(gradient_jpeg()), "prompt": "a fork"}
    key = {"Idempotency-Key": "upload-1"}
    first = requests.post(f"{api}/images", json=payload, headers=key, timeout=30)
    retry = requests.post(f"{api}/images", json=payload, headers=key, timeout=30)
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    image_id = first.json()["image_id"]
    assert _uploads(settings) == [f"uploads/{image_id}.jpg"]
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == [image_id]

    other = {"image_data": _b64(image_bytes("PNG"))}
    reused = requests.post(f"{api}/images", json=other, headers=key, timeout=30)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert len(_uploads(settings)) == 1

    # without a key the same body is a new upload, as before
    again = requests.post(f"{api}/images", json=payload, timeout=30)
    assert again.status_code == 200 and again.json()["image_id"] != image_id
    assert len(_uploads(settings)) == 2


def test_a_refused_request_is_not_remembered_under_its_idempotency_key(api, stack):
    key = {"Idempotency-Key": "upload-2"}
    junk = requests.post(
        f"{api}/images", json={"image_data": _b64(b"junk")}, headers=key, timeout=30
    )
    assert junk.status_code == 415
    fixed = requests.post(
        f"{api}/images", json={"image_data": _b64(gradient_jpeg())}, headers=key, timeout=30
    )
    assert fixed.status_code == 200
    assert _uploads(stack.settings) == [f"uploads/{fixed.json()['image_id']}.jpg"]
    empty = requests.post(
        f"{api}/images",
        json={"image_data": _b64(gradient_jpeg())},
        headers={"Idempotency-Key": ""},
        timeout=30,
    )
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "invalid_idempotency_key"


def test_the_handler_answers_the_event_api_gateway_sends(api, stack):
    """The real event shape (stage prefix in the request context, CloudFront headers, multi-value
    maps) reaches the same route the local adapter's events reach."""
    image_id = _post(api, image_data=_b64(image_bytes("PNG", (9, 7)))).json()["image_id"]
    handler = make_handler(Ingestor.from_settings(stack.settings))
    answer = handler(api_gateway_get_image(image_id), LocalLambdaContext("imgsim-api"))
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["width"] == 9
    missing = handler(api_gateway_get_image("nope"), LocalLambdaContext("imgsim-api"))
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error"]["code"] == "image_not_found"


def test_the_local_adapter_builds_the_event_api_gateway_sends():
    real = api_gateway_get_image("abc")
    local = proxy_event("GET", "/images/abc", {"Accept": ["application/json"]}, b"", "127.0.0.1")
    assert set(real) == set(local)
    for key in ("resource", "path", "httpMethod", "pathParameters", "body", "isBase64Encoded"):
        assert local[key] == real[key], key
    assert set(local["requestContext"]) <= set(real["requestContext"])


def test_the_local_gateway_runs_one_invocation_at_a_time_like_one_lambda_environment():
    """The API's resolver keeps the current event on the app (powertools), as any handler may
    keep state between lines: requests that arrive together must not run together, or one
    answers with another's event (seen: a gallery search refused for a missing image_id)."""
    current: dict[str, str] = {}

    def handler(event, context):
        current["path"] = event["path"]
        time.sleep(0.05)  # long enough for another request to arrive meanwhile
        return {"statusCode": 200, "body": json.dumps({"path": current["path"]})}

    server = LocalApi(handler).start()
    try:
        paths = [f"/p{n}" for n in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda p: requests.get(server.url + p, timeout=30).json()["path"], paths)
            )
    finally:
        server.stop()
    assert answers == paths
