"""The Images table: image records and the conditional writes that keep ingest idempotent."""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item, serialize_item

T = TypeVar("T")
PENDING, EMBEDDED, FAILED = "pending", "embedded", "failed"
DELETED = "deleted"  # a marker: the object was removed; GET answers 410, lookups skip it
SHA256_INDEX = "Sha256_GSI"  # partition sha256, sort created_at: exact copies of an image
# Partition pending_shard, sort created_at, `source` projected: a sparse index of the images
# pending now (only their items carry pending_shard), so the embed run's safety net and the
# health probe read the backlog, not the catalogue.
PENDING_INDEX = "Pending_GSI"
PENDING_SHARD = "pending_shard"
# The index's partition key is a write shard of the image id, not a constant: with one key
# value every pending image lands in one index partition, which takes about 1,000 writes a
# second; a bulk ingest past that throttles the index, and a throttled GSI throttles the
# table's writes. Readers query each shard (a few small Queries).
PENDING_SHARDS = 16
# What a deletion marker keeps: enough to finish the deletion again and to order later
# events; the rest (fingerprint, size, generation, index keys) goes with the image.
DELETION_REMOVES = (
    "prompt",
    "modified_prompt",
    "sha256",
    "width",
    "height",
    "content_type",
    "size_bytes",
    "generation",
    "error",
    "embed_requested_at",
    "embed_attempts",
    "embed_attempt_run",
    "embed_attempted_at",
    "embedding_model_id",
    "embedded_at",
    "duplicate_of",
    "near_duplicate_of",
)
BATCH_ATTEMPTS = 8  # BatchGetItem calls for one chunk of keys, backing off between them


def pending_shard(image_id: str) -> str:
    """The image's Pending_GSI partition: stable across processes (crc32, not `hash`)."""
    return _shard_name(zlib.crc32(image_id.encode()) % PENDING_SHARDS)


def _shard_name(n: int) -> str:
    return f"{n:02d}"


@dataclass(frozen=True)
class PendingKey:
    """The Pending_GSI part of a write that sets `status`: the shard key while the new status
    is pending, none otherwise. Every status write takes it from `pending_key`, the one place
    that decides which images the index holds; a write that leaves the status alone leaves
    the key alone."""

    shard: str | None

    @property
    def values(self) -> dict[str, str]:
        return {f":{PENDING_SHARD}": self.shard} if self.shard else {}

    def update(self, sets: Iterable[str], removes: Iterable[str] = ()) -> str:
        """An UpdateExpression of `sets` and `removes`, the key set or removed with them."""
        sets, removes = list(sets), list(removes)
        if self.shard:
            sets.append(f"{PENDING_SHARD} = :{PENDING_SHARD}")
        else:
            removes.append(PENDING_SHARD)
        clauses = [f"SET {', '.join(sets)}"] if sets else []
        return " ".join([*clauses, f"REMOVE {', '.join(removes)}"] if removes else clauses)


def all_pending_shards() -> list[str]:
    return [_shard_name(n) for n in range(PENDING_SHARDS)]


def pending_key(image_id: str, status: str | None) -> PendingKey:
    return PendingKey(pending_shard(image_id) if status == PENDING else None)


def with_pending_key(item: Mapping[str, Any]) -> dict[str, Any]:
    """A whole item to put, carrying pending_shard exactly when its status is pending."""
    put = {k: v for k, v in item.items() if k != PENDING_SHARD}
    shard = pending_key(str(put["image_id"]), put.get("status")).shard
    return {**put, PENDING_SHARD: shard} if shard else put


def embedded_with(record: Mapping[str, Any], model_id: str, strict: bool = False) -> bool:
    """The record's version has a vector of `model_id`: its own model or one a backfill added.
    A record that names no own model (written before models were noted) counts as any model's
    for a lookup, and as none for a `strict` caller (a backfill re-embeds it)."""
    own = record.get("embedding_model_id", None if strict else model_id)
    return own == model_id or model_id in record.get("embedded_models", ())


@dataclass(frozen=True)
class ImageRecord:
    """One item of the Images table (docs/design.md, Storage)."""

    image_id: str
    created_at: str
    s3_key: str
    source: str
    status: str
    etag: str
    size_bytes: int
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    prompt: str | None = None
    modified_prompt: str | None = None
    generation: Mapping[str, Any] | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        """The item without empty attributes (a GSI key may be absent, never null), with
        Pending_GSI's key while pending."""
        data = asdict(self)
        data.update(data.pop("extra"))
        return with_pending_key({k: v for k, v in data.items() if v is not None})


@dataclass(frozen=True)
class PutOutcome:
    written: bool
    existing: dict[str, Any] | None = None


class ImageStore(aws.Adapter):
    """Images table adapter."""

    service = "dynamodb"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self.table = settings.images_table

    def get(self, image_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key={"image_id": {"S": image_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return deserialize_item(item) if item else None

    def put_version(self, record: ImageRecord, sequencer: str | None = None) -> PutOutcome:
        """Write the record unless this exact object version (key + ETag) is recorded already,
        or the id belongs to another key. A deletion marker of the key is replaced (the object
        exists again), unless the event's `sequencer` says the deletion came later. On
        refusal, the item that is there is returned."""
        later, values = "", {}
        if sequencer:
            later = " AND (attribute_not_exists(deleted_sequencer) OR deleted_sequencer < :seq)"
            values = {":seq": {"S": sequencer}}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize_item(record.to_item()),
                ConditionExpression="attribute_not_exists(image_id) OR "
                "(s3_key = :key AND (etag <> :etag OR #s = :deleted))" + later,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":key": {"S": record.s3_key},
                    ":etag": {"S": record.etag},
                    ":deleted": {"S": DELETED},
                    **values,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item")
            return PutOutcome(
                written=False, existing=deserialize_item(old) if old else self.get(record.image_id)
            )
        return PutOutcome(written=True)

    def set_outcome(self, image_id: str, etag: str, values: dict[str, Any]) -> bool:
        """Set attributes on the record only if it still is this version (ETag) and was not
        deleted meanwhile; the values come from the run, so a rerun writes the same item. A
        `status` among them sets or removes Pending_GSI's key with it."""
        if PENDING_SHARD in values:
            raise ValueError(f"{PENDING_SHARD} follows status; set status instead")
        names = {f"#{k}": k for k in values}
        sets = [f"#{k} = :{k}" for k in values]
        key = pending_key(image_id, values["status"]) if "status" in values else None
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=key.update(sets) if key else "SET " + ", ".join(sets),
                ConditionExpression="etag = :etag_expected AND #status_now <> :deleted",
                ExpressionAttributeNames={**names, "#status_now": "status"},
                ExpressionAttributeValues={
                    ":etag_expected": {"S": etag},
                    ":deleted": {"S": DELETED},
                    **serialize_item({f":{k}": v for k, v in values.items()}),
                    **serialize_item(key.values if key else {}),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def add_embedded_models(self, image_id: str, etag: str, models: set[str]) -> bool:
        """Note that this embedded version (ETag) also has vectors of `models` (a model upgrade's
        backfill); a lookup with one of them may return it. A new version replaces the item,
        set included. False if the version moved on or is not embedded."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="ADD embedded_models :models",
                ConditionExpression="etag = :etag AND #s = :embedded",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":models": {"SS": sorted(models)},
                    ":etag": {"S": etag},
                    ":embedded": {"S": EMBEDDED},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def adopt_model(self, image_id: str, etag: str, new_model: str, retired: str) -> bool:
        """The image's own vector is now `new_model`'s (a retired model's was replaced); only
        if the record is still this version and still names the retired model."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embedding_model_id = :new DELETE embedded_models :retired",
                ConditionExpression="etag = :etag AND embedding_model_id = :old",
                ExpressionAttributeValues={
                    ":new": {"S": new_model},
                    ":retired": {"SS": [retired]},
                    ":etag": {"S": etag},
                    ":old": {"S": retired},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def pending(self, created_before: str) -> list[dict[str, Any]]:
        """Images still pending that were recorded before the given time: their ids from
        Pending_GSI (the backlog, whatever the catalogue's size), then their whole records
        read consistently, less any that left pending since the index was written (a GSI
        follows its table a moment behind)."""
        shards = self.over_pending_shards(list, created_before)
        ids = [item["image_id"] for shard in shards for item in shard]
        records = self.batch_get(ids)
        return [
            record
            for image_id in ids
            if (record := records.get(image_id))
            and record.get("status") == PENDING
            and record["created_at"] < created_before
        ]

    def over_pending_shards(
        self, reduce: Callable[[Iterable[dict[str, Any]]], T], created_before: str | None = None
    ) -> list[T]:
        """`reduce` of each Pending_GSI shard's images (`pending_in_shard`), the shards read at
        once: what each reader keeps of a shard is its own (ids, a tally)."""
        with ThreadPoolExecutor(PENDING_SHARDS) as pool:
            return list(
                pool.map(
                    lambda shard: reduce(self.pending_in_shard(shard, created_before)),
                    all_pending_shards(),
                )
            )

    def pending_in_shard(
        self, shard: str, created_before: str | None = None
    ) -> Iterable[dict[str, Any]]:
        """One Pending_GSI partition's images (image_id, created_at, source), oldest first,
        page by page; only those recorded before `created_before` when given."""
        if created_before == "":
            return  # nothing sorts before it (and a key condition may not hold an empty string)
        condition, values = f"{PENDING_SHARD} = :shard", {":shard": {"S": shard}}
        if created_before is not None:
            condition += " AND created_at < :before"
            values[":before"] = {"S": created_before}
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=PENDING_INDEX,
            KeyConditionExpression=condition,
            ProjectionExpression="image_id, created_at, #src",
            ExpressionAttributeNames={"#src": "source"},
            ExpressionAttributeValues=values,
            ScanIndexForward=True,
        )
        for page in pages:
            yield from (deserialize_item(item) for item in page.get("Items", []))

    def backfill_pending_keys(self) -> int:
        """Give Pending_GSI's key to pending items written without it (a table kept from
        before the index, as a local stack's state is); how many. A Scan: a one-off."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression=f"#s = :pending AND attribute_not_exists({PENDING_SHARD})",
            ProjectionExpression="image_id",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":pending": {"S": PENDING}},
        )
        added = 0
        for item in (deserialize_item(i) for page in pages for i in page.get("Items", [])):
            key = pending_key(item["image_id"], PENDING)
            with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
                self.client.update_item(
                    TableName=self.table,
                    Key={"image_id": {"S": item["image_id"]}},
                    UpdateExpression=key.update([]),
                    ConditionExpression="#s = :pending",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues=serialize_item({":pending": PENDING, **key.values}),
                )
                added += 1
        return added

    def embedded(self, prompt: str | None = None) -> list[dict[str, Any]]:
        """Embedded records: of one prompt (a Prompt_GSI Query), or all of them (a Scan, for
        batch jobs such as a model upgrade's backfill)."""
        values = {":embedded": {"S": EMBEDDED}}
        query: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#s = :embedded",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values,
        }
        if prompt is None:
            pages = self.client.get_paginator("scan").paginate(**query)
        else:
            values[":prompt"] = {"S": prompt}
            pages = self.client.get_paginator("query").paginate(
                IndexName="Prompt_GSI", KeyConditionExpression="prompt = :prompt", **query
            )
        return [deserialize_item(item) for page in pages for item in page.get("Items", [])]

    def mark_embed_requested(self, image_id: str, etag: str, at: str) -> bool:
        """Note that the embed request for this version was sent; False if the version moved on."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embed_requested_at = :at",
                ConditionExpression="etag = :etag",
                ExpressionAttributeValues={":at": {"S": at}, ":etag": {"S": etag}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_embed_request(self, image_id: str, etag: str, at: str, stale_before: str) -> bool:
        """Note a new embed request for this pending version unless one was noted at or after
        `stale_before` (still outstanding). One conditional write: of concurrent callers, one
        gets True and sends the message."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embed_requested_at = :at",
                ConditionExpression="etag = :etag AND #s = :pending AND "
                "(attribute_not_exists(embed_requested_at) OR embed_requested_at < :stale)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":at": {"S": at},
                    ":etag": {"S": etag},
                    ":pending": {"S": PENDING},
                    ":stale": {"S": stale_before},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_embed_request(self, image_id: str, at: str, previous: str | None) -> None:
        """Undo a claim whose message could not be sent (only if it is still this claim)."""
        update = "SET embed_requested_at = :previous" if previous else "REMOVE embed_requested_at"
        values = {":at": {"S": at}, **({":previous": {"S": previous}} if previous else {})}
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=update,
                ConditionExpression="embed_requested_at = :at",
                ExpressionAttributeValues=values,
            )

    def note_embed_attempt(self, image_id: str, etag: str, run_id: str, at: str) -> bool:
        """Count `run_id`'s attempt at embedding this pending version, once per run: a retried
        task of the run counts nothing more. False if the version moved on or is not pending."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embed_attempts = if_not_exists(embed_attempts, :zero) + :one,"
                " embed_attempt_run = :run, embed_attempted_at = :at",
                ConditionExpression="etag = :etag AND #s = :pending AND "
                "(attribute_not_exists(embed_attempt_run) OR embed_attempt_run <> :run)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=serialize_item(
                    {":zero": 0, ":one": 1, ":run": run_id, ":at": at}
                    | {":etag": etag, ":pending": PENDING}
                ),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            record = self.get(image_id)
            return bool(
                record
                and record.get("etag") == etag
                and record.get("status") == PENDING
                and record.get("embed_attempt_run") == run_id
            )
        return True

    def give_up_embedding(
        self, image_id: str, etag: str, reason: str, min_attempts: int, last_run: str | None = None
    ) -> bool:
        """Fail this pending version with `reason` once it has had `min_attempts` attempts (the
        last by `last_run`, when given). False if it moved on, is not pending, or has fewer."""
        condition = "etag = :etag AND #s = :pending AND embed_attempts >= :min"
        values: dict[str, Any] = {
            ":etag": etag,
            ":pending": PENDING,
            ":min": min_attempts,
            ":failed": FAILED,
            ":reason": reason,
        }
        if last_run is not None:
            condition += " AND embed_attempt_run = :run"
            values[":run"] = last_run
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=pending_key(image_id, FAILED).update(
                    ["#s = :failed", "#e = :reason"]
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues=serialize_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def failed_with(self, reason_prefix: str) -> list[dict[str, Any]]:
        """Failed records whose reason starts with `reason_prefix` (a full scan: an operator's
        action after an outage, not a per-request read)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="#s = :failed AND begins_with(#e, :prefix)",
            ExpressionAttributeNames={"#s": "status", "#e": "error"},
            ExpressionAttributeValues={
                ":failed": {"S": FAILED},
                ":prefix": {"S": reason_prefix},
            },
        )
        return [deserialize_item(item) for page in pages for item in page.get("Items", [])]

    def reopen_failed(self, image_id: str, etag: str, reason_prefix: str) -> bool:
        """This failed version back to pending with no attempts counted, if its reason still
        starts with `reason_prefix`; False otherwise."""
        key = pending_key(image_id, PENDING)
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=key.update(
                    ["#s = :pending"],
                    ["#e", "embed_attempts", "embed_attempt_run", "embed_attempted_at"],
                ),
                ConditionExpression="etag = :etag AND #s = :failed AND begins_with(#e, :prefix)",
                ExpressionAttributeNames={"#s": "status", "#e": "error"},
                ExpressionAttributeValues=serialize_item(
                    {":pending": PENDING, ":failed": FAILED, ":etag": etag}
                    | {":prefix": reason_prefix, **key.values}
                ),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def batch_get(
        self, image_ids: list[str], attributes: list[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """The records of these ids that exist ({image_id: item}, only `attributes` and the
        id when given, whole otherwise), read consistently in BatchGetItem calls of 100 keys."""
        names = {f"#a{i}": a for i, a in enumerate(["image_id", *(attributes or [])])}
        projection = (
            {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
            if attributes is not None
            else {}
        )
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(image_ids))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{"image_id": {"S": i}} for i in unique[start : start + 100]],
                    "ConsistentRead": True,
                    **projection,
                }
            }
            for attempt in range(BATCH_ATTEMPTS):
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    record = deserialize_item(item)
                    found[record["image_id"]] = record
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.02 * 2**attempt)  # throttled: back off, then ask for the rest
            else:
                raise RuntimeError(f"BatchGetItem on {self.table} left keys unprocessed")
        return found

    def mark_deleted(
        self, image_id: str, etag: str | None, prompt: str | None, at: str, sequencer: str | None
    ) -> bool:
        """Turn the record of this version (ETag; any version when None) into a deletion
        marker. False when the record moved on: another version, or deleted already by an
        event at or after `sequencer`."""
        names = {f"#r{i}": a for i, a in enumerate(DELETION_REMOVES)}
        conditions = ["attribute_exists(image_id)"]
        values: dict[str, Any] = {":deleted": DELETED, ":at": at}
        sets = ["#s = :deleted", "deleted_at = if_not_exists(deleted_at, :at)"]
        if etag is not None:
            conditions.append("etag = :etag")
            values[":etag"] = etag
        if prompt is not None:
            sets.append("deleted_prompt = :prompt")
            values[":prompt"] = prompt
        if sequencer:
            conditions.append(
                "(attribute_not_exists(deleted_sequencer) OR deleted_sequencer < :seq)"
                " AND (attribute_not_exists(#seq) OR #seq < :seq)"
            )
            sets.append("deleted_sequencer = :seq")
            values[":seq"] = sequencer
            names["#seq"] = "sequencer"
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=pending_key(image_id, DELETED).update(
                    sets, [k for k in names if k.startswith("#r")]
                ),
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames={"#s": "status", **names},
                ExpressionAttributeValues=serialize_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def put_deletion_marker(
        self, image_id: str, s3_key: str, at: str, sequencer: str | None
    ) -> bool:
        """A marker for a key whose deletion arrived before its creation (S3 delivers in any
        order): the late creation event of the deleted version then finds it. Only where no
        record is."""
        item = {"image_id": image_id, "s3_key": s3_key, "status": DELETED, "deleted_at": at}
        if sequencer:
            item["deleted_sequencer"] = sequencer
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize_item(with_pending_key(item)),
                ConditionExpression="attribute_not_exists(image_id)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def first_with_sha256(self, sha256: str) -> dict[str, Any] | None:
        """The earliest recorded image with these bytes that is not failed (deletion markers
        have no sha256). The index is eventually consistent: a copy recorded a moment ago may
        not be seen yet, and is then caught as a near-duplicate when it is embedded."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=SHA256_INDEX,
            KeyConditionExpression="sha256 = :sha",
            FilterExpression="#s <> :failed",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":sha": {"S": sha256}, ":failed": {"S": FAILED}},
            ScanIndexForward=True,
        )
        for page in pages:
            items = [deserialize_item(i) for i in page.get("Items", [])]
            if items:
                return min(items, key=lambda i: (i["created_at"], i["image_id"]))
        return None
