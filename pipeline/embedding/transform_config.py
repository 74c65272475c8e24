"""The SageMaker batch transform configuration of one embedding run (what the DAG hands to the
provider's SageMakerTransformOperator), and the serving container it runs in.

The serving image depends on the region and on whether the instance type has a GPU. sagemaker-core
knows the images (`image_uris`), but it needs a newer boto3 than MWAA's, so MWAA's workers do not
have it: `make mwaa` resolves the CPU and the GPU image into settings (`serving_image_cpu`,
`serving_image_gpu`) and a task picks one by the run's instance type. Where the settings name
none (the local stack), sagemaker-core looks the image up."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.serving_image import SERVING_IMAGE, workers_environment
from pipeline.settings import Settings

# The serving container's PyTorch: transformers 5 (code/requirements.txt) needs 2.6 or later.
FRAMEWORK_VERSION = SERVING_IMAGE.framework_version

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
    tables know it: no ECR URI is written by hand. sagemaker-core is imported here only: it is
    in neither the Lambda package nor MWAA's requirements."""
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


# An instance type of each processor kind the images come in, to look its image up with.
PROCESSOR_INSTANCE_TYPES = {"cpu": "ml.m5.xlarge", "gpu": "ml.g5.xlarge"}
# sagemaker-core's reading of an instance type: "ml.<family>.<size>"
INSTANCE_TYPE = re.compile(r"ml\.([a-z\d-]+)\.\w+")


def processor(instance_type: str) -> str:
    """ "gpu" or "cpu": the image an instance type needs, told the way sagemaker-core's
    image_uris tells it (a family starting with g or p has GPUs)."""
    match = INSTANCE_TYPE.fullmatch(instance_type)
    if not match:
        raise ValueError(
            f"instance_type {instance_type!r} is not a SageMaker instance type "
            "(ml.<family>.<size>, e.g. ml.m5.xlarge)"
        )
    family = match[1]
    if family.startswith(("inf", "trn")):
        raise ValueError(
            f"instance_type {instance_type}: Inferentia and Trainium need a Neuron image; "
            "pass it as the image_uri param"
        )
    return "gpu" if family[0] in "gp" else "cpu"


def serving_image_uris(region: str, framework_version: str = FRAMEWORK_VERSION) -> dict[str, str]:
    """The CPU and GPU serving images of a region, looked up with sagemaker-core: what `make
    mwaa` writes into settings."""
    return {
        kind: serving_image_uri(region, instance_type, framework_version)
        for kind, instance_type in PROCESSOR_INSTANCE_TYPES.items()
    }


def configured_image_uri(
    settings: Settings, instance_type: str, framework_version: str = FRAMEWORK_VERSION
) -> str:
    """The serving image for `instance_type`: the settings' image of its processor kind, or,
    where the settings name none (or the run asks another PyTorch version than they were
    resolved for), sagemaker-core's lookup, where it is installed."""
    kind = processor(instance_type)
    configured = settings.serving_image_gpu if kind == "gpu" else settings.serving_image_cpu
    if configured and framework_version == FRAMEWORK_VERSION:
        return configured
    try:
        return serving_image_uri(settings.region, instance_type, framework_version)
    except ImportError:
        raise ValueError(
            f"no {kind.upper()} serving image of PyTorch {framework_version} is configured: set "
            f"IMGSIM_SERVING_IMAGE_{kind.upper()} (`make mwaa` writes both for PyTorch "
            f"{FRAMEWORK_VERSION}) or pass the image_uri param"
        ) from None


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
    `image_uri`, the SageMaker PyTorch inference image for the run's region and the instance
    type's processor (`configured_image_uri`)."""
    image_uri = image_uri or configured_image_uri(run.settings, instance_type, framework_version)
    readable = "".join(c if c.isalnum() else "-" for c in run.run_id)[:32].strip("-")
    digest = hashlib.sha256(run.run_id.encode()).hexdigest()[:8]
    name = f"imgsim-embed-{readable}-{digest}"  # <= 63 characters, unique per run
    env = {
        "IMGSIM_BATCH_SIZE": "16",
        **server_environment(),
        **workers_environment(instance_type),  # one model-server worker per GPU
        **(environment or {}),
    }
    return {
        # No EnableNetworkIsolation here: the handler reads each image from S3 itself, and an
        # isolated container has neither network nor credentials. Its start installs nothing
        # from an index all the same (the artifact carries its wheels), so a VPC without NAT
        # needs only an S3 endpoint.
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
