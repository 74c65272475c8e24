"""POST /embed, POST /similarity/pair and POST /similarity through the local API, with the
embedding model served by the SageMaker emulator's endpoint (the real inference code)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.embed_endpoint import ensure_endpoint
from tests.helpers import (
    commit_shard,
    embedded_records,
    gradient_jpeg,
    image_bytes,
)

MODEL = "clip-tiny-random-init-seed0"


@pytest.fixture(scope="module")
def api(module_stack, sagemaker_emulator, tiny_clip_artifact):
    settings = replace(
        module_stack.settings, embed_endpoint=f"embed-{uuid.uuid4().hex[:8]}"
    ).with_endpoint(sagemaker_emulator, ("sagemaker", "sagemaker-runtime"))
    s3 = aws.client(settings, "s3")
    s3.upload_file(str(tiny_clip_artifact), settings.bucket, "models/tiny.tar.gz")
    ensure_endpoint(settings, f"s3://{settings.bucket}/models/tiny.tar.gz")
    s3.put_object(Bucket=settings.bucket, Key="uploads/ref.jpg", Body=gradient_jpeg())
    rng = np.random.default_rng(3)
    commit_shard(
        settings,
        "a moth",
        MODEL,
        "run-1",
        {f"moth{i}": rng.standard_normal(32) for i in range(30)},
        embeddings_for={"moth0"},
    )
    # a lookup returns only images whose record says embedded
    embedded_records(settings, (f"moth{i}" for i in range(30)), "a moth")
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    yield server.url, settings
    server.stop()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_embed_returns_a_normalized_vector_with_its_model(api):
    url, settings = api
    body = requests.post(f"{url}/embed", json={"img": _b64(gradient_jpeg())}, timeout=60)
    assert body.status_code == 200, body.text
    vector = np.asarray(body.json()["embedding"])
    assert body.json()["model_id"] == MODEL and body.json()["dim"] == 32
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    by_url = requests.post(
        f"{url}/embed", json={"url": f"s3://{settings.bucket}/uploads/ref.jpg"}, timeout=60
    ).json()
    np.testing.assert_allclose(by_url["embedding"], vector, atol=1e-6)


def test_pair_maps_cosine_to_zero_one(api):
    url, _ = api
    same = requests.post(
        f"{url}/similarity/pair",
        timeout=60,
        json={"img_1": _b64(gradient_jpeg()), "img_2": _b64(gradient_jpeg())},
    ).json()
    assert same["similarity"] == pytest.approx(1.0, abs=1e-5)
    other = requests.post(
        f"{url}/similarity/pair",
        timeout=60,
        json={"img_1": _b64(gradient_jpeg()), "img_2": _b64(image_bytes("PNG", (50, 80)))},
    ).json()
    assert 0.0 <= other["similarity"] <= 1.0
    assert other["similarity"] == pytest.approx((other["cosine"] + 1) / 2)


def test_multi_image_query_returns_one_list_per_input(api):
    url, _ = api
    response = requests.post(
        f"{url}/similarity",
        timeout=60,
        json={
            "prompt": "A Moth",
            "k": 5,
            "image_ids": ["moth0"],
            "images": [_b64(gradient_jpeg()), _b64(image_bytes("PNG"))],
        },
    )
    assert response.status_code == 200, response.text
    queries = response.json()["queries"]
    assert [q.get("image_id", q.get("index")) for q in queries] == ["moth0", 0, 1]
    assert all(len(q["results"]) == 5 for q in queries)
    assert "moth0" not in [r["image_id"] for r in queries[0]["results"]]


@pytest.mark.parametrize(
    "path,payload,status,code",
    [
        ("/embed", {}, 400, "missing_img"),
        ("/embed", {"img": "!!"}, 400, "invalid_img"),
        ("/embed", {"img": _b64(b"GIF89a....")}, 415, "unsupported_format"),
        ("/embed", {"img": _b64(b"\xff\xd8\xff" + b"\x00" * 50)}, 400, "invalid_image"),
        ("/embed", {"url": "s3://another-bucket/x.jpg"}, 400, "invalid_url"),
        ("/embed", {"url": "https://example.com/x.jpg"}, 400, "invalid_url"),
        ("/embed", {"url": "file:///etc/passwd"}, 400, "invalid_url"),
        ("/similarity/pair", {"img_1": _b64(gradient_jpeg())}, 400, "missing_img_2"),
        ("/similarity", {"image_ids": ["moth0"]}, 400, "invalid_prompt"),
        ("/similarity", {"prompt": "a moth"}, 400, "invalid_query"),
        ("/similarity", {"prompt": "a moth", "image_ids": ["moth0"], "k": 0}, 400, "invalid_k"),
        ("/similarity", {"prompt": "a moth", "image_ids": ["nobody"]}, 404, "image_not_found"),
        (
            "/similarity",
            {"prompt": "no such prompt", "image_ids": ["moth0"]},
            404,
            "prompt_not_found",
        ),
    ],
)
def test_refusals(api, path, payload, status, code):
    url, _ = api
    response = requests.post(f"{url}{path}", json=payload, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_https_urls_refuse_private_and_loopback_targets_when_enabled(api):
    from pipeline.errors import ApiError
    from pipeline.lookup.image_inputs import from_url

    _, settings = api
    enabled = replace(settings, allow_https_urls=True)
    for target in (
        "https://127.0.0.1/x.jpg",
        "https://localhost/x.jpg",
        "https://10.0.0.8/x.jpg",
        "https://169.254.169.254/latest/meta-data",
    ):
        with pytest.raises(ApiError) as refused:
            from_url(target, "url", enabled, s3=None)
        assert refused.value.status == 400 and "non-public" in refused.value.message
