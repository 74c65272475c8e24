"""Deleting an image everywhere it reached: its record, its vector, its shard rows.

One path for both triggers: an S3 ObjectRemoved event, and DELETE /images/{id} (which removes
the object first; its event then finds the work done). The steps, each idempotent:

1. the Images record becomes a deletion marker (status `deleted`, conditional on the version):
   from then on no lookup returns the image (a lookup keeps only records that are embedded);
2. the image id joins the tombstones of every manifest of its prompt (one per model), which
   lookups skip and compaction uses to drop the rows from the shard files;
3. the Embeddings item is removed.

Events arrive at least once and in any order. A removal is applied only while the key holds no
object (S3 is strongly consistent: an object there now was put after the removal, and its own
creation event records it), and, where S3 sends sequencers, only to a record created by an
earlier event. A creation event is ingested only while its object version still exists (the
ingestor's `If-Match` read) and, with sequencers, only if it is later than the deletion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.commit.writer import CommitWriter
from pipeline.errors import ApiError
from pipeline.settings import Settings
from pipeline.storage.bucket import ObjectStore
from pipeline.storage.dynamodb_codec import utc_now
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import DELETED, EMBEDDED, ImageStore
from pipeline.storage.keys import identity_for_key
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardStore

DELETE_ATTEMPTS = 5  # versions of one image recorded while DELETE /images/{id} marks it


@dataclass(frozen=True)
class DeletionResult:
    outcome: str  # deleted | duplicate | ignored
    image_id: str | None = None
    reason: str | None = None


class Deleter:
    def __init__(
        self,
        settings: Settings,
        objects: ObjectStore | None = None,
        images: ImageStore | None = None,
        embeddings: EmbeddingStore | None = None,
        manifests: ManifestStore | None = None,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.settings = settings
        self.objects = objects or ObjectStore(settings)
        self.images = images or ImageStore(settings)
        self.embeddings = embeddings or EmbeddingStore(settings)
        self.manifests = manifests or ManifestStore(settings)
        self.clock = clock

    def object_removed(self, key: str, sequencer: str | None) -> DeletionResult:
        """An ObjectRemoved event of `key` (`sequencer` normalized, or None)."""
        if self.objects.exists(key):
            return DeletionResult("ignored", reason=f"{key} was put again after this removal")
        record = self._record_of(key)
        if record is None:
            image_id = self._marker_id(key)
            self.images.put_deletion_marker(image_id, key, self.clock(), sequencer)
            return DeletionResult("deleted", image_id, "removed before it was recorded")
        return self.purge(record, sequencer)

    def delete_image(self, image_id: str) -> dict[str, Any]:
        """DELETE /images/{id}: remove the object, then everything else; 404 when unknown.
        Repeating it answers the same (the record stays a deletion marker).

        It answers "deleted" only once the record is a marker: a version put and recorded
        between the read and the marking goes too, object first (left in the bucket, a
        redelivered creation event of it would record it again); if versions keep coming,
        503: every object seen is gone from the bucket, and their removal events finish the
        deletion, but the answer claims it only once a retry finds the marker."""
        record = self.images.get(image_id)
        if record is None:
            raise ApiError(404, "image_not_found", f"no image {image_id}")
        for _ in range(DELETE_ATTEMPTS):
            if record.get("status") != DELETED:
                self.objects.delete(record["s3_key"])
            if self.purge(record, None).outcome != "ignored":
                return {"image_id": image_id, "status": DELETED}
            record = self.images.get(image_id) or record  # the version recorded meanwhile
        raise ApiError(
            503,
            "delete_not_settled",
            f"image {image_id} kept getting new versions while it was deleted; the objects "
            "seen are removed: retry to confirm the deletion",
        )

    def purge(self, record: dict[str, Any], sequencer: str | None) -> DeletionResult:
        """Steps 1-3 for the version `record` holds; repeating them changes nothing."""
        image_id = record["image_id"]
        was = record.get("status")
        prompt = record.get("prompt") or record.get("deleted_prompt")
        if was != DELETED:
            marked = self.images.mark_deleted(
                image_id, record.get("etag"), record.get("prompt"), self.clock(), sequencer
            )
            if not marked:
                current = self.images.get(image_id)
                if current is None or current.get("status") != DELETED:
                    return DeletionResult("ignored", image_id, "a later version is recorded")
        self.settle(image_id, prompt, tombstone=was == EMBEDDED)
        return DeletionResult("deleted" if was != DELETED else "duplicate", image_id)

    def settle(self, image_id: str, prompt: str | None, tombstone: bool = True) -> None:
        """Steps 2 and 3 for an image already marked deleted: the commit writer's `withdraw`,
        which a commit also calls for an image deleted while it ran. Without `tombstone`, the
        manifests get one only while a vector is left (a replay after a crash between steps)."""
        stores = RunStores(self.images, self.embeddings, self.manifests, ShardStore(self.settings))
        CommitWriter(stores).withdraw(image_id, prompt, tombstone)

    def _record_of(self, key: str) -> dict[str, Any] | None:
        """The record of the key: under its preferred id, or its fallback id."""
        prefix = self._prefix(key)
        identity = identity_for_key(prefix, key)
        for image_id in dict.fromkeys([identity.preferred_id, identity.fallback_id]):
            record = self.images.get(image_id)
            if record is not None and record.get("s3_key") == key:
                return record
        return None

    def _marker_id(self, key: str) -> str:
        identity = identity_for_key(self._prefix(key), key)
        taken = self.images.get(identity.preferred_id)
        return identity.fallback_id if taken is not None else identity.preferred_id

    def _prefix(self, key: str) -> str:
        generated = key.startswith(self.settings.generated_prefix)
        return self.settings.generated_prefix if generated else self.settings.upload_prefix
