"""The imgsim CLI against a stack on the session's moto server and the local API (the real
handler, the SageMaker emulator's endpoint for images embedded on the fly): the tables, the
--json output and the exit codes a script relies on."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from lambdas.api.handler import make_handler
from pipeline import aws
from pipeline.cli.app import app
from pipeline.cli.errors import FAILED, TIMED_OUT
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.storage.images_table import ImageRecord, ImageStore
from tests.helpers import (
    commit_shard,
    drain_messages,
    embedded_records,
    gradient_jpeg,
    image_bytes,
    queue_url,
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
    rng = np.random.default_rng(7)
    ids = [f"owl{i}" for i in range(12)]
    commit_shard(settings, "an owl", MODEL, "run-1", {i: rng.standard_normal(32) for i in ids})
    embedded_records(settings, ids, "an owl")
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    yield server.url, settings
    server.stop()


@pytest.fixture
def imgsim(api, tmp_path, monkeypatch):
    """`imgsim --api-url <the local API> ...`, with the stack's names in the environment (the
    AWS-side commands read them, as on AWS) and no local stack directory."""
    url, settings = api
    monkeypatch.setenv("IMGSIM_LOCAL_DIR", str(tmp_path / "no-stack"))
    # the API runs in this process here: its metric lines would land in the captured stdout
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)

    def run(*args: str):
        return CliRunner().invoke(app, ["--api-url", url, *args])

    return run


def test_upload_a_folder_shows_ids_and_refusals_and_exits_1(imgsim, api, tmp_path):
    _, settings = api
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "red.jpg").write_bytes(image_bytes(color=(220, 10, 10)))
    (folder / "grad.png").write_bytes(image_bytes("PNG", (40, 30)))
    (folder / "fake.jpg").write_bytes(b"a text file, not a photo")

    result = imgsim("--json", "upload", str(folder), "--prompt", "A  Red Thing")

    assert result.exit_code == FAILED, result.output
    rows = {row["file"].rsplit("/", 1)[1]: row for row in json.loads(result.stdout)}
    assert rows["fake.jpg"]["status"] == "refused"
    assert rows["fake.jpg"]["detail"].startswith("not_an_image:")
    assert "2 of 3" not in result.stdout and "1 of 3 file(s) refused" in result.stderr
    for name in ("red.jpg", "grad.png"):
        record = ImageStore(settings).get(rows[name]["image_id"])
        assert record["status"] == "pending" and record["prompt"] == "a red thing"


def test_upload_wait_gives_up_with_exit_4_while_nothing_embeds(imgsim, tmp_path):
    photo = tmp_path / "one.jpg"
    photo.write_bytes(gradient_jpeg())
    result = imgsim("--json", "upload", str(photo), "--wait", "--timeout", "1.5")
    assert result.exit_code == TIMED_OUT, result.output
    assert "1 image(s) still pending after 1.5 s" in result.stderr
    [row] = json.loads(result.stdout)
    assert row["file"] == str(photo) and row["status"] == "pending"


def test_similar_by_id_is_a_ranked_table(imgsim):
    table = imgsim("similar", "owl0", "--prompt", "An  Owl", "-k", "3")
    assert table.exit_code == 0, table.output
    assert "most like owl0 in 'an owl'" in table.output
    ranked = json.loads(imgsim("--json", "similar", "owl0", "-p", "an owl", "-k", "3").stdout)
    ids = [r["image_id"] for r in ranked["results"]]
    assert len(ids) == 3 and "owl0" not in ids
    assert all(i in table.output for i in ids)
    scores = [r["similarity"] for r in ranked["results"]]
    assert scores == sorted(scores, reverse=True)


def test_similar_embeds_a_local_file_on_the_fly(imgsim, tmp_path):
    photo = tmp_path / "query.jpg"
    photo.write_bytes(gradient_jpeg())
    result = imgsim("--json", "similar", str(photo), "--prompt", "an owl", "-k", "5")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model_id"] == MODEL and len(body["results"]) == 5


def test_similar_errors_carry_the_api_reason_and_exit_1(imgsim):
    unknown = imgsim("similar", "no-such-image", "--prompt", "an owl")
    assert unknown.exit_code == FAILED
    assert "image_not_found" in unknown.output and "HTTP 404" in unknown.output


def test_health_is_green_then_names_the_stuck_image(imgsim, api):
    _, settings = api
    drain_messages(settings, f"{settings.ingest_queue}-dlq")
    healthy = imgsim("--json", "health", "--max-pending-minutes", "30")
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.stdout)["images_counted"] == "pending"
    assert "embedded" not in json.loads(healthy.stdout)["images"]
    counted = imgsim("--json", "health", "--all-images")
    assert json.loads(counted.stdout)["images_counted"] == "all"
    assert json.loads(counted.stdout)["images"]["embedded"]["uploaded"] >= 12

    created = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    ImageStore(settings).put_version(
        ImageRecord("stuck-owl", created, "uploads/stuck-owl.jpg", "uploaded", "pending", "e", 1)
    )
    stuck = imgsim("health", "--max-pending-minutes", "30")
    assert stuck.exit_code == FAILED
    assert "image stuck-owl has been pending for 120 min" in " ".join(stuck.output.split())


def test_redrive_moves_dead_letters_back(imgsim, api):
    _, settings = api
    dlq = f"{settings.ingest_queue}-dlq"
    sqs = aws.client(settings, "sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=queue_url(settings, dlq), MessageBody=json.dumps({"n": n}))
    result = imgsim("--json", "redrive", "--queue", "ingest")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["moved"] == 3
    assert drain_messages(settings, dlq) == []
    moved = drain_messages(settings, settings.ingest_queue)
    assert sorted(b["n"] for b in moved if "n" in b) == [0, 1, 2]


def test_eval_scores_a_named_model_on_the_shipped_photos(imgsim):
    result = imgsim(
        "--json", "eval", "samples/photos", "--model", "color-layout-v1", "--limit", "48"
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["model_id"].startswith("color-layout-v1") and row["mode"] == "in-process"
    assert row["index"] + row["queries"] == 48
    assert 0 <= row["precision@10"] <= row["hit@10"] <= 1


def test_prompts_lists_the_prompt_with_its_model_and_count(imgsim):
    result = imgsim("--json", "prompts")
    assert result.exit_code == 0, result.output
    owls = [p for p in json.loads(result.stdout)["prompts"] if p["prompt"] == "an owl"]
    assert [(p["model_id"], p["images"]) for p in owls] == [(MODEL, 12)]
    table = imgsim("prompts")
    assert table.exit_code == 0 and "an owl" in table.output
