"""The SageMaker batch transform configuration of one embedding run (what the DAG hands to the
provider's SageMakerTransformOperator), and the serving container it runs in."""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.embedding.run import EmbeddingRun

# The serving container's PyTorch: transformers 5 (code/requirements.txt) needs 2.6 or later.
FRAMEWORK_VERSION = "2.6"


def serving_image_uri(
    region: str, instance_type: str, framework_version: str = FRAMEWORK_VERSION
) -> str:
    """The SageMaker PyTorch inference image for a region (registry account, partition host
    name, cpu/gpu tag from the instance type, Python tag), as the SageMaker SDK's own image
    tables know it: no ECR URI is written by hand. Imported here only: DAG tasks need it, the
    Lambda package does not ship it."""
    from sagemaker.core import image_uris

    return str(
        image_uris.retrieve(
            "pytorch",
            region=region,
            version=framework_version,
            instance_type=instance_type,
            image_scope="inference",
        )
    )


def transform_config(
    run: EmbeddingRun,
    model_data_url: str,
    role_arn: str,
    instance_type: str = "ml.m5.xlarge",
    instance_count: int = 1,
    image_uri: str = "",
    environment: dict[str, str] | None = None,
    framework_version: str = FRAMEWORK_VERSION,
) -> dict[str, Any]:
    """The SageMakerTransformOperator config for a run: deterministic names per run. Without an
    `image_uri`, the SageMaker PyTorch inference image for the run's region is used."""
    image_uri = image_uri or serving_image_uri(
        run.settings.region, instance_type, framework_version
    )
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
