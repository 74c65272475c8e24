"""A model upgrade's backfill: every embedded image without a vector of the new model,
re-embedded in batches through the same batch transform as an embedding run.

plan    read the artifact's model_id, list the embedded images of the prompts (or all) that
        lack its vector, pin each prompt's active-model pointer to the model answering it now,
        and write one job input per batch (the embedding-run layout, one run id per batch);
commit  per batch, after its transform job: one shard per prompt under the new `model=`
        prefix, listed in the new model's manifest, then the vectors beside the old ones in
        Embeddings, then the model noted on each Images record (only if still that version);
        an image deleted while the batch ran is then settled as after an embedding run (its
        rows tombstoned, its vectors removed).

Lookups never see the new vectors before `switch` points a prompt at the new model, and the
old vectors stay until `retire`. Keys and names derive from the run id and the batch number,
so a retried task or a re-run rewrites identical content; a re-run after a failure plans only
what is still missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pipeline import aws
from pipeline.commit.writer import CommitWriter, is_deleted
from pipeline.embedding.run import PART_LINES, EmbeddingRun, Target, rows_by_prompt
from pipeline.prompts import checked_prompt
from pipeline.settings import Settings
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.images_table import embedded_with
from pipeline.storage.keys import reembed_batch_run, reembed_plan_key, shard_key
from pipeline.storage.run_stores import RunStores
from pipeline.upgrade.artifact import model_id_of

log = logging.getLogger(__name__)
NOTE_THREADS = 8  # Images updates in flight while a batch commits


def batches(records: Iterable[Mapping[str, Any]], size: int) -> list[list[Target]]:
    """Targets ordered by (prompt, image_id), cut every `size` images. Pure."""
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, not {size}")
    targets = sorted(
        (
            Target(
                image_id=r["image_id"],
                s3_key=r["s3_key"],
                etag=r["etag"],
                prompt=r.get("prompt"),
                created_at=r["created_at"],
            )
            for r in records
        ),
        key=lambda t: (t.prompt or "", t.image_id),
    )
    return [targets[i : i + size] for i in range(0, len(targets), size)]


def previous_model(pointer: str | None, models: Mapping[str, int], new: str) -> str | None:
    """The model a prompt is answered by before the switch: its pointer, else the other model
    with the most rows. Pure."""
    if pointer is not None:
        return pointer
    others = {m: rows for m, rows in models.items() if m != new}
    return max(sorted(others), key=lambda m: others[m]) if others else None


class Backfill:
    def __init__(
        self,
        settings: Settings,
        run_id: str,
        s3: Any | None = None,
        stores: RunStores | None = None,
        active: ActiveModels | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self._s3 = s3 or aws.client(settings, "s3")
        self.stores = stores or RunStores.from_settings(settings)
        self.images = self.stores.images
        self.active = active or ActiveModels(settings)
        self._generation: str | None = None

    def batch_run(self, batch: int) -> EmbeddingRun:
        """The embedding run a batch's files and job are named after: the run id, the plan's
        generation (a digest of what it planned: a retried plan gets the same names, a re-plan
        of the same run after some batches committed gets new ones, so no listed shard is ever
        overwritten with other rows) and the batch number."""
        if self._generation is None:
            self._generation = str(self.read_plan()["generation"])
        return EmbeddingRun(
            self.settings,
            reembed_batch_run(f"{self.run_id}.{self._generation}", batch),
            s3=self._s3,
            stores=self.stores,
        )

    # -------------------------------------------------------------------- plan
    def plan(
        self, model_data_url: str, prompts: list[str] | None, batch_size: int, at: str
    ) -> dict[str, Any]:
        """Write every batch's job input and the run's plan; returns the plan."""
        model_id = model_id_of(self._s3, model_data_url)
        limit = self.settings.limits.max_prompt_chars
        wanted = sorted({checked_prompt(p, limit) for p in prompts}) if prompts else None
        records = (
            [r for p in wanted for r in self.images.embedded(p)]
            if wanted is not None
            else self.images.embedded()
        )
        todo = [r for r in records if not embedded_with(r, model_id, strict=True)]
        totals = Counter(r.get("prompt") for r in records)
        missing = Counter(r.get("prompt") for r in todo)
        summary: dict[str, dict[str, Any]] = {}
        for prompt in sorted(set(wanted or ()) | {p for p in totals if p}):
            summary[prompt] = {
                "total": totals[prompt],
                "todo": missing[prompt],
                "old_model": self._pin(prompt, model_id, at),
            }
        cut = batches(todo, batch_size)
        self._generation = hashlib.sha256(
            json.dumps(
                [model_id, [[[t.image_id, t.etag] for t in batch] for batch in cut]]
            ).encode()
        ).hexdigest()[:8]
        for index, batch in enumerate(cut):
            self._write_batch(index, batch, at)
        plan = {
            "run_id": self.run_id,
            "model_id": model_id,
            "model_data_url": model_data_url,
            "generation": self._generation,
            "batches": len(cut),
            "images": len(todo),
            "prompts": summary,
            "without_prompt": {"total": totals[None], "todo": missing[None]},
        }
        self._put(reembed_plan_key(self.run_id), json.dumps(plan).encode())
        return plan

    def _pin(self, prompt: str, model_id: str, at: str) -> str | None:
        """Pin the prompt's pointer to the model answering it now, so lookups keep using it
        while the new model's shards fill up; returns that model (None: nothing answers)."""
        old = previous_model(self.active.get(prompt), self.active.models(prompt), model_id)
        return self.active.pin(prompt, old, at) if old is not None else None

    def _write_batch(self, index: int, targets: list[Target], at: str) -> None:
        self.batch_run(index).write_input(targets, at, PART_LINES)

    def read_plan(self) -> dict[str, Any]:
        return dict(json.loads(self._read(reembed_plan_key(self.run_id))))

    # ------------------------------------------------------------------ commit
    def commit(self, batch: int) -> dict[str, Any]:
        """Shards, manifest, vectors, then the records' model notes of one batch."""
        model_id = self.read_plan()["model_id"]
        run = self.batch_run(batch)
        targets = run.planned_targets() or []
        run_at = json.loads(self._read(f"{run.prefix}targets.json"))["run_at"]
        results = self._outputs(run, targets, model_id)
        good = [(t, r) for t, r in zip(targets, results, strict=True) if "embedding" in r]
        failed = [
            {"image_id": t.image_id, "error": str(r.get("error"))}
            for t, r in zip(targets, results, strict=True)
            if "embedding" not in r
        ]
        writer = CommitWriter(self.stores)
        rows = {
            prompt: writer.write_and_list(
                shard_key(model_id, prompt, run.run_id, part="reembed"), model_id, prompt, listed
            )
            for prompt, listed in rows_by_prompt(good).items()
        }
        writer.put_model_vectors(
            model_id,
            [(t.committed(), np.asarray(r["embedding"], np.float32)) for t, r in good],
            run_at,
        )
        marked = self._note(writer, model_id, [t for t, _ in good])
        refused = [t.committed() for (t, _), ok in zip(good, marked, strict=True) if not ok]
        deleted = sum(map(is_deleted, writer.settle_deleted(refused).values()))
        log.info(
            "batch %s of %s: %s vectors of %s (%s records still that version, %s deleted "
            "during the run), %s failed, shard rows per prompt %s",
            batch,
            self.run_id,
            len(good),
            model_id,
            sum(marked),
            deleted,
            len(failed),
            rows,
        )
        return {
            "batch": batch,
            "embedded": len(good),
            "noted": sum(marked),
            "deleted_during_run": deleted,
            "failed": failed,
        }

    def _note(self, writer: CommitWriter, model_id: str, targets: list[Target]) -> list[bool]:
        """Note the new model on each record (a conditional update per record: BatchWriteItem
        takes no conditions), NOTE_THREADS at a time; per target, whether it was still that
        version (and embedded)."""
        own = self.images.batch_get([t.image_id for t in targets], ["embedding_model_id"])

        def note(target: Target) -> bool:
            previous = own.get(target.image_id, {}).get("embedding_model_id", model_id)
            return writer.note_models(target.committed(), {model_id, previous})

        with ThreadPoolExecutor(NOTE_THREADS) as pool:
            return list(pool.map(note, targets))

    def _outputs(
        self, run: EmbeddingRun, targets: list[Target], model_id: str
    ) -> list[dict[str, Any]]:
        """The job's output lines in input order, all of `model_id` (the artifact's card)."""
        results = run.outputs(targets, PART_LINES)
        models = {r["model_id"] for r in results if "embedding" in r}
        if models - {model_id}:
            raise ValueError(
                f"the artifact's card says {model_id}, the job produced {sorted(models)}"
            )
        return results

    def _put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self.settings.bucket, Key=key, Body=body)

    def _read(self, key: str) -> bytes:
        return bytes(self._s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read())
