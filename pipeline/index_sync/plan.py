"""What the sync does to each (prompt, model): pure decisions on its manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.storage.manifests_table import Manifest

Action = Literal["build", "sync", "none"]


@dataclass(frozen=True)
class Target:
    prompt: str
    model_id: str
    action: Action

    def as_dict(self) -> dict[str, str]:
        return {"prompt": self.prompt, "model_id": self.model_id, "action": self.action}


def action(manifest: Manifest, threshold: int, rebuild: bool = False) -> Action:
    """`build` a new table when the (prompt, model) has reached `threshold` live rows and has
    none (or a rebuild is asked for), `sync` the pending shards and deleted images of one it
    has, else nothing. Once built an index stays: a prompt that shrinks below the threshold is
    still answered by it (the exact scan would answer the same rows)."""
    if not manifest.shards:
        return "none"
    if manifest.index_table is None:
        return "build" if rebuild or manifest.live_rows >= threshold else "none"
    if rebuild:
        return "build"
    return "sync" if manifest.pending or manifest.tombstones else "none"


def targets(
    manifests: list[Manifest],
    threshold: int,
    prompt: str | None = None,
    model_id: str | None = None,
    rebuild: bool = False,
) -> list[Target]:
    """The (prompt, model)s with something to do, optionally only one prompt (and model); a
    rebuild applies only to a named prompt."""
    chosen = [
        m
        for m in manifests
        if (prompt is None or m.prompt == prompt) and (model_id is None or m.model_id == model_id)
    ]
    out = []
    for m in chosen:
        act = action(m, threshold, rebuild and prompt is not None)
        if act != "none":
            out.append(Target(m.prompt, m.model_id, act))
    return out
