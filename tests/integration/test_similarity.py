"""GET /similarity through the local API adapter against moto: exact, cached, and clear when
it cannot answer."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline.embedding.compaction import Compactor
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi, proxy_event
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.images_table import ImageStore
from tests.helpers import commit_shard, embedded_image, embedded_record, embedded_records

MODEL = "clip-tiny-random-init-seed0"
PROMPT = "a red fox"


def _record(settings, image_id, status="embedded", error=None):
    embedded_record(settings, image_id, PROMPT, status=status, error=error)


def _records(settings, names):
    embedded_records(settings, names, PROMPT)


def _world(stack):
    """Three runs' shards for PROMPT (400 random vectors, dim 16) and their records."""
    settings = stack.settings
    rng = np.random.default_rng(0)
    vectors = {f"img{i:03d}": rng.standard_normal(16) for i in range(400)}
    vectors["img399"] = vectors["img010"]  # a tie
    names = sorted(vectors)
    for run, chunk in enumerate((names[:150], names[150:300], names[300:])):
        commit_shard(
            settings,
            PROMPT,
            MODEL,
            f"run-{run}",
            {n: vectors[n] for n in chunk},
            embeddings_for={"img010", "img020"},
        )
    _records(settings, names)  # every candidate is current: an Images record, embedded
    service = SimilarityService.from_settings(settings)
    api = LocalApi(make_handler(Ingestor.from_settings(settings), similarity=service)).start()
    return api, (settings, api.url, service, {k: v / np.linalg.norm(v) for k, v in vectors.items()})


@pytest.fixture
def world(stack):
    """A world of its own, for tests that change it."""
    api, value = _world(stack)
    yield value
    api.stop()


@pytest.fixture(scope="module")
def shared(module_stack):
    """One world for the tests that only read."""
    api, value = _world(module_stack)
    yield value
    api.stop()


def _reference(vectors, query_id, k):
    query = vectors[query_id].astype(np.float32)
    rows = [
        (float(np.asarray(v, np.float32) @ query), i) for i, v in vectors.items() if i != query_id
    ]
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [i for _, i in rows[:k]]


def _get(api, **params):
    return requests.get(f"{api}/similarity", params=params, timeout=30)


def test_results_equal_the_brute_force_reference(shared):
    _, api, _, vectors = shared
    response = _get(api, image_id="img010", prompt="  A Red  FOX", k=25)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["image_id"] for r in body["results"]] == _reference(vectors, "img010", 25)
    assert body["results"][0]["image_id"] == "img399"  # the tie with itself, X excluded
    assert body["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-6)
    assert body["model_id"] == MODEL and body["candidates"] == 399 and body["prompt"] == PROMPT
    assert all(
        r["url"].startswith("http") and "X-Amz-Signature=" in r["url"] for r in body["results"]
    )
    scores = [r["similarity"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_cursor_pages_through_the_whole_ranking(shared):
    _, api, _, vectors = shared
    seen, cursor = [], None
    while True:
        params = {"image_id": "img020", "prompt": PROMPT, "k": 100}
        if cursor:
            params["cursor"] = cursor
        body = _get(api, **params).json()
        seen += [r["image_id"] for r in body["results"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == _reference(vectors, "img020", 1000)


def test_min_score_filters(shared):
    _, api, _, vectors = shared
    body = _get(api, image_id="img010", prompt=PROMPT, k=100, min_score=0.5).json()
    query = vectors["img010"]
    expected = [
        i
        for i in _reference(vectors, "img010", 1000)
        if float(np.float32(vectors[i]) @ np.float32(query)) >= 0.5
    ]
    assert [r["image_id"] for r in body["results"]] == expected[:100]
    assert all(r["similarity"] >= 0.5 for r in body["results"])


@pytest.mark.parametrize(
    "params,status,code",
    [
        ({"prompt": PROMPT}, 400, "invalid_image_id"),
        ({"image_id": "img010"}, 400, "invalid_prompt"),
        ({"image_id": "img010", "prompt": "   "}, 400, "invalid_prompt"),
        ({"image_id": "img010", "prompt": PROMPT, "k": "0"}, 400, "invalid_k"),
        ({"image_id": "img010", "prompt": PROMPT, "k": "101"}, 400, "invalid_k"),
        ({"image_id": "img010", "prompt": PROMPT, "k": "ten"}, 400, "invalid_k"),
        ({"image_id": "img010", "prompt": PROMPT, "min_score": "2"}, 400, "invalid_min_score"),
        ({"image_id": "img010", "prompt": PROMPT, "min_score": "x"}, 400, "invalid_min_score"),
        ({"image_id": "img010", "prompt": PROMPT, "cursor": "@@@"}, 400, "invalid_cursor"),
        ({"image_id": "nobody", "prompt": PROMPT}, 404, "image_not_found"),
        ({"image_id": "img010", "prompt": "an unknown prompt"}, 404, "prompt_not_found"),
    ],
)
def test_refusals(shared, params, status, code):
    _, api, _, _ = shared
    response = _get(api, **params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_an_image_not_embedded_yet_is_a_409_with_its_status(world):
    settings, api, _, _ = world
    _record(settings, "fresh", status="pending")
    _record(settings, "broken", status="failed", error="not_an_image: junk")
    pending = _get(api, image_id="fresh", prompt=PROMPT)
    assert pending.status_code == 409 and "pending" in pending.json()["error"]["message"]
    failed = _get(api, image_id="broken", prompt=PROMPT)
    assert failed.status_code == 409 and "not_an_image" in failed.json()["error"]["message"]


def test_cache_reloads_only_what_changed(world):
    settings, api, service, vectors = world
    assert _get(api, image_id="img010", prompt=PROMPT).status_code == 200
    assert service.cache.shard_reads == 3
    assert _get(api, image_id="img020", prompt=PROMPT).status_code == 200
    assert service.cache.shard_reads == 3  # warm: same manifest version, nothing read

    # a new run adds a shard with a vector identical to the query: read just that one
    commit_shard(settings, PROMPT, MODEL, "run-3", {"newcomer": vectors["img010"]})
    _record(settings, "newcomer")
    body = _get(api, image_id="img010", prompt=PROMPT, k=2).json()
    assert service.cache.shard_reads == 4
    assert sorted(r["image_id"] for r in body["results"]) == ["img399", "newcomer"]

    # compaction swaps four shards for one: read just the new file, same answers
    before = _get(api, image_id="img020", prompt=PROMPT, k=50).json()["results"]
    Compactor(settings).compact(PROMPT, MODEL, "compact-1", max_rows=1000)
    after = _get(api, image_id="img020", prompt=PROMPT, k=50).json()["results"]
    assert service.cache.shard_reads == 5
    assert [r["image_id"] for r in after] == [r["image_id"] for r in before]


def test_vectors_of_another_model_are_never_compared(world):
    settings, api, _, vectors = world
    commit_shard(settings, PROMPT, "color-layout-v1", "other", {"colourful": np.ones(16)})
    response = _get(api, image_id="img010", prompt=PROMPT, k=100)
    assert response.status_code == 200, response.text
    body = response.json()
    # the ranking of the query's own model, complete, and nothing of the other model in it
    assert [r["image_id"] for r in body["results"]] == _reference(vectors, "img010", 100)
    assert body["model_id"] == MODEL and body["candidates"] == 399
    assert "colourful" not in [r["image_id"] for r in body["results"]]


def test_the_query_path_loads_neither_torch_nor_pillow(shared):
    """Run one lookup in a fresh interpreter, through the deployed entry point."""
    import json
    import os
    import subprocess
    import sys

    settings, _, _, _ = shared
    script = (
        "import json, sys\n"
        "from lambdas.api.handler import handler\n"
        "from pipeline.local.lambda_context import LocalLambdaContext\n"
        "from pipeline.local.api_gateway import proxy_event\n"
        "event = proxy_event('GET', '/similarity?image_id=img010&prompt=a+red+fox&k=3', {},"
        " b'', '127.0.0.1')\n"
        "out = handler(event, LocalLambdaContext('similarity'))\n"
        "print(json.dumps({'status': out['statusCode'], 'heavy': sorted(m for m in"
        " ('torch', 'PIL', 'transformers', 'onnxruntime') if m in sys.modules)}))\n"
    )
    env = {**os.environ, **settings.to_env()}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": 200, "heavy": []}


def test_lookups_publish_latency_and_candidate_cache_metrics(shared, capsys):
    """The handler's EMF lines on stdout: a cold lookup reads the shards, a warm one hits."""
    settings, _, _, _ = shared
    service = SimilarityService.from_settings(settings)  # a cold container
    handler = make_handler(Ingestor.from_settings(settings), similarity=service)
    path = "/similarity?image_id=img010&prompt=a+red+fox&k=3"
    event = proxy_event("GET", path, {}, b"", "127.0.0.1")
    capsys.readouterr()
    for _ in range(2):
        assert handler(event, LocalLambdaContext("imgsim-api"))["statusCode"] == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    cold, warm = lines
    [directive] = cold["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "imgsim" and cold["service"] == "imgsim-api"
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "LookupLatency": "Milliseconds",
        "CandidateCacheHits": "Count",
        "ShardReads": "Count",
    }
    assert (cold["ShardReads"], cold["CandidateCacheHits"]) == ([3], [0])  # EMF: value lists
    assert (warm["ShardReads"], warm["CandidateCacheHits"]) == ([0], [1])
    assert cold["LookupLatency"][0] > 0 and warm["LookupLatency"][0] > 0


def _replace(settings, image_id, status="failed", prompt=PROMPT, error="not_an_image: text"):
    """What ingest records when an embedded image's object is overwritten (a new ETag)."""
    record = embedded_image(image_id, prompt, status, error if status == "failed" else None)
    written = ImageStore(settings).put_version(
        replace(
            record, created_at="2026-11-02T00:00:00.000Z", etag="etag-new-" + image_id, size_bytes=5
        )
    )
    assert written.written


def _pages(api, k, **params):
    seen, cursor = [], None
    while True:
        body = _get(api, k=k, **params, **({"cursor": cursor} if cursor else {})).json()
        seen.append([r["image_id"] for r in body["results"]])
        cursor = body["next_cursor"]
        if not cursor:
            return seen


def test_a_replaced_image_is_never_returned_and_pages_stay_full(world):
    settings, api, _, vectors = world
    top = _reference(vectors, "img010", 20)
    stale = {top[0], top[3], top[4], top[5]}  # img399, the tie, and a run of three
    for image_id in (top[0], top[3], top[4]):
        _replace(settings, image_id)  # overwritten with a text file: failed
    _replace(settings, top[5], status="pending", error=None)  # a new version, not embedded yet
    _replace(settings, top[6], status="embedded", prompt="a grey wolf")  # embedded elsewhere
    stale.add(top[6])
    expected = [i for i in _reference(vectors, "img010", 1000) if i not in stale]
    body = _get(api, image_id="img010", prompt=PROMPT, k=10).json()
    assert [r["image_id"] for r in body["results"]] == expected[:10]
    pages = _pages(api, 7, image_id="img010", prompt=PROMPT)
    assert [i for page in pages for i in page] == expected
    assert all(len(page) == 7 for page in pages[:-1]) and 0 < len(pages[-1]) <= 7


def test_a_row_of_an_earlier_version_is_never_returned_even_when_the_image_is_embedded(world):
    settings, api, _, vectors = world
    replaced = _reference(vectors, "img010", 10)[1]

    def shown() -> list[str]:
        body = _get(api, image_id="img010", prompt=PROMPT, k=10).json()
        return [r["image_id"] for r in body["results"]]

    # re-uploaded and embedded again: its record names the new version, whose row is not in
    # the shards yet; the old version's row (still there) must not stand in for it
    _replace(settings, replaced, status="embedded")
    assert replaced not in shown()
    # the new version's row arrives: shown with its new vector (a copy of the query's)
    commit_shard(
        settings,
        PROMPT,
        MODEL,
        "run-new",
        {replaced: vectors["img010"]},
        etags={replaced: "etag-new-" + replaced},
    )
    assert shown()[:2] == sorted(["img399", replaced])  # both tie at 1.0 with the query
    # a run that embedded the old version commits last (out of order): its row is the
    # later one, and still never shown
    commit_shard(settings, PROMPT, MODEL, "run-stale", {replaced: vectors[replaced]})
    assert replaced not in shown()


def test_a_cursor_pages_on_across_new_shards_and_compaction(world):
    settings, api, _, vectors = world
    query = dict(image_id="img020", prompt=PROMPT, k=40)
    first = _get(api, **query).json()
    page1 = [r["image_id"] for r in first["results"]]
    assert page1 == _reference(vectors, "img020", 40)

    # a run adds rows above, inside and below the rest of the ranking, then a compaction
    # rewrites every row into one shard in another order
    rng = np.random.default_rng(7)
    added = {f"new{i:02d}": rng.standard_normal(16) for i in range(30)}
    added["new_top"] = vectors["img020"]
    commit_shard(settings, PROMPT, MODEL, "run-late", added)
    _records(settings, sorted(added))
    second = _get(api, **query, cursor=first["next_cursor"]).json()
    Compactor(settings).compact(PROMPT, MODEL, "compact-late", max_rows=1000)
    rest = [r["image_id"] for r in second["results"]]
    cursor = second["next_cursor"]
    while cursor:
        body = _get(api, **query, cursor=cursor).json()
        rest += [r["image_id"] for r in body["results"]]
        cursor = body["next_cursor"]

    both = {**vectors, **{k: v / np.linalg.norm(v) for k, v in added.items()}}
    full = _reference(both, "img020", 1000)
    last = full.index(page1[-1])
    assert rest == full[last + 1 :]  # exactly what follows page 1's last row: no repeat, no skip
    assert set(page1 + rest) >= set(vectors) - {"img020"}


def test_a_cursor_of_another_query_or_tampered_is_a_400(shared):
    _, api, _, _ = shared
    cursor = _get(api, image_id="img010", prompt=PROMPT, k=5).json()["next_cursor"]
    assert _get(api, image_id="img010", prompt=PROMPT, k=5, cursor=cursor).status_code == 200
    for params in (
        {"image_id": "img020", "prompt": PROMPT, "cursor": cursor},
        {"image_id": "img010", "prompt": PROMPT, "min_score": "0.1", "cursor": cursor},
        {"image_id": "img010", "prompt": PROMPT, "cursor": cursor[:-3] + "AAA"},
        {"image_id": "img010", "prompt": PROMPT, "cursor": "eyJvIjo1LCJ2IjoxfQ"},  # {"o":5,"v":1}
    ):
        response = _get(api, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_cursor"
