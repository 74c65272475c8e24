"""Ingest: turn one stored object version into an Images record and one embed request.

Idempotent by construction: the record is keyed by image id and guarded by the object's
ETag, and the embed request is sent until the record says it was (`embed_requested_at`),
so redelivered events and retries after a crash between the two writes converge on one
record and one request. Removal events go to `pipeline.deletion.deleter`; an exact copy of an
embedded image reuses its vector (`pipeline.duplicates.exact`) instead of a request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pipeline.deletion.deleter import Deleter
from pipeline.deletion.sequencers import normalized
from pipeline.duplicates.exact import Duplicates
from pipeline.ingest.notifications import REMOVED, ObjectEvent
from pipeline.ingest.validation import InvalidImage, validate_image
from pipeline.prompts import InvalidPrompt, checked_prompt
from pipeline.settings import Limits, Settings
from pipeline.storage.bucket import ObjectStore, StoredObject
from pipeline.storage.dynamodb_codec import utc_now
from pipeline.storage.embed_queue import EmbedQueue
from pipeline.storage.images_table import DELETED, FAILED, PENDING, ImageRecord, ImageStore
from pipeline.storage.keys import identity_for_key

GENERATED, UPLOADED = "generated", "uploaded"


@dataclass(frozen=True)
class IngestResult:
    outcome: str  # recorded | failed | duplicate | ignored
    image_id: str | None = None
    reason: str | None = None


def describe(
    obj: StoredObject, source: str, image_id: str, now: str, limits: Limits
) -> ImageRecord:
    """The record for an object version: pending when it may be embedded, failed with the
    reason otherwise. Pure."""
    record = ImageRecord(
        image_id=image_id,
        created_at=now,
        s3_key=obj.key,
        source=source,
        status=PENDING,
        etag=obj.etag,
        size_bytes=obj.size,
        content_type=obj.content_type,
    )
    try:
        record = replace(record, **_metadata_fields(obj.metadata, limits))
    except (InvalidPrompt, ValueError) as exc:
        return replace(record, status=FAILED, error=f"invalid_metadata: {exc}")
    if obj.body is None:
        reason = InvalidImage(
            "too_large", f"{obj.size} bytes; the limit is {limits.max_object_bytes} bytes"
        ).reason()
        return replace(record, status=FAILED, error=reason)
    try:
        info = validate_image(obj.body, limits)
    except InvalidImage as exc:
        return replace(record, status=FAILED, error=exc.reason())
    return replace(
        record,
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        sha256=info.sha256,
    )


def _metadata_fields(metadata: Mapping[str, str], limits: Limits) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if metadata.get("prompt"):
        fields["prompt"] = checked_prompt(metadata["prompt"], limits.max_prompt_chars)
    if metadata.get("modified-prompt"):
        fields["modified_prompt"] = metadata["modified-prompt"]
    if metadata.get("generation"):
        try:
            generation = json.loads(metadata["generation"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"generation metadata is not JSON ({exc})") from None
        if not isinstance(generation, dict):
            raise ValueError("generation metadata must be a JSON object")
        fields["generation"] = generation
    return fields


@dataclass
class Ingestor:
    settings: Settings
    objects: ObjectStore
    images: ImageStore
    queue: EmbedQueue
    clock: Callable[[], str] = utc_now
    deleter: Deleter | None = None  # made from the stores above when None
    duplicates: Duplicates | None = None  # None: exact copies are embedded like any image

    @classmethod
    def from_settings(cls, settings: Settings) -> Ingestor:
        objects, images = ObjectStore(settings), ImageStore(settings)
        deleter = Deleter(settings, objects, images)
        return cls(
            settings,
            objects,
            images,
            EmbedQueue(settings),
            deleter=deleter,
            duplicates=Duplicates(settings, images),
        )

    def handle(self, event: ObjectEvent) -> IngestResult:
        """One ObjectCreated or ObjectRemoved event."""
        sequencer = normalized(event.sequencer)
        if event.kind != REMOVED:
            return self.ingest_event(event.bucket, event.key, event.etag, sequencer)
        if event.bucket != self.settings.bucket or self.source_of(event.key) is None:
            return IngestResult("ignored", reason=f"{event.key} is not an ingested object")
        deleter = self.deleter or Deleter(self.settings, self.objects, self.images)
        result = deleter.object_removed(event.key, sequencer)
        return IngestResult(result.outcome, image_id=result.image_id, reason=result.reason)

    def source_of(self, key: str) -> str | None:
        if key.startswith(self.settings.upload_prefix):
            return UPLOADED
        if key.startswith(self.settings.generated_prefix):
            return GENERATED
        return None

    def ingest_event(
        self, bucket: str, key: str, etag: str | None, sequencer: str | None = None
    ) -> IngestResult:
        """Handle one ObjectCreated event (`sequencer` normalized, when S3 sent one)."""
        if bucket != self.settings.bucket:
            return IngestResult("ignored", reason=f"bucket {bucket} is not {self.settings.bucket}")
        if self.source_of(key) is None:
            return IngestResult("ignored", reason=f"{key} is outside the ingest prefixes")
        obj = self.objects.fetch(key, etag, self.settings.limits.max_object_bytes)
        if obj is None:
            return IngestResult("ignored", reason=f"{key} was replaced or deleted since the event")
        return self.record(obj, sequencer)

    def store(
        self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> IngestResult:
        """Put bytes the pipeline made or was handed (POST /images, generation) and record them
        now: the S3 event that follows finds the version recorded (a duplicate)."""
        etag = self.objects.put(key, data, content_type, metadata)
        return self.record(
            StoredObject(
                key=key,
                etag=etag,
                size=len(data),
                content_type=content_type,
                metadata=metadata,
                body=data,
            )
        )

    def record(self, obj: StoredObject, sequencer: str | None = None) -> IngestResult:
        """Record an object version and request its embedding, exactly once. A deletion
        marker of the key is replaced (the object exists again) unless `sequencer` shows that
        the deletion came after this version."""
        source = self.source_of(obj.key) or UPLOADED
        generated = source == GENERATED
        prefix = self.settings.generated_prefix if generated else self.settings.upload_prefix
        identity = identity_for_key(prefix, obj.key)
        record = describe(obj, source, identity.preferred_id, self.clock(), self.settings.limits)
        if sequencer:
            record = replace(record, extra={"sequencer": sequencer})
        put = self.images.put_version(record, sequencer)
        if not put.written and put.existing and put.existing.get("s3_key") != obj.key:
            record = replace(record, image_id=identity.fallback_id)
            put = self.images.put_version(record, sequencer)
        state = record.to_item() if put.written else (put.existing or {})
        if state.get("status") == DELETED:
            return IngestResult("ignored", record.image_id, "deleted after this version")
        if state.get("s3_key") != obj.key or state.get("etag") != obj.etag:
            raise RuntimeError(
                f"image id {record.image_id} is held by {state.get('s3_key')}; "
                f"{obj.key} could not be recorded"
            )
        requested = state.get("embed_requested_at")
        if state["status"] == PENDING and not requested and not self._took_copy(state):
            self.queue.request_embedding(record.image_id, obj.key, obj.etag)
            self.images.mark_embed_requested(record.image_id, obj.etag, self.clock())
        outcome = "duplicate"
        if put.written:
            outcome = "recorded" if state["status"] == PENDING else "failed"
        return IngestResult(outcome, image_id=record.image_id, reason=state.get("error"))

    def _took_copy(self, state: dict[str, Any]) -> bool:
        """An exact copy of an embedded image took its vector: nothing to request."""
        return self.duplicates is not None and self.duplicates.settle_copy(state)
