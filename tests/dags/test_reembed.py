"""dags/reembed.py with dag.test() on the local stack: images embedded by embed_images with one
model artifact (the tiny random CLIP) are re-embedded with another (color-layout-v1)
while a thread keeps looking them up through the API handler; then the old model is retired.
New images of a switched prompt, embedded by embed_images with the old model, are re-embedded by
the reembed run that embed run triggers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import numpy as np
import pytest
from sqlalchemy import select, update

from lambdas.api.handler import make_handler
from lambdas.ingest.handler import make_handler as make_ingest_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import proxy_event
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.event_pump import EventPump
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.active_models import ActiveModels, Pointer
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.keys import EMBEDDINGS_PREFIX, slug
from pipeline.storage.manifests_table import ManifestStore
from sagemaker_jobs.build_model import build
from tests.helpers import gradient_jpeg, image_bytes

OLD = "clip-tiny-random-init-seed0"
NEW = "color-layout-v1"
LOGICAL_DATE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LATER = LOGICAL_DATE + timedelta(hours=1)
IMAGES = {  # image id -> prompt (None: an upload without one)
    **{f"fox{i}": "red fox" for i in range(6)},
    **{f"cup{i}": "a cup" for i in range(3)},
    "loose": None,
}


@pytest.fixture(scope="session")
def color_layout_artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "color-layout.tar.gz"
    build(path, family="color-layout-v1")
    return path


@pytest.fixture
def upgrade_world(airflow_stack, color_layout_artifact):
    """Every image of IMAGES embedded by embed_images with OLD; NEW's artifact in the bucket."""
    from dags.embed_images import embed_images_dag
    from dags.reembed import reembed_dag

    settings, old_uri = airflow_stack
    for dag in (embed_images_dag, reembed_dag):
        for task in dag.tasks:
            task.retries = 0
    s3 = aws.client(settings, "s3")
    for n, (image_id, prompt) in enumerate(sorted(IMAGES.items())):
        data = (
            gradient_jpeg((60 + 7 * n, 50 + 3 * n))
            if n % 2
            else image_bytes("PNG", (40 + n, 30), (20 * n, 200 - 10 * n, 90))
        )
        metadata = {"prompt": prompt} if prompt else {}
        key = f"uploads/{image_id}.{'jpg' if n % 2 else 'png'}"
        s3.put_object(Bucket=settings.bucket, Key=key, Body=data, Metadata=metadata)
    EventPump(settings, make_ingest_handler(Ingestor.from_settings(settings))).drain()
    run = embed_images_dag.test(
        logical_date=LOGICAL_DATE,
        run_conf={"model_data_url": old_uri, "role_arn": LOCAL_SAGEMAKER_ROLE, "grace_minutes": 0},
    )
    assert run.state == "success"
    key = "models/color-layout-v1/model.tar.gz"
    s3.upload_file(str(color_layout_artifact), settings.bucket, key)
    return settings, reembed_dag, f"s3://{settings.bucket}/{key}"


def _reembed(dag, new_uri, **conf):
    return dag.test(
        logical_date=LOGICAL_DATE,
        run_conf={"model_data_url": new_uri, "role_arn": LOCAL_SAGEMAKER_ROLE, **conf},
    )


class Lookups:
    """Lookups through the API handler (one warm container), in a thread or one at a time."""

    QUERIES = (("fox0", "red fox"), ("fox3", "Red  Fox"), ("cup1", "a cup"))

    def __init__(self, settings):
        similarity = SimilarityService.from_settings(settings)
        self.handler = make_handler(Ingestor.from_settings(settings), similarity=similarity)
        self.answers: list[tuple[str, int, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def once(self) -> list[tuple[str, int, dict]]:
        found = []
        for image_id, prompt in self.QUERIES:
            path = "/similarity?" + urlencode({"image_id": image_id, "prompt": prompt, "k": 10})
            out = self.handler(
                proxy_event("GET", path, {}, b"", "127.0.0.1"), LocalLambdaContext("imgsim-api")
            )
            found.append((image_id, out["statusCode"], json.loads(out["body"])))
        self.answers += found
        return found

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.once()
            time.sleep(0.05)

    def __enter__(self) -> Lookups:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _state(settings) -> dict:
    ddb = aws.client(settings, "dynamodb")
    return {
        table: sorted(
            json.dumps(i, sort_keys=True, default=str) for i in ddb.scan(TableName=table)["Items"]
        )
        for table in (
            settings.images_table,
            settings.embeddings_table,
            settings.shard_manifests_table,
        )
    }


def _assert_one_model_each(settings, answers) -> None:
    """Every score equals the cosine of the query's and the result's vectors of the answer's
    model: no answer compared vectors of two models."""
    embeddings = EmbeddingStore(settings)
    seen = {}
    for image_id, _, body in answers:
        ids = tuple(r["image_id"] for r in body["results"])
        seen[(image_id, body["model_id"], ids)] = [r["similarity"] for r in body["results"]]
    for (image_id, model_id, ids), scores in seen.items():
        query = embeddings.get_for_model(image_id, model_id)["embedding"]
        expected = [float(embeddings.get_for_model(i, model_id)["embedding"] @ query) for i in ids]
        np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_upgrade_while_lookups_run_then_retire_the_old_model(upgrade_world, capfd, tmp_path):
    settings, dag, new_uri = upgrade_world
    lookups = Lookups(settings)
    before = lookups.once()
    assert {(status, body["model_id"]) for _, status, body in before} == {(200, OLD)}

    # a missing artifact fails the plan, before anything is written
    state = _state(settings)
    missing = _reembed(dag, f"s3://{settings.bucket}/models/nothing/model.tar.gz")
    assert missing.state == "failed"
    out, err = capfd.readouterr()
    assert "cannot read s3://" in out + err and "NoSuchKey" in out + err
    assert _state(settings) == state

    with lookups:
        started = len(lookups.answers)
        run = _reembed(dag, new_uri, batch_size=5)
        time.sleep(0.3)  # a few lookups after the switch, still in the thread
    assert run.state == "success"
    during = lookups.answers[started:]
    assert during, "no lookup ran during the upgrade"
    failed = [(i, s, b) for i, s, b in lookups.answers if s != 200]
    assert not failed, failed[:3]
    # per query: the old model until its prompt switched, then the new one, never back
    for image_id, _ in Lookups.QUERIES:
        models = [b["model_id"] for i, _, b in lookups.answers if i == image_id]
        switched_at = models.index(NEW) if NEW in models else len(models)
        assert set(models[:switched_at]) <= {OLD} and set(models[switched_at:]) <= {NEW}
    assert {b["model_id"] for _, _, b in lookups.once()} == {NEW}
    _assert_one_model_each(settings, lookups.answers)

    # mapped once per batch: 10 images, 5 per batch
    states = [ti for ti in run.get_task_instances() if ti.task_id == "batch.commit"]
    assert len(states) == 2 and {ti.state for ti in states} == {"success"}
    # every image has the new vector beside the old one; both prompts switched
    embeddings = EmbeddingStore(settings)
    for image_id in IMAGES:
        assert embeddings.get_for_model(image_id, NEW)["dim"] == 120
        assert embeddings.get(image_id)["model_id"] == OLD
    active = ActiveModels(settings)
    assert {p: active.get(p) for p in ("red fox", "a cup")} == {"red fox": NEW, "a cup": NEW}
    assert ManifestStore(settings).get("red fox", NEW).rows == 6
    assert ManifestStore(settings).get("a cup", NEW).rows == 3
    switch = next(ti for ti in run.get_task_instances() if ti.task_id == "switch")
    assert switch.state == "success"

    # a re-run finds nothing missing and changes nothing
    state = _state(settings)
    assert _reembed(dag, new_uri).state == "success"
    assert _state(settings) == state

    # retire the old model by command: shards, manifests and vectors go, the new ones stay
    env = {**os.environ, **settings.to_env(), "IMGSIM_LOCAL_DIR": str(tmp_path / "no-stack")}
    command = [sys.executable, "-m", "pipeline.cli", "--json", "model", "retire"]
    refused = subprocess.run([*command, NEW], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "still answers 2 prompt(s)" in refused.stderr
    done = subprocess.run([*command, OLD], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["prompts"] == ["a cup", "red fox"] and summary["kept"] == []
    assert summary["vectors_promoted"] == len(IMAGES)
    s3 = aws.client(settings, "s3")
    old_prefix = f"{EMBEDDINGS_PREFIX}model={slug(OLD)}/"
    assert "Contents" not in s3.list_objects_v2(Bucket=settings.bucket, Prefix=old_prefix)
    assert ManifestStore(settings).get("red fox", OLD) is None
    items = aws.client(settings, "dynamodb").scan(TableName=settings.embeddings_table)["Items"]
    assert sorted(i["embedding_id"]["S"] for i in items) == sorted(IMAGES)
    assert {i["model_id"]["S"] for i in items} == {NEW}
    images = ImageStore(settings)
    assert {images.get(i)["embedding_model_id"] for i in IMAGES} == {NEW}
    after = Lookups(settings).once()
    assert {(status, body["model_id"]) for _, status, body in after} == {(200, NEW)}
    _assert_one_model_each(settings, after)


def _similar(handler, image_id: str, prompt: str) -> dict:
    path = "/similarity?" + urlencode({"image_id": image_id, "prompt": prompt, "k": 20})
    out = handler(proxy_event("GET", path, {}, b"", "127.0.0.1"), LocalLambdaContext("imgsim-api"))
    assert out["statusCode"] == 200, out["body"]
    return dict(json.loads(out["body"]))


def _dag_runs(dag_id: str, run_id_prefix: str) -> list:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.startswith(run_id_prefix))
        ).all()
        for run in runs:
            session.expunge(run)
        return list(runs)


def _unpause(dag_id: str) -> None:
    """As it is once an operator has run it (a trigger of a paused DAG fails on purpose)."""
    from airflow.models import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))


def test_new_images_of_a_switched_prompt_are_reembedded_by_a_run_the_embed_run_triggers(
    upgrade_world,
):
    """After "red fox" switched (and "a cup" did not), embed_images embeds a new image of each
    with the old model and triggers one reembed run for "red fox" with the pointer's artifact;
    that run gives the image the new vector, and the prompt's lookups find it."""
    from dags.embed_images import embed_images_dag

    settings, dag, new_uri = upgrade_world
    assert _reembed(dag, new_uri, prompts=["red fox"]).state == "success"
    active = ActiveModels(settings)
    assert active.pointer("red fox") == Pointer(NEW, new_uri)
    assert active.pointer("a cup") is None  # not upgraded: answered by the query's own model

    s3 = aws.client(settings, "s3")
    for image_id, prompt in (("foxnew", "red fox"), ("cupnew", "a cup")):
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"uploads/{image_id}.jpg",
            Body=gradient_jpeg((90, 70)),
            Metadata={"prompt": prompt},
        )
    EventPump(settings, make_ingest_handler(Ingestor.from_settings(settings))).drain()
    old_uri = f"s3://{settings.bucket}/models/tiny-clip/model.tar.gz"
    _unpause("reembed")
    embed = embed_images_dag.test(
        logical_date=LATER,
        run_conf={"model_data_url": old_uri, "role_arn": LOCAL_SAGEMAKER_ROLE, "grace_minutes": 0},
    )
    assert embed.state == "success"
    triggers = [ti for ti in embed.get_task_instances() if ti.task_id == "trigger_reembed"]
    assert [(ti.map_index, ti.state) for ti in triggers] == [(0, "success")]

    # the new image has only the old model's vector: no candidate of the switched prompt yet
    handler = Lookups(settings).handler
    answer = _similar(handler, "fox0", "red fox")
    assert answer["model_id"] == NEW
    assert "foxnew" not in {r["image_id"] for r in answer["results"]}

    [triggered] = _dag_runs("reembed", f"{embed.run_id}__reembed_")
    assert triggered.state == "queued"
    assert (triggered.conf["model_data_url"], triggered.conf["prompts"]) == (new_uri, ["red fox"])
    assert triggered.conf["role_arn"] == LOCAL_SAGEMAKER_ROLE  # the embed run's, by conf
    run = dag.test(logical_date=LATER, run_conf=triggered.conf)  # what the scheduler would run
    assert run.state == "success"

    embeddings = EmbeddingStore(settings)
    assert embeddings.get_for_model("foxnew", NEW)["dim"] == 120
    assert embeddings.get_for_model("cupnew", NEW) is None  # "a cup" was not upgraded
    assert active.pointer("red fox") == Pointer(NEW, new_uri)  # left as it was
    answer = _similar(handler, "fox0", "red fox")
    assert answer["model_id"] == NEW
    assert "foxnew" in {r["image_id"] for r in answer["results"]}
    assert {r["image_id"] for r in _similar(handler, "cup0", "a cup")["results"]} >= {"cupnew"}
