"""The API's own spec: served, generated from the route table, honoured (schemathesis), and
the API-key option."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline.api.route_table import ROUTES
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.bedrock.server import BedrockEmulator
from tests.helpers import commit_shard, embedded_record


@pytest.fixture(scope="module")
def api(module_stack):
    settings = module_stack.settings
    rng = np.random.default_rng(1)
    commit_shard(
        settings,
        "a cat",
        "color-layout-v1",
        "run-1",
        {f"cat{i}": rng.standard_normal(8) for i in range(20)},
        embeddings_for={"cat0"},
    )
    embedded_record(settings, "cat0", "a cat")
    bedrock = BedrockEmulator().start()
    settings = settings.with_endpoint(bedrock.url, ("bedrock-runtime",))
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    yield server.url
    server.stop()
    bedrock.stop()


def test_spec_lists_every_route_of_the_table(api):
    spec = requests.get(f"{api}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    listed = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert listed == {(r.method, r.path) for r in ROUTES}
    similarity = spec["paths"]["/similarity"]["get"]
    assert {p["name"] for p in similarity["parameters"]} == {
        "image_id",
        "prompt",
        "k",
        "min_score",
        "cursor",
    }
    assert set(similarity["responses"]) == {"200", "400", "404", "409"}
    assert "security" not in similarity  # no keys configured


def test_docs_page_is_self_contained(api):
    page = requests.get(f"{api}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text and "/similarity" in page.text
    assert "cdn." not in page.text and "unpkg" not in page.text


def test_schemathesis_finds_no_server_errors_and_no_undocumented_behaviour(api, tmp_path):
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{api}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "-n",
            "30",
            "--seed",
            "7",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    passed = re.search(r"generated, (\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 100, result.stdout[-2000:]


def test_api_keys_guard_every_route_but_health_and_docs(module_stack):
    settings = replace(module_stack.settings, api_keys=("k-123", "k-456"))
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    try:
        url = server.url
        params = {"image_id": "cat0", "prompt": "a cat"}
        missing = requests.get(f"{url}/similarity", params=params, timeout=10)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "api_key_missing"
        wrong = requests.get(
            f"{url}/similarity", params=params, timeout=10, headers={"x-api-key": "nope"}
        )
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "api_key_refused"
        ok = requests.get(
            f"{url}/similarity", params=params, timeout=10, headers={"X-Api-Key": "k-456"}
        )
        assert ok.status_code == 200 and ok.json()["results"]
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        spec = requests.get(f"{url}/openapi.json", timeout=10).json()
        assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "x-api-key"
        assert set(spec["paths"]["/similarity"]["get"]["responses"]) >= {"401", "403"}
    finally:
        server.stop()
