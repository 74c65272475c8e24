"""The stores a run's commit writes, as one value: an embedding run, a model upgrade's
backfill (and each of its batch runs) and the repair of superseded rows share one set."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore


@dataclass(frozen=True)
class RunStores:
    images: ImageStore
    embeddings: EmbeddingStore
    manifests: ManifestStore
    shards: ShardStore

    @classmethod
    def from_settings(cls, settings: Settings) -> RunStores:
        return cls(
            ImageStore(settings),
            EmbeddingStore(settings),
            ManifestStore(settings),
            ShardStore(settings),
        )
