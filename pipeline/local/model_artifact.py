"""The embedding model artifact the local stack serves, built offline and put in the bucket."""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import Settings
from pipeline.storage.bucket import ObjectStore
from pipeline.storage.keys import model_artifact_key
from sagemaker_jobs.build_model import build


def ensure_model(settings: Settings, state_dir: Path) -> str:
    """The offline color-layout-v1 model artifact in the bucket (built once)."""
    key = model_artifact_key("color-layout-v1")
    objects = ObjectStore(settings)
    if not objects.exists(key):
        path = state_dir / "models" / "color-layout-v1.tar.gz"
        build(path, family="color-layout-v1")
        objects.client.upload_file(str(path), settings.bucket, key)
    return f"s3://{settings.bucket}/{key}"
