"""The emulator's model catalogue: what GetFoundationModel answers for each image model, with
the lifecycle AWS's model lifecycle page lists and the regions its model card lists (as read
for this project; see docs/design.md, Generation). Ids not listed are answered 404, as Bedrock
does for an unknown model; a listed model asked for in a region that does not serve it is
answered as Bedrock does there (`NOT_OFFERED`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    provider: str
    status: str  # ACTIVE | LEGACY
    regions: tuple[str, ...]  # where Bedrock serves it in-region (no inference profile)
    end_of_life: date | None = None


# Stability AI's image models are served in us-west-2 alone; Amazon's in more regions (those
# listed here are the ones read; the emulator refuses the others).
STABILITY_REGIONS = ("us-west-2",)
MODELS: dict[str, CatalogueModel] = {
    "amazon.titan-image-generator-v2:0": CatalogueModel(
        "Titan Image Generator G1 v2",
        "Amazon",
        "LEGACY",
        ("us-east-1", "us-west-2"),
        date(2026, 6, 30),
    ),
    "amazon.nova-canvas-v1:0": CatalogueModel(
        "Nova Canvas", "Amazon", "LEGACY", ("us-east-1", "eu-west-1"), date(2026, 9, 30)
    ),
    "stability.sd3-5-large-v1:0": CatalogueModel(
        "SD3.5 Large", "Stability AI", "ACTIVE", STABILITY_REGIONS
    ),
    "stability.stable-image-core-v1:1": CatalogueModel(
        "Stable Image Core", "Stability AI", "ACTIVE", STABILITY_REGIONS
    ),
    "stability.stable-image-ultra-v1:1": CatalogueModel(
        "Stable Image Ultra", "Stability AI", "ACTIVE", STABILITY_REGIONS
    ),
}
# Bedrock's answer, to GetFoundationModel and InvokeModel alike, for a model id the region does
# not serve.
NOT_OFFERED = ("ValidationException", "The provided model identifier is invalid.")


def offered_in(model_id: str, region: str) -> bool:
    """Whether the catalogue's model is served in `region` (False for an unknown id)."""
    model = MODELS.get(model_id)
    return model is not None and region in model.regions


def model_details(model_id: str, region: str = "us-east-1") -> dict[str, Any] | None:
    """GetFoundationModel's modelDetails, or None for an id the catalogue does not hold."""
    model = MODELS.get(model_id)
    if model is None:
        return None
    lifecycle: dict[str, Any] = {"status": model.status}
    if model.end_of_life:
        end = datetime(*model.end_of_life.timetuple()[:3], tzinfo=UTC)
        lifecycle["endOfLifeTime"] = end.isoformat()
    return {
        "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
        "modelId": model_id,
        "modelName": f"{model.name} (served by the imgsim procedural painter, a stand-in)",
        "providerName": model.provider,
        "inputModalities": ["TEXT"],
        "outputModalities": ["IMAGE"],
        "responseStreamingSupported": False,
        "customizationsSupported": [],
        "inferenceTypesSupported": ["ON_DEMAND"],
        "modelLifecycle": lifecycle,
    }


def past_end_of_life(model_id: str, today: date) -> date | None:
    model = MODELS.get(model_id)
    if model and model.end_of_life and model.end_of_life <= today:
        return model.end_of_life
    return None


@dataclass(frozen=True)
class Access:
    """The account's standing with a model, as GetFoundationModelAvailability reports it: the
    Marketplace agreement (AVAILABLE | PENDING | NOT_AVAILABLE | ERROR, with a message for
    ERROR), whether the caller is authorized and whether the account is entitled. Set on the
    emulator to play an account that has not subscribed yet, or cannot."""

    agreement: str = "AVAILABLE"
    agreement_error: str = ""
    authorized: bool = True
    entitled: bool = True


def availability(model_id: str, region: str, access: Access) -> dict[str, Any] | None:
    """GetFoundationModelAvailability's answer, or None for an id the catalogue does not hold."""
    if model_id not in MODELS:
        return None
    agreement: dict[str, Any] = {"status": access.agreement}
    if access.agreement_error:
        agreement["errorMessage"] = access.agreement_error
    return {
        "modelId": model_id,
        "agreementAvailability": agreement,
        "authorizationStatus": "AUTHORIZED" if access.authorized else "NOT_AUTHORIZED",
        "entitlementAvailability": "AVAILABLE" if access.entitled else "NOT_AVAILABLE",
        "regionAvailability": "AVAILABLE" if offered_in(model_id, region) else "NOT_AVAILABLE",
    }
