"""The emulator's model catalogue: what GetFoundationModel answers for each image model, with
the lifecycle AWS's model lifecycle page lists (as read for this project; see README,
Generation). Ids not listed are answered 404, as Bedrock does for an unknown model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    provider: str
    status: str  # ACTIVE | LEGACY
    end_of_life: date | None = None


MODELS: dict[str, CatalogueModel] = {
    "amazon.titan-image-generator-v2:0": CatalogueModel(
        "Titan Image Generator G1 v2", "Amazon", "LEGACY", date(2026, 6, 30)
    ),
    "amazon.nova-canvas-v1:0": CatalogueModel("Nova Canvas", "Amazon", "LEGACY", date(2026, 9, 30)),
    "stability.sd3-5-large-v1:0": CatalogueModel("SD3.5 Large", "Stability AI", "ACTIVE"),
    "stability.stable-image-core-v1:1": CatalogueModel(
        "Stable Image Core", "Stability AI", "ACTIVE"
    ),
    "stability.stable-image-ultra-v1:1": CatalogueModel(
        "Stable Image Ultra", "Stability AI", "ACTIVE"
    ),
}


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
