"""describe(): the record an object version gets, decided without any I/O."""

import json

from pipeline.ingest.ingestor import describe
from pipeline.settings import Limits
from pipeline.storage.bucket import StoredObject, decode_metadata, encode_metadata
from tests.helpers import image_bytes

NOW = "2026-11-22T00:00:00.000Z"


def _obj(body: bytes | None, metadata: dict | None = None, size: int | None = None):
    return StoredObject(
        key="uploads/x.png",
        etag="e1",
        size=size or len(body or b""),
        content_type="binary/octet-stream",
        metadata=metadata or {},
        body=body,
    )


def test_good_image_is_pending_with_its_real_type_and_normalized_prompt():
    record = describe(
        _obj(image_bytes("PNG", (20, 10)), {"prompt": "  A  Red FORK "}),
        "uploaded",
        "x",
        NOW,
        Limits(),
    )
    assert (record.status, record.content_type, record.width, record.height) == (
        "pending",
        "image/png",
        20,
        10,
    )
    assert record.prompt == "a red fork" and record.error is None


def test_bad_bytes_are_failed_with_the_reason():
    record = describe(_obj(b"nope"), "uploaded", "x", NOW, Limits())
    assert record.status == "failed" and record.error.startswith("not_an_image:")


def test_an_object_too_large_to_read_is_failed():
    record = describe(_obj(None, size=10**9), "uploaded", "x", NOW, Limits())
    assert record.status == "failed" and record.error.startswith("too_large:")


def test_an_over_long_prompt_fails_the_record_not_the_batch():
    record = describe(_obj(image_bytes(), {"prompt": "x" * 2000}), "uploaded", "x", NOW, Limits())
    assert record.status == "failed" and "invalid_metadata" in record.error


def test_generation_metadata_is_kept():
    generation = {
        "model_id": "amazon.titan-image-generator-v2:0",
        "seed": 7,
        "modifiers": ["low angle", "watercolor"],
        "cfg_scale": 8.0,
    }
    metadata = decode_metadata(
        encode_metadata(
            {
                "prompt": "Fork",
                "modified-prompt": "fork, low angle, watercolor",
                "generation": json.dumps(generation),
            }
        )
    )
    record = describe(_obj(image_bytes(), metadata), "generated", "x", NOW, Limits())
    assert record.generation == generation and record.modified_prompt.endswith("watercolor")
    assert record.to_item()["source"] == "generated"


def test_metadata_encoding_round_trips_unicode():
    values = {"prompt": "café ☕ 100% arabica"}
    encoded = encode_metadata(values)
    assert all(v.isascii() for v in encoded.values())
    assert decode_metadata(encoded) == values
