"""GET /prompts (what the gallery can search) and GET / (the page itself) through the local
API against the moto stack, and the gallery's files in the Lambda code package."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline.aws_build.lambda_package import lambda_package
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from tests.helpers import commit_shard, embedded_image

GALLERY_FILES = {
    f"pipeline/api/gallery/{name}" for name in ("index.html", "gallery.js", "gallery.css")
}


@pytest.fixture
def api(stack):
    settings = replace(stack.settings, api_keys=("k1",))
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    yield server.url, settings
    server.stop()


def _record(settings, image_id, prompt, created_at, status="embedded"):
    record = replace(embedded_image(image_id, prompt, status), created_at=created_at)
    ImageStore(settings).put_version(record)


def test_prompts_lists_each_prompt_and_the_model_that_answers_it_with_its_newest_image(api):
    url, settings = api
    rng = np.random.default_rng(0)
    commit_shard(
        settings, "an owl", "m-a", "r1", {f"owl{i}": rng.standard_normal(4) for i in range(3)}
    )
    commit_shard(settings, "an owl", "m-b", "r1", {"owl0": rng.standard_normal(6)})
    commit_shard(settings, "a fox", "m-a", "r1", {"fox0": rng.standard_normal(4)})
    ManifestStore(settings).update("a bare prompt", "m-a", lambda m: m.with_shard("k", 0, ()))
    # mid-upgrade: the moth has shards of both models and its pointer names m-b, the only
    # model its lookups rank with; the hare's pointer names a model without shards
    commit_shard(
        settings, "a moth", "m-a", "r1", {f"moth{i}": rng.standard_normal(4) for i in range(2)}
    )
    commit_shard(settings, "a moth", "m-b", "r2", {"moth0": rng.standard_normal(6)})
    commit_shard(settings, "a hare", "m-a", "r1", {"hare0": rng.standard_normal(4)})
    active = ActiveModels(settings)
    assert active.pin("a moth", "m-a", "2026-11-01T00:00:00.000Z") == "m-a"
    assert active.switch("a moth", "m-a", "m-b", "2026-11-02T00:00:00.000Z")
    assert active.pin("a hare", "m-c", "2026-11-01T00:00:00.000Z") == "m-c"
    _record(settings, "moth0", "a moth", "2026-11-04T00:00:00.000Z")
    _record(settings, "hare0", "a hare", "2026-11-04T00:00:00.000Z")
    _record(settings, "owl0", "an owl", "2026-11-01T00:00:00.000Z")
    _record(settings, "owl1", "an owl", "2026-11-03T00:00:00.000Z")
    _record(settings, "owl2", "an owl", "2026-11-05T00:00:00.000Z", status="pending")
    _record(settings, "fox0", "a fox", "2026-11-02T00:00:00.000Z", status="failed")

    response = requests.get(f"{url}/prompts", headers={"x-api-key": "k1"}, timeout=30)
    assert response.status_code == 200, response.text
    newest = {"image_id": "owl1", "created_at": "2026-11-03T00:00:00.000Z"}
    # the fox has no embedded image left and the bare prompt no rows: nothing to search;
    # the owl has no pointer (both models answer, by the query image's own); the hare's
    # active model has no shards; the moth is answered by m-b only
    moth = {"image_id": "moth0", "created_at": "2026-11-04T00:00:00.000Z"}
    assert response.json() == {
        "prompts": [
            {"prompt": "a moth", "model_id": "m-b", "images": 1, "newest": moth},
            {"prompt": "an owl", "model_id": "m-a", "images": 3, "newest": newest},
            {"prompt": "an owl", "model_id": "m-b", "images": 1, "newest": newest},
        ]
    }


def test_prompts_needs_the_key_and_the_page_does_not(api):
    url, _ = api
    refused = requests.get(f"{url}/prompts", timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "api_key_missing"
    assert requests.get(f"{url}/prompts", headers={"x-api-key": "k1"}, timeout=30).json() == {
        "prompts": []
    }

    page = requests.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    # one document: its script and styles inline, nothing fetched from elsewhere
    assert "/*SCRIPT*/" not in page.text and "sessionStorage" in page.text
    assert 'src="http' not in page.text and "<script src" not in page.text

    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    assert "/prompts" in spec["paths"] and "/" not in spec["paths"]
    assert spec["paths"]["/prompts"]["get"]["security"] == [{"ApiKey": []}]


def test_the_lambda_code_package_ships_the_gallery(tmp_path):
    with zipfile.ZipFile(io.BytesIO(lambda_package())) as archive:
        assert set(archive.namelist()) >= GALLERY_FILES
        archive.extractall(tmp_path)
    # the page assembles from the unpacked package, as on Lambda
    script = "from pipeline.api import gallery; print(len(gallery.page()))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 5000


def test_prompts_answers_a_million_image_prompt_from_its_manifest(api, monkeypatch):
    """2,000 shards of 500 rows listed (none of them in the bucket: nothing reads a shard),
    300 newer uploads still pending: the count comes from the manifest, the newest image from
    the row it noted and one read of that image's record, not a query of the prompt's images."""
    from dataclasses import replace as changed

    from pipeline.storage.catalog_reads import CatalogReads
    from tests.integration.million import IMAGES, MODEL, PROMPT, million

    url, settings = api
    newest = ("shoe0999999", "2026-12-01T00:00:00.000Z")
    manifest = changed(million(tombstones=1000), newest=newest)
    ManifestStore(settings).update(PROMPT, MODEL, lambda _: manifest)
    _record(settings, newest[0], PROMPT, newest[1])
    for n in range(300):
        _record(
            settings, f"up{n:03d}", PROMPT, f"2026-12-02T00:00:{n % 60:02d}.{n:03d}Z", "pending"
        )

    def no_query(self, prompt):
        raise AssertionError(f"GET /prompts queried {prompt!r}'s images")

    monkeypatch.setattr(CatalogReads, "newest_embedded", no_query)
    answer = requests.get(f"{url}/prompts", headers={"x-api-key": "k1"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["prompts"] == [
        {
            "prompt": PROMPT,
            "model_id": MODEL,
            "images": IMAGES - 1000,
            "newest": {"image_id": newest[0], "created_at": newest[1]},
        }
    ]
    # the image it noted is deleted: the query finds the newest embedded one instead
    monkeypatch.undo()
    _record(settings, "older", PROMPT, "2026-11-30T00:00:00.000Z")
    ImageStore(settings).mark_deleted(newest[0], None, PROMPT, "2026-12-03T00:00:00.000Z", None)
    answer = requests.get(f"{url}/prompts", headers={"x-api-key": "k1"}, timeout=10)
    assert answer.json()["prompts"][0]["newest"]["image_id"] == "older"
