"""`make demo`: drop the shipped sample photos into uploads/ and print their records as the
API returns them; then rank the views of the shipped photos (samples/photos: crops, flips,
rotations, grey and hue-shifted copies of six real photos) against one of them, so a person
sees the other views of its subject first and unrelated subjects last."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import requests

from pipeline import aws
from pipeline.aws_build import REPO_ROOT
from pipeline.settings import Settings

SAMPLES = REPO_ROOT / "samples"
PHOTOS = SAMPLES / "photos"
PHOTO_PROMPT = "sample photos"
QUERY_PHOTO = "chelsea-original"
# six of the twelve subjects (48 images): enough to see the ranking, quick to embed
DEMO_SUBJECTS = ("chelsea", "coffee", "rocket", "astronaut", "retina", "brick")
MODEL_NOTES = {
    "efficientnet-lite0": "ImageNet EfficientNet-Lite0 features: a real pretrained visual "
    "model, not CLIP",
    "color-layout-v1": "a colour descriptor, not CLIP",
}


def model_note(model_id: str) -> str:
    """What the model is, in words (never presents a stand-in as CLIP)."""
    for prefix, note in MODEL_NOTES.items():
        if model_id.startswith(prefix):
            return f"{model_id} ({note})"
    return model_id


def sample_prompts() -> dict[str, str]:
    return json.loads((SAMPLES / "prompts.json").read_text())


def drop_samples(settings: Settings) -> list[str]:
    """Put each sample photo into uploads/ with the AWS SDK, as a user would; return ids."""
    s3 = aws.client(settings, "s3")
    ids = []
    for name, prompt in sample_prompts().items():
        path = SAMPLES / name
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"{settings.upload_prefix}{name}",
            Body=path.read_bytes(),
            Metadata={"prompt": prompt},
        )
        ids.append(Path(name).stem)
    # a file that is not an image: recorded as failed, with the reason
    s3.put_object(
        Bucket=settings.bucket,
        Key=f"{settings.upload_prefix}not-a-photo.jpg",
        Body=b"this is a text file, not a photo",
    )
    ids.append("not-a-photo")
    return ids


def drop_photos(
    settings: Settings,
    subjects: tuple[str, ...] = DEMO_SUBJECTS,
    prompt: str = PHOTO_PROMPT,
    id_prefix: str = "",
) -> list[str]:
    """Every view of `subjects` in samples/photos under one prompt; image ids
    `<id_prefix><subject>-<view>`."""
    s3 = aws.client(settings, "s3")
    ids = []
    for path in sorted(p for s in subjects for p in (PHOTOS / s).glob("*.jpg")):
        image_id = f"{id_prefix}{path.parent.name}-{path.stem}"
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"{settings.upload_prefix}{image_id}.jpg",
            Body=path.read_bytes(),
            Metadata={"prompt": prompt},
        )
        ids.append(image_id)
    return ids


def post_sample(api_url: str) -> str:
    """Upload one sample through POST /images, as an API client would."""
    data = base64.b64encode((SAMPLES / "coffee.jpg").read_bytes()).decode()
    response = requests.post(
        f"{api_url}/images", json={"image_data": data, "prompt": "A cup of  Coffee"}, timeout=30
    )
    response.raise_for_status()
    return response.json()["image_id"]


def wait_for_record(api_url: str, image_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{api_url}/images/{image_id}", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response.json()
        time.sleep(0.25)


def await_embedding(
    api_url: str, image_ids: list[str], timeout: float = 300
) -> dict[str, dict[str, Any]]:
    """Poll the records until each exists and none is pending (the embed DAG runs on the queue's
    messages)."""
    deadline = time.monotonic() + timeout
    while True:
        records = {i: requests.get(f"{api_url}/images/{i}", timeout=10).json() for i in image_ids}
        # An id with no record yet is still on its way through the ingest queue.
        pending = [i for i, r in records.items() if r.get("status") in ("pending", None)]
        if not pending or time.monotonic() > deadline:
            return records
        time.sleep(2)


def run(settings: Settings, api_url: str, airflow_url: str | None) -> list[dict[str, Any]]:
    started = time.monotonic()
    ids = [*drop_samples(settings), post_sample(api_url)]
    photo_ids = drop_photos(settings)
    records = [wait_for_record(api_url, image_id) for image_id in ids]
    for record in records:
        record["url"] = (record.get("url") or "")[:80] + "..."
        print(json.dumps(record, indent=2, sort_keys=True))
    print(
        f"{len(records)} uploads recorded in {time.monotonic() - started:.1f} s "
        f"({sum(r.get('status') == 'pending' for r in records)} pending embedding, "
        f"{sum(r.get('status') == 'failed' for r in records)} refused with a reason); "
        f"and {len(photo_ids)} views of {len({i.split('-')[0] for i in photo_ids})} photos "
        f"under the prompt {PHOTO_PROMPT!r}"
    )
    if not airflow_url:
        print(where_to_look(api_url, airflow_url))
        return records
    print("waiting for the embed_images DAG (triggered by the embed queue) to embed them ...")
    final = await_embedding(api_url, ids)
    photos = await_embedding(api_url, photo_ids, timeout=600)
    model_id = ""
    for image_id, record in final.items():
        line = f"  {image_id:34s} {record.get('status'):9s}"
        if record.get("status") == "embedded":
            vector = requests.get(f"{api_url}/embeddings/{image_id}", timeout=10).json()
            line += f" {vector['model_id']} dim={vector['dim']}"
            model_id = vector["model_id"]
        elif record.get("error"):
            line += f" {record['error']}"
        print(line)
    embedded = sum(r.get("status") == "embedded" for r in [*final.values(), *photos.values()])
    print(
        f"{embedded} of {len(final) + len(photos)} images embedded "
        f"{time.monotonic() - started:.1f} s after upload, by {model_note(model_id)}"
    )
    generated = run_campaign(settings, airflow_url, api_url)
    lookup(api_url, "coffee", "a cup of coffee")
    lookup_views(api_url, QUERY_PHOTO, PHOTO_PROMPT)
    print(where_to_look(api_url, airflow_url))
    return [*final.values(), *generated]


def where_to_look(api_url: str, airflow_url: str | None) -> str:
    """The demo's last lines: the three places a person looks at what just ran."""
    airflow = airflow_url or "not started (IMGSIM_LOCAL_AIRFLOW=0)"
    return "\n".join(
        [
            f"gallery (search similar images in a browser): {api_url}/",
            f"Airflow UI (every DAG run of the pipeline):   {airflow}",
            f"API explorer (try every route):               {api_url}/docs",
        ]
    )


def run_campaign(
    settings: Settings,
    airflow_url: str,
    api_url: str,
    dag_id: str = "generate_demo",
    timeout: float = 300,
) -> list[dict[str, Any]]:
    """Trigger campaigns/demo.yaml through Airflow's REST API and wait for its images to be
    embedded (they flow through the same ingest and embed path as uploads)."""
    started = time.monotonic()
    runs = f"{airflow_url}/api/v2/dags/{dag_id}/dagRuns"
    requests.patch(f"{airflow_url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=30)
    run_id = requests.post(runs, json={"logical_date": None}, timeout=30).json()["dag_run_id"]
    print(f"campaign {dag_id}: run {run_id} triggered ...")
    state = "queued"
    while state not in ("success", "failed") and time.monotonic() - started < timeout:
        time.sleep(2)
        state = requests.get(f"{runs}/{run_id}", timeout=30).json()["state"]
    summary = requests.get(
        f"{runs}/{run_id}/taskInstances/summary/xcomEntries/return_value", timeout=30
    )
    report = summary.json().get("value", {}) if summary.ok else {}
    report = json.loads(report) if isinstance(report, str) else report
    print(
        f"campaign {dag_id}: {state} in {time.monotonic() - started:.0f} s; "
        f"estimate {report.get('estimate')}; generated {report.get('generated')}, "
        f"refused {report.get('refused')}, failed {report.get('failed')}"
    )
    pages = (
        aws.client(settings, "s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=settings.bucket, Prefix=settings.generated_prefix)
    )
    ids = [Path(o["Key"]).stem for page in pages for o in page.get("Contents", [])]
    final = await_embedding(api_url, ids, timeout=timeout)
    print(
        f"{sum(r.get('status') == 'embedded' for r in final.values())} of {len(final)} "
        "generated images embedded (the painter is the Bedrock stand-in)"
    )
    return list(final.values())


def _similarity(
    api_url: str, image_id: str, prompt: str, k: int, timeout: float
) -> tuple[bool, dict[str, Any]]:
    """GET /similarity, its request line and status printed, and the API's error when refused."""
    response = requests.get(
        f"{api_url}/similarity",
        timeout=timeout,
        params={"image_id": image_id, "prompt": prompt, "k": str(k)},
    )
    body = response.json()
    print(
        f"GET /similarity?image_id={image_id}&prompt={prompt.replace(' ', '+')}&k={k} "
        f"-> {response.status_code}"
    )
    if response.status_code != 200:
        print(f"  {body['error']['code']}: {body['error']['message']}")
    return response.status_code == 200, body


def lookup(api_url: str, image_id: str, prompt: str) -> dict[str, Any]:
    """One similarity lookup, printed as a user would read it."""
    ok, body = _similarity(api_url, image_id, prompt, k=10, timeout=30)
    if not ok:
        return body
    print(
        f"  {body['candidates']} candidates for prompt {body['prompt']!r} "
        f"(model {body['model_id']}); most like {image_id}:"
    )
    for rank, result in enumerate(body["results"], 1):
        print(f"  {rank:2d}. {result['image_id']:34s} similarity {result['similarity']:.4f}")
    return body


def view_lines(
    query: str, results: list[dict[str, Any]], head: int = 10, tail: int = 3
) -> list[str]:
    """The ranking as a person reads it: the best `head` and the worst `tail`, each marked
    with whether it shows the query's subject (ids are `<subject>-<view>`)."""
    subject = query.split("-")[0]
    lines = []
    for rank, result in enumerate(results, 1):
        if head < rank <= len(results) - tail:
            if rank == head + 1:
                lines.append(f"  ... {len(results) - head - tail} more ...")
            continue
        same = "same subject" if result["image_id"].split("-")[0] == subject else ""
        lines.append(
            f"  {rank:2d}. {result['image_id']:28s} similarity {result['similarity']:.4f}  {same}"
        )
    return lines


def lookup_views(api_url: str, query: str, prompt: str) -> dict[str, Any]:
    """Rank every view of the shipped photos against one: the other views of its subject
    should come first, and unrelated subjects last."""
    ok, body = _similarity(api_url, query, prompt, k=100, timeout=60)
    if not ok:
        return body
    subject = query.split("-")[0]
    results = body["results"]
    views = sum(r["image_id"].split("-")[0] == subject for r in results)
    first = sum(r["image_id"].split("-")[0] == subject for r in results[:views])
    print(
        f"  {body['candidates']} candidates, ranked by {model_note(body['model_id'])}; "
        f"{first} of the {views} other views of {subject} rank first:"
    )
    print("\n".join(view_lines(query, results)))
    return body
