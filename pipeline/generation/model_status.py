"""Is the image model still there? Bedrock's control plane (GetFoundationModel, asked in the
Bedrock region) reports each model's lifecycle: ACTIVE, or LEGACY with an end-of-life date. A
Legacy model is closed to new customers and fails for everyone after its end of life, so a
campaign's plan and the API's first generation check it: Legacy is logged as a warning; end of
life, an unknown id or a model not offered in the Bedrock region is an error."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline import aws
from pipeline.generation.budget import LIFECYCLE_BUDGET
from pipeline.generation.families import family
from pipeline.settings import Settings

log = logging.getLogger(__name__)

STABILITY_NOTE = (
    "Stability AI models are served in us-west-2 only and are sold through AWS Marketplace: the "
    "first InvokeModel subscribes the account, which needs the calling role to have "
    "aws-marketplace:Subscribe, Unsubscribe and ViewSubscriptions and the account a valid "
    "payment method (`imgsim preflight` checks it)"
)
# What GetFoundationModel and InvokeModel answer for a model the region does not offer (and for
# an unknown id): ResourceNotFound, or ValidationException "The provided model identifier is
# invalid."
NOT_OFFERED_CODES = ("ResourceNotFoundException", "ValidationException")


class ModelUnavailable(Exception):
    """The model is unknown in this region, past its end of life, or not granted to the
    account: no call to it can succeed."""


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    status: str  # ACTIVE | LEGACY
    end_of_life: date | None = None


def model_status_of(model_id: str, details: dict[str, Any]) -> ModelStatus:
    """From GetFoundationModel's modelDetails."""
    cycle = details.get("modelLifecycle") or {}
    end = cycle.get("endOfLifeTime")
    return ModelStatus(model_id, str(cycle.get("status", "ACTIVE")), end.date() if end else None)


def verdict(model_status: ModelStatus, today: date) -> tuple[bool, str]:
    """(is it Legacy, the message to log) for a usable model; ModelUnavailable for one past its
    end of life."""
    model = model_status.model_id
    if model_status.status == "LEGACY":
        if model_status.end_of_life and model_status.end_of_life <= today:
            raise ModelUnavailable(
                f"{model} reached its end of life on {model_status.end_of_life}: choose an Active "
                "image model (docs/design.md, Generation)"
            )
        until = f", end of life on {model_status.end_of_life}" if model_status.end_of_life else ""
        return True, (
            f"{model} is Legacy on Bedrock{until}: closed to new customers; move to an Active "
            "image model (docs/design.md, Generation)"
        )
    note = f"; {STABILITY_NOTE}" if family(model) == "stability" else ""
    return False, f"{model} is {model_status.status.title()} on Bedrock{note}"


REGION_FIX = (
    "set the Bedrock region (IMGSIM_BEDROCK_REGION, the template's BedrockRegion) to one the "
    "model's card lists"
)


def not_offered_reason(model_id: str, region: str) -> str:
    return (
        f"{model_id} is not offered by Bedrock in {region} (a region that does not serve it, an "
        "unknown id, or gone after its end of life)"
    )


def not_offered(model_id: str, region: str) -> str:
    """The one message for a model that Bedrock does not offer in `region`, with its fix."""
    return f"{not_offered_reason(model_id, region)}: {REGION_FIX}"


def control_plane(settings: Settings) -> Settings:
    """Settings whose `bedrock` endpoint is the runtime's when only the runtime is pointed
    elsewhere: the local emulator serves both on one port. On AWS neither is set."""
    if settings.endpoint("bedrock") or not settings.endpoint("bedrock-runtime"):
        return settings
    endpoints = {**settings.endpoints, "bedrock": settings.endpoint("bedrock-runtime") or ""}
    return replace(settings, endpoints=endpoints)


def check_model(
    settings: Settings, model_id: str, client: Any | None = None, today: date | None = None
) -> str | None:
    """Ask GetFoundationModel (one quick call); log and return the verdict, or raise
    ModelUnavailable. When the answer cannot be had (a role without bedrock:GetFoundationModel,
    the control plane unreachable) that is logged and None returned: the model may still answer,
    and the next call asks again."""
    client = client or aws.client(
        control_plane(settings), "bedrock", config=LIFECYCLE_BUDGET.config()
    )
    try:
        details = client.get_foundation_model(modelIdentifier=model_id)["modelDetails"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in NOT_OFFERED_CODES:
            raise ModelUnavailable(not_offered(model_id, settings.bedrock_region)) from None
        hint = " (allow bedrock:GetFoundationModel)" if "AccessDenied" in str(exc) else ""
        log.warning("cannot check %s's lifecycle%s: %s", model_id, hint, exc)
        return None
    except BotoCoreError as exc:
        log.warning("cannot check %s's lifecycle: %s", model_id, exc)
        return None
    legacy, message = verdict(model_status_of(model_id, details), today or datetime.now(UTC).date())
    log.log(logging.WARNING if legacy else logging.INFO, message)
    return message
