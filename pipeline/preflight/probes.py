"""The preflight's AWS calls, all read-only, as the operator's identity: GetFoundationModel and
GetFoundationModelAvailability in the Bedrock region, ListServiceQuotas (SageMaker) and, for a
named environment, MWAA's GetEnvironment in the stack's region. Each call's answer or error goes
to its check in `checks`; a call that fails is reported as "could not check", never raised."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline import aws
from pipeline.aws_build.mwaa_bundle import MWAA_AIRFLOW_VERSION
from pipeline.embedding.transform_params import DEFAULT_INSTANCE_TYPE
from pipeline.generation.model_status import control_plane
from pipeline.preflight.checks import (
    Answer,
    Check,
    model_access,
    model_offered,
    mwaa_version,
    transform_quota,
)
from pipeline.settings import Settings

# Few retries and short timeouts: an operator is waiting, and an unanswered call is reported.
PREFLIGHT = Config(
    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=15
)


@dataclass(frozen=True)
class Plan:
    """What the stack will ask of the account."""

    model_id: str
    transform_instance_type: str = DEFAULT_INSTANCE_TYPE
    transform_instance_count: int = 1
    mwaa_environment: str | None = None


def ask(call: Callable[..., Any], **arguments: Any) -> Answer:
    try:
        return Answer(response=call(**arguments))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return Answer(code=str(error.get("Code") or status), message=str(error.get("Message", "")))
    except BotoCoreError as exc:
        return Answer(code=type(exc).__name__, message=str(exc))


def _all_quotas(client: Any, service_code: str) -> dict[str, Any]:
    quotas = []
    for page in client.get_paginator("list_service_quotas").paginate(ServiceCode=service_code):
        quotas.extend(page.get("Quotas", []))
    return {"Quotas": quotas}


def run(settings: Settings, plan: Plan, today: date | None = None) -> list[Check]:
    today = today or datetime.now(UTC).date()
    bedrock = aws.client(control_plane(settings), "bedrock", config=PREFLIGHT)
    region, model = settings.bedrock_region, plan.model_id
    checks = [
        model_offered(
            model, region, ask(bedrock.get_foundation_model, modelIdentifier=model), today
        ),
        model_access(model, region, ask(bedrock.get_foundation_model_availability, modelId=model)),
    ]
    quotas = aws.client(settings, "service-quotas", config=PREFLIGHT)
    checks.append(
        transform_quota(
            plan.transform_instance_type,
            plan.transform_instance_count,
            settings.region,
            ask(_all_quotas, client=quotas, service_code="sagemaker"),
        )
    )
    environment = None
    if plan.mwaa_environment:
        # an endpoint of our own (the local stack's MWAA emulator) takes no "api." host prefix
        local = Config(inject_host_prefix=False) if settings.endpoint("mwaa") else None
        mwaa = aws.client(settings, "mwaa", config=PREFLIGHT.merge(local) if local else PREFLIGHT)
        environment = ask(mwaa.get_environment, Name=plan.mwaa_environment)
    checks.append(
        mwaa_version(plan.mwaa_environment, settings.region, MWAA_AIRFLOW_VERSION, environment)
    )
    return checks
