"""Rows a commit lists for an object version that was replaced, and embedded again, before the
commit: the run's row may come later in the manifest than the current version's, and then it
is the one lookups read, so they leave the image out (the row's `source_etag` is not the
record's). Listing the current row again when it already came last only adds a duplicate row
that compaction merges.

Runs of one DAG do not overlap, but an embedding run, a copy's one-row shard (ingest) and a
model upgrade's batches can commit rows of one image in any order. The commit then puts the
current version back in front: it lists that version's row again, from its Embeddings item,
or, when its own write replaced that item too, sends the image back to `pending`, so the next
run embeds the current version (the stale item no longer matches the record, so it is not
mistaken for a finished embedding).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

from pipeline.lifecycle.near_duplicates import Committed
from pipeline.storage.images_table import EMBEDDED, PENDING, embedded_with
from pipeline.storage.keys import shard_key
from pipeline.storage.manifests_table import Manifest
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow, rows_table


def superseded(image: Committed, record: dict[str, Any] | None, model_id: str) -> bool:
    """Whether the record now is another version of the image, embedded with `model_id` into
    the prompt the run wrote a row of it for. Pure."""
    return (
        record is not None
        and bool(image.prompt)
        and record.get("status") == EMBEDDED
        and record.get("etag") != image.etag
        and record.get("prompt") == image.prompt
        and embedded_with(record, model_id)
    )


class SupersededRows:
    def __init__(self, stores: RunStores) -> None:
        self.images = stores.images
        self.embeddings = stores.embeddings
        self.manifests = stores.manifests
        self.shards = stores.shards

    def restore(self, refused: Iterable[Committed], model_id: str, run_id: str) -> dict[str, int]:
        """For the images whose record refused the run's status: how many current rows were
        listed again and how many images went back to pending."""
        relisted: dict[str, list[ShardRow]] = defaultdict(list)
        reopened = 0
        for image in refused:
            record = self.images.get(image.image_id)
            if record is None or not superseded(image, record, model_id):
                continue
            row = self._current_row(record, model_id)
            if row is not None:
                relisted[str(image.prompt)].append(row)
            elif self.images.set_outcome(image.image_id, record["etag"], {"status": PENDING}):
                reopened += 1
        for prompt, rows in sorted(relisted.items()):
            key = shard_key(model_id, prompt, run_id, part="current")
            table = rows_table(rows, len(rows[0].embedding), model_id, prompt)
            self.shards.write(key, table)
            ids = frozenset(row.image_id for row in rows)
            self.manifests.update(
                prompt, model_id, partial(Manifest.with_shard, key=key, rows=len(rows), ids=ids)
            )
        return {"relisted": sum(map(len, relisted.values())), "reopened": reopened}

    def _current_row(self, record: dict[str, Any], model_id: str) -> ShardRow | None:
        """The current version's row, when its vector of this model is still stored."""
        item = self.embeddings.get_for_model(record["image_id"], model_id)
        if item is None or item.get("source_etag") != record["etag"]:
            return None
        return ShardRow(
            image_id=record["image_id"],
            embedding=item["embedding"],
            created_at=datetime.fromisoformat(record["created_at"].replace("Z", "+00:00")),
            s3_key=record["s3_key"],
            source_etag=record["etag"],
        )
