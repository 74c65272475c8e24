"""The prompts a lookup can be asked about: each prompt with the model that answers it (its
active-model pointer; a prompt without a pointer: every model with shards for it, as a lookup
then ranks with the query image's own model), when that model's shards hold vectors and the
prompt still has an embedded image (lookups only return images whose record says embedded, so
a prompt without one has nothing to show). During and after an upgrade, the models a prompt
no longer (or not yet) answers with are not offered."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from pipeline.storage.active_models import ACTIVE_KEY
from pipeline.storage.manifests_table import Manifest, later


def newest_listed(manifests: Iterable[Manifest]) -> dict[str, tuple[str, str]]:
    """Each prompt's row created last of all its models' manifests ({prompt: (image_id,
    created_at)}), for prompts whose every manifest with rows noted one (a manifest listed
    before commits noted theirs may hold a later image). Pure."""
    found: dict[str, tuple[str, str] | None] = {}
    for m in manifests:
        if m.model_id == ACTIVE_KEY or not m.rows:
            continue
        if m.newest is None:
            found[m.prompt] = None
        elif m.prompt not in found or found[m.prompt] is not None:
            found[m.prompt] = later(found.get(m.prompt), m.newest)
    return {prompt: newest for prompt, newest in found.items() if newest is not None}


def prompt_catalog(
    manifests: Iterable[Manifest],
    newest: Callable[[str], dict[str, Any] | None],
    active: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One entry per (prompt, model_id) that answers lookups, with its row count (deleted
    images' rows left out: `Manifest.live_rows`) and the prompt's newest embedded image,
    sorted by prompt then model; `active` holds the prompts' pointers ({prompt: model_id});
    `newest` is asked once per prompt."""
    active = active or {}
    newest_of = cache(newest)
    entries = []
    for manifest in sorted(manifests, key=lambda m: (m.prompt, m.model_id)):
        if manifest.model_id == ACTIVE_KEY:  # a pointer, not a manifest
            continue
        if active.get(manifest.prompt, manifest.model_id) != manifest.model_id:
            continue  # the prompt is answered by another model
        image = newest_of(manifest.prompt) if manifest.live_rows else None
        if image is None:
            continue
        entries.append(
            {
                "prompt": manifest.prompt,
                "model_id": manifest.model_id,
                "images": manifest.live_rows,
                "newest": {"image_id": image["image_id"], "created_at": image["created_at"]},
            }
        )
    return entries
