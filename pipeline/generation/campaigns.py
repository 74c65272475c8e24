"""Generation campaigns: a YAML file -> a validated Campaign -> a deterministic plan of images,
each generated at most once per (campaign, run, prompt, index), within a budget."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.generation.bedrock import BedrockImages, Refused, Throttled, TimedOut
from pipeline.generation.families import (
    DEFAULT_IMAGE_MODEL,
    family,
    max_base_prompt_chars,
    seed_in_range,
)
from pipeline.generation.generate_now import ImageModel, generation_metadata
from pipeline.generation.modifiers import CAMERA_ANGLES, STYLES, choose
from pipeline.ingest.ingestor import Ingestor
from pipeline.prompts import checked_prompt
from pipeline.storage.keys import image_key

# Dollars per image at standard quality and the default sizes (on-demand list prices).
PRICES: dict[str, float] = {
    "amazon.titan-image-generator-v2:0": 0.01,
    "amazon.nova-canvas-v1:0": 0.04,
    "stability.sd3-5-large-v1:0": 0.08,
    "stability.stable-image-core-v1:1": 0.04,
    "stability.stable-image-ultra-v1:1": 0.14,
}


class CampaignError(ValueError):
    """A campaign file that cannot run, or a run that would exceed its budget."""


@dataclass(frozen=True)
class Campaign:
    name: str
    prompts: tuple[str, ...]
    images_per_prompt: int
    model: ImageModel
    max_images: int
    max_dollars: float
    schedule: str | None = None
    camera_angles: tuple[str, ...] = CAMERA_ANGLES
    styles: tuple[str, ...] = STYLES
    prices: Mapping[str, float] = field(default_factory=lambda: dict(PRICES))

    @property
    def price(self) -> float:
        if self.model.model_id not in self.prices:
            raise CampaignError(f"no price for {self.model.model_id}: add it under prices:")
        return float(self.prices[self.model.model_id])

    def estimate(self) -> dict[str, float]:
        images = len(self.prompts) * self.images_per_prompt
        return {"images": images, "dollars": round(images * self.price, 4)}

    def check_budget(self) -> dict[str, float]:
        estimate = self.estimate()
        if estimate["images"] > self.max_images:
            raise CampaignError(
                f"campaign {self.name}: {estimate['images']} images planned, "
                f"over its budget of {self.max_images} images; nothing generated"
            )
        if estimate["dollars"] > self.max_dollars:
            raise CampaignError(
                f"campaign {self.name}: ${estimate['dollars']:.2f} planned, "
                f"over its budget of ${self.max_dollars:.2f}; nothing generated"
            )
        return estimate


def load_campaign(path: Path, max_prompt_chars: int = 1000) -> Campaign:
    try:
        raw = yaml.safe_load(Path(path).read_text())
        if not isinstance(raw, dict):
            raise CampaignError("a campaign is a YAML mapping")
        model_id = str(raw.get("model_id", DEFAULT_IMAGE_MODEL))
        family(model_id)
        angles = tuple(raw.get("camera_angles") or CAMERA_ANGLES)
        styles = tuple(raw.get("styles") or STYLES)
        limit = max_base_prompt_chars(model_id, max_prompt_chars, angles, styles)
        prompts = tuple(dict.fromkeys(checked_prompt(p, limit) for p in raw["prompts"]))
        budget = raw.get("budget") or {}
        campaign = Campaign(
            name=_name(raw["name"]),
            prompts=prompts,
            images_per_prompt=int(raw.get("images_per_prompt", 1)),
            model=ImageModel(model_id, int(raw.get("width", 512)), int(raw.get("height", 512))),
            max_images=int(budget["max_images"]),
            max_dollars=float(budget["max_dollars"]),
            schedule=raw.get("schedule"),
            camera_angles=angles,
            styles=styles,
            prices={**PRICES, **(raw.get("prices") or {})},
        )
    except CampaignError:
        raise
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise CampaignError(f"{path}: {type(exc).__name__}: {exc}") from None
    if not campaign.prompts or campaign.images_per_prompt < 1:
        raise CampaignError(f"{path}: needs prompts and images_per_prompt >= 1")
    return campaign


def _name(value: Any) -> str:
    name = str(value)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise CampaignError(f"campaign name {name!r}: letters, digits, - and _ only")
    return name


@dataclass(frozen=True)
class Planned:
    prompt: str
    index: int
    seed: int
    image_id: str


def plan_prompt(campaign: Campaign, run_id: str, prompt: str) -> list[Planned]:
    """The images of one prompt in one run: ids and seeds derived from (campaign, run, prompt,
    index), so a retried task plans exactly the same images."""
    planned = []
    for index in range(campaign.images_per_prompt):
        digest = hashlib.sha256(f"{campaign.name}|{run_id}|{prompt}|{index}".encode()).digest()
        planned.append(
            Planned(
                prompt=prompt,
                index=index,
                seed=seed_in_range(campaign.model.model_id, int.from_bytes(digest[:4], "big")),
                image_id="g" + digest[4:20].hex()[:31],
            )
        )
    return planned


def generate_planned(
    campaign: Campaign, item: Planned, ingestor: Ingestor, bedrock: BedrockImages
) -> tuple[str, str | None]:
    """(generated | existing | refused | failed, reason). An image already stored is not made
    again, so a retried task never makes an extra image."""
    key = image_key(ingestor.settings.generated_prefix, item.image_id, "png")
    if ingestor.objects.exists(key):
        return "existing", None
    modifiers = choose(item.seed, campaign.camera_angles, campaign.styles)
    modified = modifiers.apply(item.prompt)
    try:
        result = bedrock.generate(
            campaign.model.model_id,
            modified,
            campaign.model.width,
            campaign.model.height,
            item.seed,
            campaign.model.cfg_scale,
        )
    except Refused as exc:
        return "refused", str(exc)
    except (Throttled, TimedOut) as exc:
        return "failed", str(exc)
    metadata = generation_metadata(
        item.prompt,
        modified,
        campaign.model,
        item.seed,
        {**modifiers.as_dict(), "campaign": campaign.name},
    )
    ingestor.store(key, result.image, "image/png", metadata)
    return "generated", None
