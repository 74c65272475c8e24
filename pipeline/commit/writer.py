"""The steps of a commit, in the order readers need them, and the rules that make them safe.

1. `write_shard`: a Parquet shard at a key derived from the run, so a retry overwrites it with
   the same rows. No reader sees a shard before it is listed: a commit that stops here leaves
   an orphan that compaction removes.
2. `list_shard`: the shard listed last in its (prompt, model) manifest, by compare-and-set.
   Its ids leave the manifest's tombstones (an image deleted, then uploaded again under its key,
   gets the same id), and its rows win over any older row of those ids.
3. `put_vector`, `put_model_vector(s)`: the Embeddings items, only once their image's rows are
   listed (an item names its shard, and compaction repoints it); an image with a prompt whose
   rows this writer did not list is refused (`UnlistedVector`). An image without a prompt has
   no shard, so its item needs no listing.
4. `mark`, `note_models`: the Images record, each update conditional on the version (ETag) the
   commit wrote rows of: a record replaced or deleted meanwhile refuses it.

Then `settle_deleted` re-reads the records the commit could not trust (those that refused step
4, and those whose rows were listed again without step 4): listing took a deleted image's id out
of the tombstones, so an image deleted while the commit ran is `withdraw`n (its id back in the
tombstones of every manifest of its prompt, its Embeddings items removed), which is also what a
deletion does to an image it marked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from pipeline.storage.dynamodb_codec import timestamp
from pipeline.storage.embeddings_table import model_embedding_id
from pipeline.storage.images_table import DELETED
from pipeline.storage.manifests_table import Manifest
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow, rows_table


@dataclass(frozen=True)
class Committed:
    """An image a commit wrote (or tried to): its id, version and prompt."""

    image_id: str
    etag: str
    prompt: str | None


def is_deleted(record: Mapping[str, Any] | None) -> bool:
    """Whether a record read back is a deletion marker. Pure."""
    return record is not None and record.get("status") == DELETED


class UnlistedVector(RuntimeError):
    """An Embeddings item written before its image's rows were listed: a writer's bug."""


class CommitWriter:
    def __init__(self, stores: RunStores) -> None:
        self.stores = stores
        self._listed: set[tuple[str, str, str]] = set()  # (prompt, model_id, image_id)
        self._newest: dict[str, tuple[str, str]] = {}  # shard key -> its row created last

    # ------------------------------------------------------------- 1 and 2: rows
    def write_shard(self, key: str, model_id: str, prompt: str, rows: Sequence[ShardRow]) -> int:
        """Step 1: the shard of `rows` (one per image) at `key`; returns its row count."""
        table = rows_table(rows, len(rows[0].embedding), model_id, prompt)
        self.stores.shards.write(key, table)
        last = max(rows, key=lambda r: (r.created_at, r.image_id))
        self._newest[key] = (last.image_id, timestamp(last.created_at))
        return int(table.num_rows)

    def list_shard(
        self, key: str, model_id: str, prompt: str, rows: int, ids: Iterable[str]
    ) -> None:
        """Step 2: the written shard `key` listed last, holding the rows of `ids` (and, when
        this writer wrote it, noting its row created last for GET /prompts)."""
        listed = frozenset(ids)
        newest = self._newest.get(key)
        self.stores.manifests.update(
            prompt,
            model_id,
            partial(Manifest.with_shard, key=key, rows=rows, ids=listed, newest=newest),
        )
        self._listed.update((prompt, model_id, image_id) for image_id in listed)

    def write_and_list(self, key: str, model_id: str, prompt: str, rows: Sequence[ShardRow]) -> int:
        """Steps 1 and 2 for one shard; returns its row count."""
        count = self.write_shard(key, model_id, prompt, rows)
        self.list_shard(key, model_id, prompt, count, (row.image_id for row in rows))
        return count

    # ------------------------------------------------------------ 3: Embeddings
    def put_vector(
        self, image: Committed, model_id: str, vector: np.ndarray, shard: str | None, at: str
    ) -> None:
        """Step 3: the image's own vector, naming the shard that lists its row."""
        self._require_listed(image, model_id)
        self.stores.embeddings.put(image.image_id, model_id, vector, shard, image.etag, at)

    def put_model_vector(
        self, image: Committed, model_id: str, vector: np.ndarray, at: str
    ) -> None:
        """Step 3 for a vector of another model than the image's own, beside it."""
        self._require_listed(image, model_id)
        self.stores.embeddings.put_model_vector(image.image_id, model_id, vector, image.etag, at)

    def put_model_vectors(
        self, model_id: str, vectors: Sequence[tuple[Committed, np.ndarray]], at: str
    ) -> None:
        """Step 3 for many images' vectors of one model, beside their own (batched)."""
        for image, _ in vectors:
            self._require_listed(image, model_id)
        self.stores.embeddings.put_model_vectors(
            model_id, [(image.image_id, vector, image.etag) for image, vector in vectors], at
        )

    def _require_listed(self, image: Committed, model_id: str) -> None:
        if image.prompt and (image.prompt, model_id, image.image_id) not in self._listed:
            raise UnlistedVector(
                f"{image.image_id}'s {model_id} vector comes before its rows are listed in "
                f"{image.prompt!r}"
            )

    # ---------------------------------------------------------------- 4: Images
    def mark(self, image: Committed, values: dict[str, Any]) -> bool:
        """Step 4: `values` on the record if it still is this version and not deleted."""
        return self.stores.images.set_outcome(image.image_id, image.etag, values)

    def note_models(self, image: Committed, models: set[str]) -> bool:
        """Step 4 of a vector beside the image's own: the record notes the models it has
        vectors of, if it still is this version and embedded."""
        return self.stores.images.add_embedded_models(image.image_id, image.etag, models)

    # ------------------------------------------------------------------- after
    def settle_deleted(self, images: Iterable[Committed]) -> dict[str, dict[str, Any] | None]:
        """Re-read (consistently) each image's record after its rows were listed; withdraw
        those deleted meanwhile from `prompt`. The records read, by id (None: no record)."""
        records: dict[str, dict[str, Any] | None] = {}
        for image in images:
            record = self.stores.images.get(image.image_id)
            records[image.image_id] = record
            if is_deleted(record):
                self.withdraw(image.image_id, image.prompt)
        return records

    def withdraw(self, image_id: str, prompt: str | None, tombstone: bool = True) -> None:
        """An image marked deleted: its id in the tombstones of every manifest of its prompt
        (lookups skip it, compaction drops its rows), its Embeddings items removed. Without
        `tombstone`, the manifests get one only while a vector is left (a replay after a crash
        between the two): an image that never had a row costs no compaction."""
        stores = self.stores
        manifests = stores.manifests.of_prompt(prompt) if prompt else []
        if tombstone or stores.embeddings.get(image_id) is not None:
            ids = frozenset([image_id])
            for manifest in manifests:
                stores.manifests.update(
                    manifest.prompt, manifest.model_id, lambda m: m.with_tombstones(ids)
                )
        stores.embeddings.delete(image_id)
        # vectors a model upgrade's backfill put beside it: of the prompt's models, and of the
        # models its record notes (the marker keeps `embedded_models`; an image without a
        # prompt has no manifest to name them)
        record = stores.images.get(image_id) or {}
        models = {m.model_id for m in manifests} | set(record.get("embedded_models", ()))
        for model_id in sorted(models):
            stores.embeddings.delete(model_embedding_id(image_id, model_id))
