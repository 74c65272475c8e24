"""The embedding model's endpoint on the SageMaker emulator (for POST /embed and friends),
deployed by the same code as on AWS (`pipeline.embedding.endpoint`, sagemaker-core's resources)
through the settings' `sagemaker` endpoint URL."""

from __future__ import annotations

from pipeline.embedding.endpoint import Deployment, EndpointSpec, deploy
from pipeline.settings import Settings

# The emulator assumes no role; a role of the local stack's fake account keeps the request real.
ROLE = "arn:aws:iam::123456789012:role/imgsim-sagemaker"


def ensure_endpoint(settings: Settings, model_data_url: str, timeout: int = 120) -> Deployment:
    """`settings.embed_endpoint` InService on `model_data_url` (created, updated or as it was)."""
    spec = EndpointSpec(model_data_url=model_data_url, role_arn=ROLE)
    return deploy(settings, spec, poll=1, timeout=timeout)
