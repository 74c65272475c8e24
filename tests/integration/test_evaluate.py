"""The evaluation harness end to end: a pretrained network beats its random init on the shipped
photos (in-process), and the API mode through the pipeline (bucket -> ingest -> batch
transform on the SageMaker emulator -> shards -> POST /similarity) gives exactly the in-process
figures for the same artifact."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from lambdas.api.handler import make_handler as api_handler
from lambdas.ingest.handler import make_handler as ingest_handler
from pipeline import aws
from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.transform_config import transform_config
from pipeline.evaluate.datasets import load_folder
from pipeline.evaluate.harness import evaluate_api, evaluate_artifact, make_split
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.local.event_pump import EventPump
from sagemaker_jobs.build_model import build
from tests.helpers import transform_job_done

PHOTOS = Path(__file__).resolve().parents[2] / "samples" / "photos"


@pytest.fixture(scope="module")
def photos():
    return make_split(load_folder(PHOTOS), seed=0)


def test_the_pretrained_network_beats_its_random_init(photos, efficientnet_artifact, tmp_path):
    random_init = tmp_path / "random.tar.gz"
    build(random_init, family="efficientnet-lite0", pretrained=False, seed=0)
    pretrained = evaluate_artifact(photos, efficientnet_artifact, progress=False)
    floor = evaluate_artifact(photos, random_init, progress=False)
    assert pretrained.model_id == "efficientnet-lite0-imagenet"
    assert floor.model_id == "efficientnet-lite0-random-init-seed0"
    assert pretrained.scores.queries == floor.scores.queries == 24
    assert pretrained.scores.hit[1] > floor.scores.hit[1]
    assert pretrained.scores.precision_at_10 > floor.scores.precision_at_10


class StandInScheduler:
    """What the local stack's event source mapping and embed DAG do, in a thread: ingest the
    bucket's notifications, then embed whatever is pending with a batch transform."""

    def __init__(self, settings, sagemaker_url: str, model_url: str) -> None:
        self.settings, self.model_url = settings, model_url
        self.pump = EventPump(settings, ingest_handler(Ingestor.from_settings(settings)))
        self.sm = boto3.client("sagemaker", endpoint_url=sagemaker_url, region_name="us-east-1")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.runs = 0

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.pump.drain()
            run = EmbeddingRun(self.settings, f"eval-{self.runs}")
            if run.gather([], pending_before="9999", run_at="2026-11-22T00:00:00.000Z")["count"]:
                self._transform(run)
                run.commit()
                self.runs += 1
            self.stop.wait(0.5)

    def _transform(self, run: EmbeddingRun) -> None:
        config = transform_config(run, self.model_url, LOCAL_SAGEMAKER_ROLE)
        self.sm.create_model(**config["Model"])
        self.sm.create_transform_job(**config["Transform"])
        transform_job_done(self.sm, config["Transform"]["TransformJobName"])


def test_the_api_mode_gives_the_in_process_figures(module_stack, sagemaker_emulator, tmp_path):
    photos = make_split(load_folder(PHOTOS), limit=48, seed=0)  # 4 views of each subject
    artifact = tmp_path / "color.tar.gz"
    build(artifact, family="color-layout-v1")
    settings = replace(
        module_stack.settings, embed_endpoint=f"embed-{uuid.uuid4().hex[:8]}"
    ).with_endpoint(sagemaker_emulator, ("sagemaker", "sagemaker-runtime"))
    aws.client(settings, "s3").upload_file(str(artifact), settings.bucket, "models/color.tar.gz")
    model_url = f"s3://{settings.bucket}/models/color.tar.gz"
    ensure_endpoint(settings, model_url)
    scheduler = StandInScheduler(settings, sagemaker_emulator, model_url)
    scheduler.thread.start()
    server = LocalApi(api_handler(Ingestor.from_settings(settings))).start()
    try:
        through_api = evaluate_api(photos, server.url, settings, progress=False, timeout_s=300)
    finally:
        server.stop()
        scheduler.stop.set()
        scheduler.thread.join(60)
    in_process = evaluate_artifact(photos, artifact, progress=False)
    assert through_api.model_id == in_process.model_id == "color-layout-v1"
    assert through_api.scores == in_process.scores
    assert through_api.index_size == 36 and scheduler.runs >= 1
