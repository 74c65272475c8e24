"""Which model an artifact serves, read from its model card before any job runs."""

from __future__ import annotations

import json
import tarfile
from typing import Any
from urllib.parse import urlsplit

MODEL_CARD = "imgsim_model.json"  # written by sagemaker_jobs.build_model at the archive's root


class NotAModelArtifact(ValueError):
    """The URL does not hold an imgsim model.tar.gz."""


def model_id_of(s3: Any, model_data_url: str) -> str:
    """The model_id in the artifact's card. The archive is streamed and only read up to the
    card (the builder writes files sorted, the card before the weights)."""
    parts = urlsplit(model_data_url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise NotAModelArtifact(f"model_data_url must be s3://bucket/key, not {model_data_url!r}")
    try:
        body = s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
    except s3.exceptions.ClientError as exc:
        raise NotAModelArtifact(
            f"cannot read {model_data_url}: {exc.response['Error'].get('Code', exc)}"
        ) from None
    try:
        with tarfile.open(fileobj=body, mode="r|gz") as archive:
            for member in archive:
                if member.name.lstrip("./") == MODEL_CARD:
                    card = archive.extractfile(member)
                    if card is not None:
                        return str(json.loads(card.read())["model_id"])
    except (tarfile.TarError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise NotAModelArtifact(f"{model_data_url} is not a model.tar.gz: {exc}") from None
    finally:
        body.close()
    raise NotAModelArtifact(f"{model_data_url} has no {MODEL_CARD} (build it with build_model)")
