"""python -m pipeline.local.sagemaker --port N: run the SageMaker emulator in the foreground.

Jobs read and write S3 through AWS_ENDPOINT_URL_S3 (the emulator's own environment is what
its "containers" see)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from pipeline import aws
from pipeline.local.loopback import run_until_signalled
from pipeline.local.sagemaker.server import SageMakerEmulator
from pipeline.local.sagemaker.service import SageMakerService
from pipeline.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.sagemaker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="sagemaker-emulator-"))
    service = SageMakerService(aws.client(settings, "s3"), work_dir, region=settings.region)
    emulator = SageMakerEmulator(service, args.host, args.port).start()
    logging.getLogger(__name__).info("SageMaker emulator (a local stand-in) on %s", emulator.url)
    run_until_signalled(emulator.stop)


if __name__ == "__main__":
    main()
