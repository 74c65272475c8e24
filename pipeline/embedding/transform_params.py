"""The Airflow params and operator of a batch transform, shared by every DAG that starts one
(embed_images, reembed), so their SageMaker settings and defaults cannot drift apart."""

from __future__ import annotations

import math
import os
from datetime import timedelta
from typing import Any

from pipeline.embedding.serving_image import SERVING_IMAGE

AWS_CONN_ID = "aws_default"
TRANSFORM_WAIT = timedelta(hours=24)  # the longest a transform job is waited for
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"  # `imgsim preflight` checks its quota


def transform_params() -> dict[str, Any]:
    from airflow.sdk import Param

    return {
        "role_arn": Param(
            os.environ.get("IMGSIM_SAGEMAKER_ROLE_ARN", ""),
            type="string",
            description="the SageMaker execution role (the stack's SageMakerRoleArn output)",
        ),
        "image_uri": Param(
            os.environ.get("IMGSIM_SAGEMAKER_IMAGE_URI", ""),
            type="string",
            description="serving container image; empty: the SageMaker PyTorch inference "
            "image of framework_version for the connection's region and the instance type",
        ),
        "framework_version": Param(
            SERVING_IMAGE.framework_version,
            type="string",
            description="PyTorch version of the looked-up serving image (transformers 5 "
            "needs 2.6 or later)",
        ),
        "instance_type": Param(DEFAULT_INSTANCE_TYPE, type="string"),
        "instance_count": Param(1, type="integer", minimum=1),
        "model_environment": Param(
            {},
            type="object",
            additionalProperties={"type": "string"},
            description="extra environment of the serving container, e.g. on a GPU instance "
            '{"IMGSIM_BATCH_SIZE": "256", "IMGSIM_PRECISION": "fp16"}',
        ),
    }


TRANSFORM_PARAMS = (
    "role_arn",
    "image_uri",
    "framework_version",
    "instance_type",
    "instance_count",
    "model_environment",
)


def transform_settings(params: Any) -> dict[str, Any]:
    """The transform params of a run's params, to hand on to a run this one starts."""
    return {name: params[name] for name in TRANSFORM_PARAMS}


def transform_operator(config: Any, **extra: Any) -> Any:
    """The provider's operator, deferred to the triggerer while the job runs; `config` is the
    XComArg of the task that builds the job's configuration."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTransformOperator

    # Read when the DAG is parsed, as the DAG modules did: tests poll every second.
    poll_seconds = int(os.environ.get("IMGSIM_TRANSFORM_POLL_SECONDS", "30"))

    return SageMakerTransformOperator(
        task_id="transform",
        config=config,
        aws_conn_id=AWS_CONN_ID,
        wait_for_completion=True,
        deferrable=True,
        check_interval=poll_seconds,
        max_attempts=math.ceil(TRANSFORM_WAIT.total_seconds() / poll_seconds),
        max_ingestion_time=int(TRANSFORM_WAIT.total_seconds()),
        action_if_job_exists="timestamp",
        action_if_model_exists="timestamp",
        **extra,
    )
