"""The SageMaker batch transform configuration of one embedding run (what the DAG hands to the
provider's SageMakerTransformOperator), and the serving container it runs in."""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.embedding.run import EmbeddingRun

# The serving container's PyTorch: transformers 5 (code/requirements.txt) needs 2.6 or later.
FRAMEWORK_VERSION = "2.6"

MB = 1024 * 1024
# Batch transform packs as many manifest lines into one request as MaxPayloadInMB holds (1 MB
# is its smallest non-zero size), and the model answers all of them in one response: far more
# than TorchServe's default max_response_size (6,553,500 bytes) and 60 s response timeout. The
# model's environment raises both to what the fullest request can need.
MAX_PAYLOAD_MB = 1
MIN_RECORD_BYTES = 100  # a manifest line: {"image_id": <32 characters>, "s3_uri": "s3://..."}
WIDEST_EMBEDDING = 1280  # efficientnet-lite0's; CLIP ViT-B/32's is 512
FLOAT_JSON_BYTES = 26  # one float32 written by json.dumps: at most 24 characters, and ", "
LINE_OVERHEAD_BYTES = 256  # image_id, model_id, keys and brackets of one output line
INVOCATION_TIMEOUT_SECONDS = 3600  # ModelClientConfig's ceiling
SLOWEST_IMAGES_PER_SECOND = 5  # the pace the timeout must allow a full request on a CPU instance


def records_per_request(max_payload_mb: int = MAX_PAYLOAD_MB) -> int:
    """The most manifest lines one request can carry."""
    return max_payload_mb * MB // (MIN_RECORD_BYTES + 1)


def max_response_bytes(dim: int, max_payload_mb: int = MAX_PAYLOAD_MB) -> int:
    """The largest response a full request can produce for vectors of `dim` floats."""
    return records_per_request(max_payload_mb) * (LINE_OVERHEAD_BYTES + dim * FLOAT_JSON_BYTES)


def server_environment(
    dim: int = WIDEST_EMBEDDING, max_payload_mb: int = MAX_PAYLOAD_MB
) -> dict[str, str]:
    """The serving container's limits for a full request: TorchServe's response size (it reads
    TS_* variables) and the toolkit's response timeouts."""
    seconds = str(INVOCATION_TIMEOUT_SECONDS)
    return {
        "TS_MAX_RESPONSE_SIZE": str(max_response_bytes(dim, max_payload_mb)),
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": seconds,
        "SAGEMAKER_TS_RESPONSE_TIMEOUT": seconds,
    }


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
    env = {
        "IMGSIM_BATCH_SIZE": "16",
        **server_environment(),
        **(environment or {}),
    }
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
            "MaxPayloadInMB": MAX_PAYLOAD_MB,
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
            "ModelClientConfig": {
                "InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_SECONDS,
                "InvocationsMaxRetries": 1,
            },
        },
    }
