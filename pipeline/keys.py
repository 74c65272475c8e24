"""The one S3 key layout of the project, and image ids derived from keys."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def new_image_id() -> str:
    """A server-generated id: 32 lowercase hex characters, no meaning attached."""
    return uuid.uuid4().hex


def is_valid_image_id(image_id: str) -> bool:
    return bool(_ID.match(image_id))


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
    name = key[len(prefix):] if key.startswith(prefix) else key
    stem, dot, _ext = name.rpartition(".")
    if dot and "/" not in stem and is_valid_image_id(stem):
        return KeyIdentity(preferred_id=stem, fallback_id=fallback)
    return KeyIdentity(preferred_id=fallback, fallback_id=fallback)
