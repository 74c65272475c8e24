"""S3 event sequencers: the order of the PUT and DELETE events of one key.

S3 documents them as hexadecimal strings of varying length, compared after right-padding the
shorter with zeros; stored padded, DynamoDB's string comparison orders them the same way, so a
condition expression can refuse an older event."""

from __future__ import annotations

WIDTH = 64


def normalized(sequencer: str | None) -> str | None:
    """The sequencer padded for plain string comparison; None stays None. Pure."""
    if not sequencer:
        return None
    value = sequencer.strip().upper()
    if not value or any(c not in "0123456789ABCDEF" for c in value) or len(value) > WIDTH:
        raise ValueError(f"not an S3 sequencer: {sequencer!r}")
    return value.ljust(WIDTH, "0")
