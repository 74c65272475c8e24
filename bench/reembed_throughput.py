"""Backfill throughput of a model upgrade (`pipeline.upgrade`) on the local stack, in one run.

    python bench/reembed_throughput.py [--images 1000] [--batch-size 250] [--model color-layout-v1]

N generated JPEGs (320-640 px) in the bucket, recorded as embedded under 4 prompts; the backfill
then runs its real steps: plan, one batch transform job per batch on the SageMaker emulator (the
real inference code; at most 4 jobs at a time, as the DAG maps them), each batch's commit, and
the switch. Printed: seconds per phase and images/s end to end. Airflow's own task scheduling
is not included. `--model vit-b-32` backfills with a randomly initialised CLIP of ViT-B/32
shapes (random weights cost exactly what trained ones do); the default is color-layout-v1, a
cheap colour descriptor, which leaves the pipeline's own cost in view.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp

import boto3

from pipeline import aws
from pipeline.embedding.transform_config import transform_config
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE, isolated_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port, start_group, stop_group, wait_until
from pipeline.settings import Settings
from pipeline.upgrade.backfill import Backfill
from pipeline.upgrade.switch import switch_complete
from sagemaker_jobs.build_model import build

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers and bench
from bench.embed_throughput import make_jpegs
from tests.helpers import embedded_records

PROMPTS = ("a red fox", "a cup of coffee", "a bicycle", "a lighthouse")
PARALLEL_JOBS = 4


def seed(settings: Settings, images: int) -> None:
    s3 = aws.client(settings, "s3")
    for index, data in enumerate(make_jpegs(images, seed=1)):
        s3.put_object(Bucket=settings.bucket, Key=f"uploads/img{index:06d}.jpg", Body=data)
    for p, prompt in enumerate(PROMPTS):
        ids = [f"img{i:06d}" for i in range(p, images, len(PROMPTS))]
        embedded_records(settings, ids, prompt)


def transform(settings: Settings, backfill: Backfill, batches: int, model_url: str) -> None:
    """Every batch's job, at most PARALLEL_JOBS at a time, as the provider's operator starts
    them (CreateModel, CreateTransformJob, then DescribeTransformJob until it ends)."""
    sagemaker = aws.client(settings, "sagemaker")
    waiting = list(range(batches))
    running: dict[str, int] = {}
    while waiting or running:
        while waiting and len(running) < PARALLEL_JOBS:
            batch = waiting.pop(0)
            config = transform_config(backfill.batch_run(batch), model_url, LOCAL_SAGEMAKER_ROLE)
            sagemaker.create_model(**config["Model"])
            sagemaker.create_transform_job(**config["Transform"])
            running[config["Transform"]["TransformJobName"]] = batch
        time.sleep(0.2)
        for name in list(running):
            status = sagemaker.describe_transform_job(TransformJobName=name)
            if status["TransformJobStatus"] == "Completed":
                del running[name]
            elif status["TransformJobStatus"] in ("Failed", "Stopped"):
                raise RuntimeError(f"{name}: {status.get('FailureReason')}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument(
        "--model", choices=["color-layout-v1", "vit-b-32"], default="color-layout-v1"
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    work = Path(mkdtemp(prefix="bench-reembed-"))
    moto = MotoServer("127.0.0.1", free_port()).start(work / "moto.log")
    port = free_port()
    emulator = start_group(
        [
            sys.executable,
            "-m",
            "pipeline.local.sagemaker",
            "--port",
            str(port),
            "--work-dir",
            str(work / "sagemaker"),
        ],
        work / "sagemaker.log",
        env={**os.environ, "AWS_ENDPOINT_URL_S3": moto.url},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        probe = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1")
        wait_until(lambda: bool(probe.list_transform_jobs()), 60, "the SageMaker emulator")
        settings = isolated_settings(moto.url, "bench-reembed").with_endpoint(
            url, ("sagemaker", "sagemaker-runtime")
        )
        deploy(settings, StackSpec(name="bench-reembed", code_bucket="code-reembed"))
        artifact = work / "model.tar.gz"
        if args.model == "vit-b-32":
            build(artifact, random_config="vit-b-32", seed=0)
        else:
            build(artifact, family="color-layout-v1")
        aws.client(settings, "s3").upload_file(str(artifact), settings.bucket, "models/new.tar.gz")
        model_url = f"s3://{settings.bucket}/models/new.tar.gz"
        seed(settings, args.images)

        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        backfill = Backfill(settings, "bench-reembed-run")
        phases: dict[str, float] = {}
        start = time.perf_counter()
        plan = backfill.plan(model_url, None, args.batch_size, at)
        phases["plan"] = time.perf_counter() - start
        mark = time.perf_counter()
        transform(settings, backfill, plan["batches"], model_url)
        phases["transform"] = time.perf_counter() - mark
        mark = time.perf_counter()
        embedded = sum(backfill.commit(b)["embedded"] for b in range(plan["batches"]))
        phases["commit"] = time.perf_counter() - mark
        mark = time.perf_counter()
        report = switch_complete(backfill.images, backfill.active, backfill.read_plan(), at)
        phases["switch"] = time.perf_counter() - mark
        total = time.perf_counter() - start
    finally:
        stop_group(emulator.pid)
        moto.stop()
    assert embedded == args.images and all(r["complete"] for r in report.values()), report
    print(
        f"{args.images} images, {plan['batches']} batches of {args.batch_size}, "
        f"model {plan['model_id']}"
    )
    for name, seconds in phases.items():
        print(f"  {name:<10} {seconds:7.2f} s  ({args.images / seconds:8.1f} images/s)")
    print(f"  {'total':<10} {total:7.2f} s  ({args.images / total:8.1f} images/s)")
    print(json.dumps({"images": args.images, "phases_s": phases, "total_s": total}))


if __name__ == "__main__":
    main()
