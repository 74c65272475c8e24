"""What an embedding run's commit leaves when an image it embedded was replaced, and the new
version embedded, before the commit: the run's Images write is refused (ETag), but its
Embeddings write replaced the image's own item, and its row may come later in the manifest
than the current version's, so lookups read that row and leave the image out (its
`source_etag` is not the record's). Runs of one DAG do not overlap, but another DAG's run, a
model upgrade's batch or a copy's one-row shard can embed the same image meanwhile.

The commit puts the current version back: when the image's own Embeddings item is no longer
the current version's (this run replaced it), the image goes back to `pending`, so the next
run embeds the current version (the stale item does not match the record, so `gather` does
not take it for a finished embedding); otherwise, when this run's row can stand in front of
the current one (same prompt and model), that version's row is listed again. Listing it when
it already came last only adds a duplicate row that compaction merges. A version that is
embedded while the commit relists is sent back to `pending` too, and one deleted meanwhile gets
its tombstone back (listing a row takes its id out of the tombstones).

A model upgrade's batch or a copy that lands late is not repaired here: the image is left out
of that model's lookups (never shown with the old vector) until it is embedded again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pipeline.commit.writer import Committed, CommitWriter
from pipeline.storage.images_table import EMBEDDED, PENDING, embedded_with
from pipeline.storage.keys import shard_key
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow


def replaced_and_embedded(image: Committed, record: dict[str, Any] | None) -> bool:
    """Whether the record now is another version of the image, embedded. Pure."""
    return (
        record is not None and record.get("status") == EMBEDDED and record.get("etag") != image.etag
    )


def shadows(image: Committed, record: dict[str, Any], model_id: str) -> bool:
    """Whether the run's row of the image can stand in front of the current version's: same
    prompt, and the record is embedded with the run's model. Pure."""
    return (
        bool(image.prompt)
        and record.get("prompt") == image.prompt
        and embedded_with(record, model_id)
    )


class SupersededRows:
    def __init__(self, stores: RunStores) -> None:
        self.images = stores.images
        self.embeddings = stores.embeddings
        self.writer = CommitWriter(stores)

    def restore(self, refused: Iterable[Committed], model_id: str, run_id: str) -> dict[str, int]:
        """For the images whose record refused the run's status: how many current rows were
        listed again and how many images went back to pending."""
        relisted: dict[str, list[ShardRow]] = defaultdict(list)
        reopened = 0
        for image in refused:
            record = self.images.get(image.image_id)
            if record is None or not replaced_and_embedded(image, record):
                continue
            own = self.embeddings.get(image.image_id)
            if own is None or own.get("source_etag") != record["etag"]:
                reopened += self._reopen(record["image_id"], record["etag"])
            elif shadows(image, record, model_id):
                row = self._current_row(record, model_id)
                if row is not None:
                    relisted[str(image.prompt)].append(row)
                else:
                    reopened += self._reopen(record["image_id"], record["etag"])
        for prompt, rows in sorted(relisted.items()):
            self._list(rows, model_id, prompt, run_id)
        rows = [row for rows in relisted.values() for row in rows]
        prompts = {row.image_id: p for p, rows in relisted.items() for row in rows}
        return {"relisted": len(rows), "reopened": reopened + self._moved_on(rows, prompts)}

    def _list(self, rows: list[ShardRow], model_id: str, prompt: str, run_id: str) -> None:
        key = shard_key(model_id, prompt, run_id, part="current")
        self.writer.write_and_list(key, model_id, prompt, rows)

    def _moved_on(self, rows: list[ShardRow], prompts: dict[str, str]) -> int:
        """Images embedded from yet another version while their rows were listed again (the
        relisted row may now stand in front of that version's): back to pending. Images
        deleted meanwhile: the listing took them out of the tombstones, and the writer's
        `settle_deleted` puts them back (`prompts`: the prompt each row was listed in)."""
        listed = [Committed(row.image_id, row.source_etag, prompts[row.image_id]) for row in rows]
        records = self.writer.settle_deleted(listed)
        reopened = 0
        for image in listed:
            record = records[image.image_id]
            if record is not None and replaced_and_embedded(image, record):
                reopened += self._reopen(image.image_id, record["etag"])
        return reopened

    def _reopen(self, image_id: str, etag: str) -> int:
        """Back to pending with a fresh count of attempts: the run that embedded this version
        did its part, so the runs that embed it again are not charged for the late commit."""
        reopened = {"status": PENDING, "embed_attempts": 0}
        return int(self.writer.mark(Committed(image_id, etag, None), reopened))

    def _current_row(self, record: dict[str, Any], model_id: str) -> ShardRow | None:
        """The current version's row, when its vector of this model is still stored."""
        item = self.embeddings.get_for_model(record["image_id"], model_id)
        if item is None or item.get("source_etag") != record["etag"]:
            return None
        return ShardRow.of_record(record, item["embedding"])
