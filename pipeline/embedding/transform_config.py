"""The SageMaker batch transform configuration of one embedding run (what the DAG hands to the
provider's SageMakerTransformOperator)."""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.embedding.run import EmbeddingRun


def transform_config(
    run: EmbeddingRun,
    model_data_url: str,
    role_arn: str,
    instance_type: str = "ml.m5.xlarge",
    instance_count: int = 1,
    image_uri: str = "",
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The SageMakerTransformOperator config for a run: deterministic names per run."""
    readable = "".join(c if c.isalnum() else "-" for c in run.run_id)[:32].strip("-")
    digest = hashlib.sha256(run.run_id.encode()).hexdigest()[:8]
    name = f"imgsim-embed-{readable}-{digest}"  # <= 63 characters, unique per run
    env = {"IMGSIM_BATCH_SIZE": "16", "IMGSIM_DECODE_WORKERS": "2", **(environment or {})}
    return {
        "Model": {
            "ModelName": name,
            "ExecutionRoleArn": role_arn,
            "PrimaryContainer": {
                "Image": image_uri,
                "ModelDataUrl": model_data_url,
                "Environment": env,
            },
        },
        "Transform": {
            "TransformJobName": name,
            "ModelName": name,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 1,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": run.input_uri}},
                "ContentType": "application/jsonlines",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": run.output_uri,
                "Accept": "application/jsonlines",
                "AssembleWith": "Line",
            },
            "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
            # one payload can hold thousands of images: give the container time to finish it
            "ModelClientConfig": {"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 1},
        },
    }
