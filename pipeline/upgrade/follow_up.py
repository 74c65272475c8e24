"""The reembed runs an embedding run calls for after a model upgrade switched some prompts.

`embed_images` embeds with its own model (the old one until the operator repoints it), so a new
image of a prompt whose pointer already names the new model gets only an old-model vector and
is no candidate of that prompt's lookups. Its commit therefore asks for a reembed run per new
artifact, over the prompts concerned: that run plans only the images still missing the new
vector and leaves the already-switched pointer as it is. A pointer without an artifact (pinned,
or moved by hand) asks for nothing: nothing says which artifact would re-embed it.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pipeline.storage.active_models import ActiveModels


def follow_up_runs(active: ActiveModels, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The confs of the reembed runs a commit calls for, one per artifact:
    `{"model_data_url": ..., "prompts": [sorted]}`, ordered by artifact. `report` is
    `EmbeddingRun.commit()`'s: the model it embedded with and the prompts it wrote shards for.
    Empty (the normal case) when no such prompt points at another model with an artifact."""
    embedded_with = report.get("model_id")
    if not embedded_with:
        return []
    prompts: dict[str, list[str]] = defaultdict(list)
    for prompt in sorted(report.get("prompts") or ()):
        pointer = active.pointer(prompt)
        if pointer and pointer.model_id != embedded_with and pointer.model_data_url:
            prompts[pointer.model_data_url].append(prompt)
    return [{"model_data_url": url, "prompts": found} for url, found in sorted(prompts.items())]


def triggers(
    runs: list[dict[str, Any]], run_id: str, transform: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """TriggerDagRunOperator kwargs per run: the conf carries the embed run's own transform
    params (role, image, instances: a reembed run started with defaults could not run where
    the embed run was given them by conf), and the triggered run id derives from the run and
    the conf, so a retried or cleared task finds its run instead of adding one. Pure."""
    kwargs = []
    for run in runs:
        conf = {**transform, **run}
        digest = hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:12]
        kwargs.append({"conf": conf, "trigger_run_id": f"{run_id}__reembed_{digest}"})
    return kwargs
