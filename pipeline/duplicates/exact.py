"""Exact copies: an image whose bytes (SHA-256) an earlier image already has.

The copy is recorded `duplicate_of` the first image with those bytes (the Images table's
`Sha256_GSI`). When that image is embedded, the copy takes its vector instead of a place in
the next embedding run: its own Embeddings item and a one-row shard in its own prompt (the
copy may carry another prompt; compaction later merges these small shards). A copy of an image
that is not embedded yet is embedded by the next run like any image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.commit.writer import Committed, CommitWriter
from pipeline.settings import Settings
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.dynamodb_codec import utc_now
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import EMBEDDED, ImageStore
from pipeline.storage.keys import shard_key
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow, ShardStore


def copy_run_id(image_id: str) -> str:
    """The run id of a copy's one-row shard: deterministic, so a retry rewrites it."""
    return f"copy-{image_id}"


class Duplicates:
    def __init__(
        self,
        settings: Settings,
        images: ImageStore,
        embeddings: EmbeddingStore | None = None,
        manifests: ManifestStore | None = None,
        shards: ShardStore | None = None,
        clock: Callable[[], str] = utc_now,
        active: ActiveModels | None = None,
    ) -> None:
        self.images = images
        self.embeddings = embeddings or EmbeddingStore(settings)
        self.manifests = manifests or ManifestStore(settings)
        self.shards = shards or ShardStore(settings)
        self.stores = RunStores(self.images, self.embeddings, self.manifests, self.shards)
        self.clock = clock
        self.active = active or ActiveModels(settings)

    def original_of(self, record: dict[str, Any]) -> str | None:
        """The first image with the record's bytes, if another image came first."""
        if record.get("duplicate_of"):
            return str(record["duplicate_of"])
        if not record.get("sha256"):
            return None
        first = self.images.first_with_sha256(record["sha256"])
        if first is None:
            return None
        if (first["created_at"], first["image_id"]) >= (record["created_at"], record["image_id"]):
            return None  # the record itself, or one recorded after it
        return str(first["image_id"])

    def settle_copy(self, record: dict[str, Any]) -> bool:
        """Record a pending image's `duplicate_of`; True when it took the original's vector
        (it is embedded now and needs no embedding request)."""
        original_id = self.original_of(record)
        if original_id is None:
            return False
        image_id, etag = record["image_id"], record["etag"]
        if not record.get("duplicate_of"):
            self.images.set_outcome(image_id, etag, {"duplicate_of": original_id})
        original = self.images.get(original_id)
        if original is None or original.get("status") != EMBEDDED:
            return False
        vector = self.embeddings.get(original_id)
        if vector is None or vector.get("source_etag") != original.get("etag"):
            return False
        self._reuse(record, original, vector)
        return True

    def _reuse(
        self, record: dict[str, Any], original: dict[str, Any], vector: dict[str, Any]
    ) -> None:
        copy = Committed(record["image_id"], record["etag"], record.get("prompt"))
        prompt = copy.prompt
        model_id, embedding = vector["model_id"], vector["embedding"]
        # After the copy's prompt switched to another model (a model upgrade), the copy takes
        # the original's vector of that model too, or no lookup of its prompt would rank it.
        active = self.active.get(prompt) if prompt else None
        beside = None
        if active is not None and active != model_id:
            found = self.embeddings.get_for_model(str(original["image_id"]), active)
            if found is not None and found.get("source_etag") == original.get("etag"):
                beside = found
        writer = CommitWriter(self.stores)
        key = self._copy_shard(writer, record, model_id, embedding)
        now = self.clock()
        writer.put_vector(copy, model_id, embedding, key, now)
        if beside is not None:
            self._copy_shard(writer, record, beside["model_id"], beside["embedding"])
            writer.put_model_vector(copy, beside["model_id"], beside["embedding"], now)
        outcome = {"status": EMBEDDED, "embedding_model_id": model_id, "embedded_at": now}
        if original.get("near_duplicate_of") and original.get("prompt") == prompt:
            outcome["near_duplicate_of"] = original["near_duplicate_of"]
        if not writer.mark(copy, outcome) or (
            beside is not None and not writer.note_models(copy, {model_id, beside["model_id"]})
        ):
            writer.settle_deleted([copy])  # deleted meanwhile: undo what was written

    def _copy_shard(
        self, writer: CommitWriter, record: dict[str, Any], model_id: str, embedding: Any
    ) -> str | None:
        """The copy's one-row shard of `model_id` in its prompt, listed; its key (None: the
        copy has no prompt, so no shard)."""
        prompt = record.get("prompt")
        if not prompt:
            return None
        key = shard_key(model_id, prompt, copy_run_id(record["image_id"]))
        writer.write_and_list(key, model_id, prompt, [ShardRow.of_record(record, embedding)])
        return key
