"""What the API's routes depend on (stores, services, the image model, idempotency), built once
per Lambda container from one Ingestor and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.api.idempotency import Idempotency
from pipeline.generation.bedrock import BedrockImages
from pipeline.generation.generate_now import ImageModel
from pipeline.ingest.ingestor import Ingestor
from pipeline.lookup.on_demand import OnDemandQueries
from pipeline.lookup.similarity import SimilarityService
from pipeline.settings import Settings
from pipeline.storage.embeddings_table import EmbeddingStore


@dataclass(frozen=True)
class ApiDependencies:
    ingestor: Ingestor
    embeddings: EmbeddingStore
    similarity: SimilarityService
    queries: OnDemandQueries
    bedrock: BedrockImages
    image_model: ImageModel
    idempotency: Idempotency

    @property
    def settings(self) -> Settings:
        return self.ingestor.settings

    @classmethod
    def from_ingestor(
        cls, ingestor: Ingestor, similarity: SimilarityService | None = None
    ) -> ApiDependencies:
        settings = ingestor.settings
        similarity = similarity or SimilarityService.from_settings(settings)
        return cls(
            ingestor=ingestor,
            embeddings=EmbeddingStore(settings),
            similarity=similarity,
            queries=OnDemandQueries(similarity),
            bedrock=BedrockImages(settings),
            image_model=ImageModel(
                settings.image_model_id, settings.image_size, settings.image_size
            ),
            idempotency=Idempotency(settings),
        )
