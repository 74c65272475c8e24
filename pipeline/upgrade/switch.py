"""The end of a backfill: count each prompt's embedded images that have the new model's vector,
and point every complete prompt at the new model (a compare-and-set on its pointer that also
records the plan's artifact, which re-embeds the prompt's later uploads: see `follow_up`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline.storage.active_models import ActiveModels
from pipeline.storage.images_table import ImageStore, embedded_with

log = logging.getLogger(__name__)


def progress(images: ImageStore, prompt: str, model_id: str) -> dict[str, int]:
    """done/total: the prompt's embedded images with a vector of `model_id`, of all of them."""
    records = images.embedded(prompt)
    return {
        "done": sum(embedded_with(r, model_id, strict=True) for r in records),
        "total": len(records),
    }


def switch_complete(
    images: ImageStore,
    active: ActiveModels,
    plan: dict[str, Any],
    at: str,
    before_switch: Callable[[str, str], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per prompt of the plan: done/total, and the active model after switching the complete
    ones. A prompt with an image still missing its vector (failed, or embedded meanwhile by the
    old model) keeps its pointer: a re-run of the backfill embeds what is missing. A prompt
    already pointing at the new model is left as it is (a re-run, or a follow-up run).
    `before_switch(prompt, model_id)` runs just before a pointer moves (the vector index of a
    large prompt's new model is built there)."""
    model_id = plan["model_id"]
    report = {}
    for prompt, planned in sorted(plan["prompts"].items()):
        counts = progress(images, prompt, model_id)
        complete = counts["done"] == counts["total"] > 0  # nothing embedded: nothing to switch
        if complete and active.get(prompt) != model_id:  # a re-run writes nothing
            if before_switch is not None:
                before_switch(prompt, model_id)
            switched = active.switch(
                prompt, planned["old_model"], model_id, at, plan.get("model_data_url")
            )
            if not switched:
                log.warning(
                    "prompt %r: the pointer no longer names %s; left as it is",
                    prompt,
                    planned["old_model"],
                )
        report[prompt] = {**counts, "complete": complete, "active_model": active.get(prompt)}
        log.info(
            "prompt %r: %s/%s with %s, active %s",
            prompt,
            *counts.values(),
            model_id,
            report[prompt]["active_model"],
        )
    return report
