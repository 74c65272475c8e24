"""The embedding model's endpoint on the SageMaker emulator (for POST /embed and friends),
deployed by the same code as on AWS (`pipeline.embedding.endpoint`, sagemaker-core's resources)
through the settings' `sagemaker` endpoint URL."""

from __future__ import annotations

from pipeline.embedding.endpoint import Deployment, EndpointSpec, deploy
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.settings import Settings


def ensure_endpoint(settings: Settings, model_data_url: str, timeout: int = 120) -> Deployment:
    """`settings.embed_endpoint` InService on `model_data_url` (created, updated or as it was)."""
    spec = EndpointSpec(model_data_url=model_data_url, role_arn=LOCAL_SAGEMAKER_ROLE)
    return deploy(settings, spec, poll=1, timeout=timeout)
