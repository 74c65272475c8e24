"""Client mistakes are 4xx in the JSON error shape, never 5xx: the inputs that once answered
500 (deep JSON, an empty or over-long s3 key, an over-long host name, a non-ASCII API key), and
generated bodies, parameters and headers sent to every route (hypothesis, bounded per route)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as run_settings
from hypothesis import strategies as st

from lambdas.api.handler import make_handler
from pipeline import aws
from pipeline.errors import ApiError
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi, proxy_event
from pipeline.local.bedrock.server import BedrockEmulator
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.lookup.image_inputs import HttpsFetcher, from_url
from tests.helpers import commit_shard, embedded_record, gradient_jpeg

KEY = "k-fuzz"
MODEL = "clip-tiny-random-init-seed0"
JPEG = base64.b64encode(gradient_jpeg()).decode()
BOUNDED = run_settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def api(module_stack, sagemaker_emulator, tiny_clip_artifact):
    """The API with keys, https:// inputs enabled, the Bedrock emulator and an embedding
    endpoint, over a prompt with an embedded image (moth0)."""
    bedrock = BedrockEmulator().start()
    settings = (
        replace(
            module_stack.settings,
            api_keys=(KEY,),
            allow_https_urls=True,
            embed_endpoint=f"embed-{uuid.uuid4().hex[:8]}",
        )
        .with_endpoint(sagemaker_emulator, ("sagemaker", "sagemaker-runtime"))
        .with_endpoint(bedrock.url, ("bedrock-runtime",))
    )
    s3 = aws.client(settings, "s3")
    s3.upload_file(str(tiny_clip_artifact), settings.bucket, "models/tiny.tar.gz")
    ensure_endpoint(settings, f"s3://{settings.bucket}/models/tiny.tar.gz")
    rng = np.random.default_rng(5)
    vectors = {f"moth{i}": rng.standard_normal(32) for i in range(5)}
    commit_shard(settings, "a moth", MODEL, "run-1", vectors, embeddings_for={"moth0"})
    embedded_record(settings, "moth0", "a moth")
    handler = make_handler(Ingestor.from_settings(settings))
    server = LocalApi(handler).start()
    yield server.url, settings, handler
    server.stop()
    bedrock.stop()


def assert_refusal_shape(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]


def _send(url: str, method: str, path: str, **options: Any) -> requests.Response:
    headers = {"x-api-key": KEY, **options.pop("headers", {})}
    return requests.request(method, f"{url}{path}", headers=headers, timeout=60, **options)


def deep(depth: int, opener: str = "[", closer: str = "]", inner: str = "") -> str:
    return opener * depth + inner + closer * depth


# ---------------------------------------------------------------- the inputs that were 500s
@pytest.mark.parametrize(
    "path,body",
    [
        ("/images", deep(50_000)),
        ("/images", '{"image_data":' + deep(50_000) + "}"),
        ("/embed", deep(50_000, '{"img":', "}", "1")),
        ("/similarity/pair", '{"img_1":' + deep(50_000) + "}"),
        ("/similarity", '{"prompt":"a moth","image_ids":' + deep(50_000) + "}"),
    ],
)
def test_deeply_nested_json_bodies_are_400s(api, path, body):
    url, _, _ = api
    response = _send(url, "POST", path, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["code"].startswith("invalid_")


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(deep(3000).encode()).decode(),
        base64.urlsafe_b64encode(b'{"o":' + deep(3000).encode() + b"}").decode(),
        base64.urlsafe_b64encode(b'{"o":true}').decode(),
        "A" * 5000,
    ],
)
def test_a_forged_cursor_is_a_400(api, cursor):
    url, _, _ = api
    params = {"image_id": "moth0", "prompt": "a moth", "cursor": cursor}
    response = _send(url, "GET", "/similarity", params=params)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "field_url",
    [
        "s3://{bucket}/",
        "s3://{bucket}/" + "k" * 100_000,
        "s3://{bucket}",
        "s3://user@{bucket}/uploads/x.jpg",
        "s3://{bucket}/\udcff",
        "https://" + "a" * 300 + "/x.png",
        "https://" + ".".join(["a" * 60] * 5) + "/x.png",
        "https://127.0.0.1:8443\\@8.8.8.8/x.png",
    ],
)
def test_odd_urls_are_400s(api, field_url):
    url, settings, _ = api
    target = field_url.format(bucket=settings.bucket)
    response = _send(url, "POST", "/embed", json={"url": target})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["code"] == "invalid_url"


@pytest.mark.parametrize("given", ["k-fuzzé", "ключ", "k-\x00", "\udcff", "\ud800"])
def test_a_non_ascii_api_key_is_a_403(api, given):
    _, _, handler = api
    event = proxy_event("GET", "/images/moth0", {"x-api-key": [given]}, b"", "127.0.0.1")
    result = handler(event, LocalLambdaContext("imgsim-api-test"))
    assert result["statusCode"] == 403, result["body"][:300]
    assert json.loads(result["body"])["error"]["code"] == "api_key_refused"


def test_a_non_ascii_api_key_byte_over_http_is_a_403(api):
    url, _, _ = api
    response = requests.get(f"{url}/images/moth0", headers={"x-api-key": b"k-\xe9"}, timeout=10)
    assert response.status_code == 403 and response.json()["error"]["code"] == "api_key_refused"


# ---------------------------------------------------------------- generated inputs
# Text as JSON carries it: non-ASCII, lone surrogates (as \\u escapes), and control characters.
odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\udcff", "\x00", "é", "../..", "%00", "a" * 70_000, JPEG]),
    st.integers(0, 300_000).map(lambda n: "x" * n),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def odd_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["s3://", "https://", "http://", "file://", "", "S3://"]))
    host = draw(
        st.sampled_from(["{bucket}", "{bucket}/", "127.0.0.1", "[::1]", "user@h", "a\\@b", ""])
        | st.text(max_size=30)
        | st.integers(0, 400).map(lambda n: "h" * n)
    )
    rest = draw(st.text(max_size=30) | st.integers(0, 120_000).map(lambda n: "/" + "k" * n))
    return scheme + host + rest


def field_values(*extra: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(json_values, *extra)


bodies = {
    "/images": st.fixed_dictionaries(
        {}, optional={"image_data": field_values(st.just(JPEG)), "prompt": field_values()}
    ),
    "/embed": st.fixed_dictionaries(
        {}, optional={"img": field_values(st.just(JPEG)), "url": field_values(odd_urls())}
    ),
    "/similarity/pair": st.fixed_dictionaries(
        {},
        optional={
            "img_1": field_values(st.just(JPEG)),
            "url_1": field_values(odd_urls()),
            "img_2": field_values(st.just(JPEG)),
            "url_2": field_values(odd_urls()),
        },
    ),
    "/similarity": st.fixed_dictionaries(
        {},
        optional={
            "prompt": field_values(st.just("a moth")),
            "k": field_values(st.integers(-5, 200)),
            "images": field_values(st.lists(st.just(JPEG), max_size=10)),
            "image_ids": field_values(st.lists(st.sampled_from(["moth0", "moth1", "x"]))),
        },
    ),
}
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(1, 60_000).map(deep),
    st.integers(1, 60_000).map(lambda n: deep(n, '{"a":', "}", "1")),
    st.sampled_from(["", "null", "[]", '"x"', "1e999999", '{"a":1,"a":2}', "\ufeff{}"]),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded"]
)


@pytest.mark.parametrize("path", sorted(bodies))
@BOUNDED
@given(data=st.data())
def test_generated_bodies_never_answer_5xx(api, path, data):
    url, settings, _ = api
    if data.draw(st.booleans(), label="raw"):
        body: bytes | str = data.draw(raw_bodies, label="body")
        headers = {"Content-Type": data.draw(content_types, label="content-type")}
    else:
        fields = data.draw(bodies[path], label="fields")
        body = json.dumps(fields).replace("{bucket}", settings.bucket)
        headers = {"Content-Type": "application/json"}
    assert_refusal_shape(_send(url, "POST", path, data=body, headers=headers))


# query and path values: what a URL carries (no lone surrogates), up to API Gateway's sizes
url_text = st.one_of(
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    st.sampled_from(["", "moth0", "a moth", "0", "-1", "1e9", "nan", "é", "%", "\x00"]),
    st.integers(0, 8000).map(lambda n: "q" * n),
    st.integers(1, 2500).map(lambda n: base64.urlsafe_b64encode(deep(n).encode()).decode()),
)
queries = {
    "/images": ("prompt",),
    "/similarity": ("image_id", "prompt", "k", "min_score", "cursor"),
}
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=300,
).map(str.strip)  # what a client can send: no leading or trailing whitespace


@pytest.mark.parametrize(
    "path", ["/images", "/similarity", "/images/{}", "/embeddings/{}", "/health"]
)
@BOUNDED
@given(data=st.data())
def test_generated_parameters_and_headers_never_answer_5xx(api, path, data):
    url, _, _ = api
    names = queries.get(path, ())
    params = {
        name: data.draw(url_text, label=name)
        for name in names
        if data.draw(st.booleans(), label=f"send {name}")
    }
    headers = {}
    if data.draw(st.booleans(), label="odd key"):
        headers["x-api-key"] = data.draw(header_values, label="x-api-key")
    if data.draw(st.booleans(), label="idempotency key"):
        headers["Idempotency-Key"] = data.draw(header_values, label="Idempotency-Key")
    if "{}" in path:
        segment = requests.utils.quote(data.draw(url_text, label="id"), safe="")
        path = path.format(segment or "x")
    assert_refusal_shape(_send(url, "GET", path, params=params, headers=headers))


@BOUNDED
@given(url=odd_urls(), answers=st.sampled_from([["10.0.0.1"], ["127.0.0.1"], [], ["fe80::1"]]))
def test_generated_url_inputs_are_fetched_or_refused_with_an_api_error(api, url, answers):
    """from_url itself, with a resolver that answers only non-public addresses: whatever the
    text, the answer is an ApiError (a 4xx), and nothing is connected to."""
    _, settings, _ = api
    fetcher = HttpsFetcher(resolve=lambda _host, _port: answers)
    s3 = aws.client(settings, "s3")
    with pytest.raises(ApiError) as refused:
        from_url(url.replace("{bucket}", settings.bucket), "url", settings, s3, fetcher)
    assert 400 <= refused.value.status < 500
