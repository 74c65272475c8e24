"""The embedding model's endpoint on the SageMaker emulator (for POST /embed and friends)."""

from __future__ import annotations

import time

from pipeline import aws
from pipeline.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/imgsim-sagemaker"


def ensure_endpoint(settings: Settings, model_data_url: str, timeout: float = 120) -> str:
    """Create model, endpoint config and endpoint `settings.embed_endpoint`; wait InService."""
    sm = aws.client(settings, "sagemaker")
    name = settings.embed_endpoint
    try:
        status = sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
    except sm.exceptions.ClientError:
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "local", "ModelDataUrl": model_data_url},
        )
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        status = "Creating"
    deadline = time.monotonic() + timeout
    while status == "Creating":
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {name} is still Creating after {timeout:.0f} s")
        time.sleep(0.2)
        status = sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
    if status != "InService":
        reason = sm.describe_endpoint(EndpointName=name).get("FailureReason")
        raise RuntimeError(f"endpoint {name} is {status}: {reason}")
    return name
