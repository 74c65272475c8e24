"""Every S3 key layout of the project in one place: images, embedding shards, embedding-run
files and model artifacts; and the image ids derived from keys."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

IMAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_ID = re.compile(IMAGE_ID_PATTERN)
_UNSAFE = re.compile(r"[^a-z0-9]+")
EMBEDDINGS_PREFIX = "embeddings/"
EMBED_RUNS_PREFIX = "embed-runs/"


def new_image_id() -> str:
    """A server-generated id: 32 lowercase hex characters, no meaning attached."""
    return uuid.uuid4().hex


def is_valid_image_id(image_id: str) -> bool:
    """The whole string: `$` alone would also accept a trailing newline."""
    return bool(_ID.fullmatch(image_id))


def image_key(prefix: str, image_id: str, extension: str) -> str:
    return f"{prefix}{image_id}.{extension}"


@dataclass(frozen=True)
class KeyIdentity:
    """What a key says about its image: the preferred id and a collision-free fallback."""

    preferred_id: str
    fallback_id: str


def identity_for_key(prefix: str, key: str) -> KeyIdentity:
    """`uploads/<id>.<ext>` names its image `<id>`; any other key gets a digest of itself.

    The fallback is used when the preferred id already belongs to another key (for
    example `cat.jpg` after `cat.png`), so no upload ever overwrites another's record.
    """
    fallback = "k" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:31]
    name = key[len(prefix) :] if key.startswith(prefix) else key
    stem, dot, _ext = name.rpartition(".")
    if dot and "/" not in stem and is_valid_image_id(stem):
        return KeyIdentity(preferred_id=stem, fallback_id=fallback)
    return KeyIdentity(preferred_id=fallback, fallback_id=fallback)


def slug(text: str, max_len: int = 48) -> str:
    """Readable and collision-safe: `a-red-fox-1f0c2a9b` (the hash keeps distinct texts apart)."""
    readable = _UNSAFE.sub("-", text.lower()).strip("-")[:max_len].strip("-") or "x"
    return f"{readable}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def run_slug(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


SHARD_RUN_CHARS = 64  # a longer run slug is cut and gets a digest of the whole
SHARD_PART_CHARS = 8
# The longest shard name inside its folder: the manifest's size rule counts on it
# (pipeline.storage.manifest_item).
MAX_SHARD_NAME_CHARS = SHARD_PART_CHARS + 1 + SHARD_RUN_CHARS + len(".parquet")
_PART = re.compile(rf"[a-z]{{1,{SHARD_PART_CHARS}}}")


def shard_key(model_id: str, prompt: str, run_id: str, part: str = "part") -> str:
    """embeddings/model=<model>/prompt=<prompt>/<part>-<run>.parquet: deterministic per run,
    the name at most MAX_SHARD_NAME_CHARS long (a long run id keeps a digest of itself)."""
    if not _PART.fullmatch(part):
        raise ValueError(f"a shard part is 1 to {SHARD_PART_CHARS} lowercase letters: {part!r}")
    name = run_slug(run_id)
    if len(name) > SHARD_RUN_CHARS:
        digest = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:8]
        name = f"{name[: SHARD_RUN_CHARS - 9]}-{digest}"
    return f"{shard_prefix(model_id, prompt)}{part}-{name}.parquet"


def shard_prefix(model_id: str, prompt: str) -> str:
    """The folder of one (model, prompt)'s shards."""
    return f"{EMBEDDINGS_PREFIX}model={slug(model_id)}/prompt={slug(prompt)}/"


def embed_run_prefix(run_id: str) -> str:
    """embed-runs/<run>/: input/part-*.jsonl, output/part-*.jsonl.out, targets.json."""
    return f"{EMBED_RUNS_PREFIX}{run_slug(run_id)}/"


def reembed_batch_run(run_id: str, batch: int) -> str:
    """The run id of one batch of a re-embedding run: its files live under the embedding-run
    layout (embed_run_prefix) and its shards are `reembed-<run>.b<batch>.parquet`."""
    return f"{run_id}.b{batch:05d}"


def reembed_plan_key(run_id: str) -> str:
    """embed-runs/<run>/plan.json: the batches and per-prompt totals of a re-embedding run."""
    return f"{embed_run_prefix(run_id)}plan.json"


def input_part(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def model_artifact_key(model_id: str) -> str:
    return f"models/{model_id}/model.tar.gz"
